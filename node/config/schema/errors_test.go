package schema

import "testing"

func TestSuggest(t *testing.T) {
	candidates := []string{"host", "http_port", "grpc_port", "shutdown_timeout"}
	tests := []struct{ word, want string }{
		{"htp_port", "http_port"},
		{"HTTP_PORT", "http_port"},
		{"grpcport", "grpc_port"},
		{"shutdown", ""},
		{"colour", ""},
	}
	for _, tt := range tests {
		if got := suggest(tt.word, candidates); got != tt.want {
			t.Errorf("suggest(%q) = %q, want %q", tt.word, got, tt.want)
		}
	}
}
