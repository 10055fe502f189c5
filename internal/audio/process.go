package audio

import (
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"sync"
)

// newLAMESink returns a sink encoding MP3 with lame at a constant 64 kbit/s (plenty for mono
// speech; lame's default would be 24 kbit/s at 16 kHz). lame keeps the rate when MPEG audio has
// it (8 to 48 kHz) and resamples otherwise. On a pipe lame cannot go back to write its Info
// frame, so the stream starts with its delay (576 samples, plus the decoder's 529) of silence.
func newLAMESink(w io.Writer, rate int) (sink, error) {
	kHz := strconv.FormatFloat(float64(rate)/1000, 'f', -1, 64)
	return startProcess(w, "lame", "--quiet", "-r", "-s", kHz, "--signed", "--little-endian",
		"--bitwidth", "16", "-m", "m", "-b", "64", "-", "-")
}

// newOpusSink returns a sink encoding Ogg Opus with opusenc (which resamples to 48 kHz).
func newOpusSink(w io.Writer, rate int) (sink, error) {
	return startProcess(w, "opusenc", "--quiet", "--raw", "--raw-rate", strconv.Itoa(rate),
		"--raw-chan", "1", "--raw-bits", "16", "-", "-")
}

// processSink pipes s16le PCM into an encoder program and copies what it prints to the writer
// as it comes. The process is always waited for: by close, or by abort after killing it.
type processSink struct {
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	copied chan error // the result of copying stdout to the writer
	stderr tailBuffer
	pcm    []byte
	done   bool
	err    error // the outcome, once done
}

// startProcess starts program with args, its stdout copied to w by a goroutine that finish
// waits for.
func startProcess(w io.Writer, program string, args ...string) (*processSink, error) {
	s := &processSink{name: program, cmd: exec.Command(program, args...), copied: make(chan error, 1)}
	s.cmd.Stderr = &s.stderr
	stdin, err := s.cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", program, err)
	}
	s.stdin = stdin
	go func() { s.copied <- s.copyOut(w, stdout) }()
	return s, nil
}

// copyOut copies the encoder's output to w. When w fails nobody will read the rest, so it kills
// the encoder: the next write then fails instead of blocking on a full pipe.
func (s *processSink) copyOut(w io.Writer, stdout io.Reader) error {
	_, err := io.Copy(w, stdout)
	if err != nil {
		s.cmd.Process.Kill()
		io.Copy(io.Discard, stdout) // until the pipe closes, so Wait can close it
	}
	return err
}

func (s *processSink) write(samples []float32) error {
	s.pcm = appendS16LE(s.pcm[:0], samples)
	if _, err := s.stdin.Write(s.pcm); err != nil {
		if ferr := s.finish(true); ferr != nil {
			return ferr
		}
		return fmt.Errorf("%s: %w", s.name, err)
	}
	return nil
}

func (s *processSink) close() error { return s.finish(false) }
func (s *processSink) abort()       { s.finish(true) }

// finish ends the input (killing the process first if kill), waits for the output to be copied
// and the process to exit, and returns what went wrong, the writer's failure first.
func (s *processSink) finish(kill bool) error {
	if s.done {
		return s.err
	}
	s.done = true
	if kill {
		s.cmd.Process.Kill()
	}
	s.stdin.Close()
	copyErr := <-s.copied
	waitErr := s.cmd.Wait()
	switch {
	case copyErr != nil:
		s.err = fmt.Errorf("write %s output: %w", s.name, copyErr)
	case waitErr != nil && (!kill || s.stderr.String() != ""):
		s.err = fmt.Errorf("%s failed: %v: %s", s.name, waitErr, s.stderr.String())
	}
	return s.err
}

// tailBuffer keeps the last 2 KiB written to it: enough of an encoder's stderr to say why it
// failed. exec copies into it from its own goroutine.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	const keep = 2 << 10
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if len(t.buf) > keep {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-keep:]...)
	}
	return len(p), nil
}

// String returns the kept output, trimmed.
func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.buf))
}
