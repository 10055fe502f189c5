package requestid_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc/metadata"

	"github.com/ekisa-team/syn4pse/node/requestid"
)

func TestAccept(t *testing.T) {
	for _, tt := range []struct {
		id   string
		keep bool
	}{
		{"abc-123", true},
		{"req_1.2~x|y", true},
		{strings.Repeat("a", requestid.MaxLen), true},
		{strings.Repeat("a", requestid.MaxLen+1), false},
		{"", false},
		{"has space", false},
		{"line\nbreak", false},
		{`quote"d`, false},
		{"é", false},
	} {
		got := requestid.Accept(tt.id)
		if (got == tt.id) != tt.keep {
			t.Errorf("Accept(%q) = %q; keep %v", tt.id, got, tt.keep)
		}
		if !requestid.Valid(got) {
			t.Errorf("Accept(%q) = %q, which is not valid", tt.id, got)
		}
	}
	if a, b := requestid.New(), requestid.New(); a == b {
		t.Fatalf("two new IDs are both %q", a)
	}
}

// TestLogHandler: a line logged with a request's context names its ID; others name none, and
// attributes and groups added to the logger keep the wrapper.
func TestLogHandler(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(requestid.LogHandler(slog.NewJSONHandler(&buf, nil))).With("node", "a")
	ctx := requestid.NewContext(context.Background(), "r-1")
	log.InfoContext(ctx, "with")
	log.Info("without")
	log.WithGroup("g").InfoContext(ctx, "grouped", "k", 1)
	var lines []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 3 || lines[0][requestid.LogKey] != "r-1" || lines[0]["node"] != "a" {
		t.Fatalf("lines %v", lines)
	}
	if _, ok := lines[1][requestid.LogKey]; ok {
		t.Fatalf("a line without a request names one: %v", lines[1])
	}
	if g, _ := lines[2]["g"].(map[string]any); g[requestid.LogKey] != "r-1" {
		t.Fatalf("grouped line %v", lines[2])
	}
}

func TestOutgoing(t *testing.T) {
	if _, ok := metadata.FromOutgoingContext(requestid.Outgoing(context.Background())); ok {
		t.Fatal("metadata without a request ID")
	}
	ctx := requestid.Outgoing(requestid.NewContext(context.Background(), "r-2"))
	md, _ := metadata.FromOutgoingContext(ctx)
	if got := md.Get(requestid.MetadataKey); len(got) != 1 || got[0] != "r-2" {
		t.Fatalf("outgoing metadata %v", md)
	}
	in := metadata.NewIncomingContext(context.Background(), md)
	if got := requestid.FromIncoming(in); got != "r-2" {
		t.Fatalf("FromIncoming = %q", got)
	}
}
