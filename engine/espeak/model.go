package espeak

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/ekisa-team/syn4pse/engine"
)

// Speed limits of a request; inside them the rate is clamped to espeak-ng's words a minute.
const (
	minSpeed             = 0.25
	maxSpeed             = 4
	normalWPM            = 175
	minWPM, maxWPM       = 80, 450
	stderrLimit          = 4 << 10
	readBuffer           = 8 << 10
	processKillWaitDelay = time.Second
)

// model is a loaded espeak-ng "model": the program, its voices and a limit on processes.
type model struct {
	command   string
	languages []string
	variants  []string
	voice     string
	info      engine.ModelInfo
	// slots admits a request per running process.
	slots *engine.Slots
}

// Info implements engine.Model.
func (m *model) Info() engine.ModelInfo {
	return m.info.Clone()
}

// Stats implements engine.Model.
func (m *model) Stats() engine.Stats { return m.slots.Stats() }

// Close implements engine.Model: queued requests fail with engine.ErrClosed and running ones
// end (their processes are waited for).
func (m *model) Close() error {
	m.slots.Close()
	return nil
}

// Synthesize implements engine.TTS.
func (m *model) Synthesize(ctx context.Context, req engine.SynthesizeRequest, emit func(engine.AudioChunk) error) (engine.SynthesizeResult, error) {
	args, err := m.args(req)
	if err != nil {
		return engine.SynthesizeResult{}, err
	}
	if err := m.slots.Acquire(ctx); err != nil {
		return engine.SynthesizeResult{}, err
	}
	defer m.slots.Release()
	start := time.Now()
	rate, samples, err := m.run(ctx, args, req.Text, emit)
	if ctxErr := ctx.Err(); ctxErr != nil {
		// The process was killed for it; say why, not "signal: killed".
		return engine.SynthesizeResult{}, ctxErr
	}
	if err != nil {
		return engine.SynthesizeResult{}, err
	}
	return engine.SynthesizeResult{
		Rate:            rate,
		AudioDuration:   time.Duration(samples) * time.Second / time.Duration(rate),
		ProcessDuration: time.Since(start),
	}, nil
}

// args checks a request and returns espeak-ng's arguments for it.
func (m *model) args(req engine.SynthesizeRequest) ([]string, error) {
	if strings.TrimSpace(req.Text) == "" {
		return nil, fmt.Errorf("%w: no text to speak", engine.ErrInvalidRequest)
	}
	voice := m.voice
	if req.Voice != "" {
		v, ok := m.resolve(req.Voice)
		if !ok {
			return nil, fmt.Errorf("%w: voice %q: %s", engine.ErrInvalidRequest, req.Voice, m.voiceHelp())
		}
		voice = v
	}
	speed := float64(req.Speed)
	if speed == 0 {
		speed = 1
	}
	if !(speed >= minSpeed && speed <= maxSpeed) {
		return nil, fmt.Errorf("%w: speed %g: from %g to %g", engine.ErrInvalidRequest, speed, minSpeed, float64(maxSpeed))
	}
	wpm := min(max(int(math.Round(normalWPM*speed)), minWPM), maxWPM)
	// --stdout: a WAV on standard output; -b 1: the text is UTF-8; no -m: not SSML.
	return []string{"--stdout", "-b", "1", "-v", voice, "-s", strconv.Itoa(wpm)}, nil
}

// run runs one espeak-ng process and streams its audio to emit. It always waits for the
// process; emit failing or ctx ending kills it.
func (m *model) run(ctx context.Context, args []string, text string, emit func(engine.AudioChunk) error) (rate, samples int, err error) {
	cmd := exec.CommandContext(ctx, m.command, args...)
	cmd.Stdin = strings.NewReader(text)
	stderr := &limitedBuffer{limit: stderrLimit}
	cmd.Stderr = stderr
	cmd.WaitDelay = processKillWaitDelay
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, 0, fmt.Errorf("espeak_ng: start %s: %w", m.command, err)
	}
	rate, samples, streamErr := streamWAV(stdout, func(c engine.AudioChunk) error {
		if err := ctx.Err(); err != nil {
			return err // no audio after the caller stopped listening
		}
		return emit(c)
	})
	if streamErr != nil {
		_ = cmd.Process.Kill()
	}
	waitErr := cmd.Wait()
	switch {
	case streamErr != nil:
		return rate, samples, streamErr
	case waitErr != nil:
		return rate, samples, fmt.Errorf("espeak_ng: %s: %w: %s", m.command, waitErr, strings.TrimSpace(stderr.String()))
	}
	return rate, samples, nil
}

