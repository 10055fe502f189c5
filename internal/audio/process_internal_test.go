package audio

import (
	"bytes"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// brokenWriter fails every write.
type brokenWriter struct{}

func (brokenWriter) Write([]byte) (int, error) { return 0, errors.New("connection reset") }

// TestProcessSinkIsAlwaysWaitedFor runs encoder processes (sh standing in for lame where the
// test needs one to misbehave) through every way a stream ends, and checks that each process
// was waited for and the error says why it ended.
func TestProcessSinkIsAlwaysWaitedFor(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	samples := make([]float32, 16000)
	for _, tc := range []struct {
		name     string
		script   string
		w        io.Writer
		writes   int
		mentions string // "" when the stream must end cleanly
	}{
		{"clean", "cat", &bytes.Buffer{}, 3, ""},
		{"no samples", "cat", &bytes.Buffer{}, 0, ""},
		{"encoder fails at the end", "cat >/dev/null; echo 'bad input' >&2; exit 3", &bytes.Buffer{}, 1, "bad input"},
		{"encoder dies early", "echo 'cannot encode' >&2; exit 2", &bytes.Buffer{}, 50, "cannot encode"},
		{"writer fails", "cat", brokenWriter{}, 50, "connection reset"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := startProcess(tc.w, "sh", "-c", tc.script)
			if err != nil {
				t.Fatal(err)
			}
			enc := &Encoder{sink: s}
			for range tc.writes {
				if enc.Write(samples) != nil {
					break
				}
			}
			err = enc.Close()
			if s.cmd.ProcessState == nil {
				t.Fatal("the encoder process was not waited for")
			}
			switch {
			case tc.mentions == "" && err != nil:
				t.Errorf("Close: %v", err)
			case tc.mentions != "" && (err == nil || !strings.Contains(err.Error(), tc.mentions)):
				t.Errorf("Close: %v; want an error mentioning %q", err, tc.mentions)
			}
		})
	}
}
