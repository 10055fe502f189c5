package chattemplate

import (
	"testing"
	"time"
)

// TestStrftime compares with Python's datetime.strftime on Linux for the
// formats chat templates use.
func TestStrftime(t *testing.T) {
	at := time.Date(2025, time.July, 5, 9, 3, 7, 0, time.UTC)
	tests := map[string]string{
		"%d %b %Y":  "05 Jul 2025",   // Llama 3.2
		"%B %d, %Y": "July 05, 2025", // Granite 3.x
		"%Y-%m-%d":  "2025-07-05",    // Mistral Small 3.x
		"%-d/%-m %I:%M:%S %p %a %A %j %y %H %% %e": "5/7 09:03:07 AM Sat Saturday 186 25 09 %  5",
		"%F %T %Q": "2025-07-05 09:03:07 %Q",
	}
	for format, want := range tests {
		if got := strftime(at, format); got != want {
			t.Errorf("strftime(%q) = %q, want %q", format, got, want)
		}
	}
}