// streamWAV reads a 16-bit mono WAV stream and emits its samples as they arrive. The sizes in
// espeak-ng's header are placeholders (it writes before it knows), so the data runs to EOF.
func streamWAV(r io.Reader, emit func(engine.AudioChunk) error) (rate, samples int, err error) {
	rate, err = readWAVHeader(r)
	if err != nil {
		return 0, 0, err
	}
	buf := make([]byte, readBuffer)
	carry := 0 // a byte of a sample split between reads
	for {
		n, readErr := r.Read(buf[carry:])
		n += carry
		whole := n &^ 1
		if whole > 0 {
			chunk := make([]float32, whole/2)
			for i := range chunk {
				chunk[i] = float32(int16(uint16(buf[2*i])|uint16(buf[2*i+1])<<8)) / 32768
			}
			if err := emit(engine.AudioChunk{Rate: rate, Samples: chunk}); err != nil {
				return rate, samples, err
			}
			samples += len(chunk)
		}
		carry = n - whole
		if carry > 0 {
			buf[0] = buf[whole]
		}
		if errors.Is(readErr, io.EOF) {
			return rate, samples, nil
		}
		if readErr != nil {
			return rate, samples, fmt.Errorf("espeak_ng: read audio: %w", readErr)
		}
	}
}

// readWAVHeader reads a RIFF/WAVE header up to the start of the data chunk and returns the
// sample rate; the audio must be 16-bit PCM, mono.
func readWAVHeader(r io.Reader) (int, error) {
	var riff [12]byte
	if _, err := io.ReadFull(r, riff[:]); err != nil {
		return 0, fmt.Errorf("espeak_ng: no WAV header on its output: %w", err)
	}
	if string(riff[0:4]) != "RIFF" || string(riff[8:12]) != "WAVE" {
		return 0, errors.New("espeak_ng: its output is not a WAV stream")
	}
	rate := 0
	for {
		var head [8]byte
		if _, err := io.ReadFull(r, head[:]); err != nil {
			return 0, fmt.Errorf("espeak_ng: WAV header cut short: %w", err)
		}
		id, size := string(head[0:4]), le32(head[4:8])
		switch id {
		case "data":
			if rate == 0 {
				return 0, errors.New("espeak_ng: WAV data before its format chunk")
			}
			return rate, nil
		case "fmt ":
			if size < 16 || size > 64 {
				return 0, fmt.Errorf("espeak_ng: WAV format chunk of %d bytes", size)
			}
			f := make([]byte, size+size%2)
			if _, err := io.ReadFull(r, f); err != nil {
				return 0, fmt.Errorf("espeak_ng: WAV header cut short: %w", err)
			}
			format, channels, bits := le16(f[0:2]), le16(f[2:4]), le16(f[14:16])
			if format != 1 || channels != 1 || bits != 16 {
				return 0, fmt.Errorf("espeak_ng: WAV of format %d, %d channels, %d bits; want PCM, 1, 16", format, channels, bits)
			}
			rate = int(le32(f[4:8]))
			if rate <= 0 {
				return 0, fmt.Errorf("espeak_ng: WAV rate %d", rate)
			}
		default:
			if size > 1<<20 {
				return 0, fmt.Errorf("espeak_ng: WAV %q chunk of %d bytes before the data", id, size)
			}
			if _, err := io.CopyN(io.Discard, r, int64(size+size%2)); err != nil {
				return 0, fmt.Errorf("espeak_ng: WAV header cut short: %w", err)
			}
		}
	}
}

func le16(b []byte) uint32 { return uint32(b[0]) | uint32(b[1])<<8 }

func le32(b []byte) uint32 { return le16(b[0:2]) | le16(b[2:4])<<16 }

// limitedBuffer keeps the first limit bytes written to it (a process's stderr, for errors).
type limitedBuffer struct {
	bytes.Buffer
	limit int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.limit - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}
