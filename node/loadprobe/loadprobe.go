// Package loadprobe keeps a model file that crashes llama.cpp from taking the node down with
// it. The GGUF check (internal/gguf) refuses the malformed files we know of, but llama.cpp has
// more asserts and unchecked pointers than any check can follow; a crash there is a crash of
// the whole process, every other model and stream included. So before a node first loads a
// model file it has not seen load, it loads it in a child process (the node's own binary, `syn4pse
// probe-model`): CPU only, a tiny context, then exit. A child that exits 0 vouches for the files,
// remembered by path, size and modification time in <data dir>/load-probes.json so later loads
// skip the probe; a child that dies by a signal (SIGSEGV, SIGABRT from a GGML_ASSERT) marks the
// model unavailable with that reason, and the node keeps serving.
//
// What a probe does not cover: a crash that needs the GPU (probes run on the CPU, so a node
// does not hold a model twice in VRAM) or a request (a crash in decoding a particular prompt).
package loadprobe

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ekisa-team/syn4pse/internal/durable"
	"github.com/ekisa-team/syn4pse/internal/gguf"
	"github.com/ekisa-team/syn4pse/node/models"
)

// Command is the hidden subcommand of the syn4pse binary that runs a probe.
const Command = "probe-model"

// probedEngines are the engines whose files llama.cpp reads in-process: only their models are probed.
var probedEngines = map[string]bool{"llama_cpp": true, "outetts": true}

// timeout bounds one probe: a load that hangs is a failure too. Loading maps the weights, so
// even a large model's probe takes seconds.
const timeout = 5 * time.Minute

// Spec is what a probe loads: the model's files and how its engine reads them.
type Spec struct {
	Modality  string
	Engine    string
	Path      string
	Projector string
	Vocoder   string
	Pooling   string
}

// SpecOf is the probe of a declared model.
func SpecOf(d models.Decl) Spec {
	return Spec{Modality: d.Modality, Engine: d.Engine, Path: d.Path, Projector: d.Options.Projector,
		Vocoder: d.Options.Vocoder, Pooling: d.Options.Pooling}
}

// Args are the flags of Command that carry s.
func (s Spec) Args() []string {
	args := []string{"--modality", s.Modality, "--engine", s.Engine, "--path", s.Path}
	for _, f := range [][2]string{{"--mmproj", s.Projector}, {"--vocoder", s.Vocoder}, {"--pooling", s.Pooling}} {
		if f[1] != "" {
			args = append(args, f[0], f[1])
		}
	}
	return args
}

// files are the model files s loads.
func (s Spec) files() []string {
	var out []string
	for _, f := range []string{s.Path, s.Projector, s.Vocoder} {
		if f != "" {
			out = append(out, f)
		}
	}
	return out
}

// Prober runs probes and remembers the files that passed. It is safe for concurrent use.
type Prober struct {
	command []string
	env     []string
	path    string // the known-good file; "" remembers nothing across restarts
	mu      sync.Mutex
	good    map[string]time.Time
}

// New returns a Prober that runs command (the binary and its arguments up to Command's flags,
// e.g. [/usr/bin/syn4pse probe-model --library-path L]) with env added to the node's
// environment, and remembers passed files in dataDir.
func New(command, env []string, dataDir string) *Prober {
	p := &Prober{command: command, env: env, good: map[string]time.Time{}}
	if dataDir != "" {
		p.path = filepath.Join(dataDir, "load-probes.json")
		if b, err := os.ReadFile(p.path); err == nil {
			json.Unmarshal(b, &p.good) // a damaged file only costs probes again
		}
	}
	return p
}

// Probe loads d's files in a child process unless they passed before; it fails when the child
// crashes or cannot load them. Models of other engines pass at once.
func (p *Prober) Probe(ctx context.Context, d models.Decl) error {
	if !probedEngines[d.Engine] || d.Path == "" {
		return nil
	}
	s := SpecOf(d)
	// A file the GGUF check refuses needs no child to fail: it fails here, in the engine's
	// words (the catalog names the model's file; the others are named here).
	for _, f := range []struct{ path, what string }{{s.Path, ""}, {s.Projector, "mmproj "}, {s.Vocoder, "vocoder "}} {
		if f.path == "" {
			continue
		}
		if err := gguf.Check(f.path); err != nil && f.what != "" {
			return fmt.Errorf("%s%s: %w", f.what, f.path, err)
		} else if err != nil {
			return err
		}
	}
	key, err := fingerprint(s.files())
	if err != nil {
		return nil // a missing file: the load says so in its own words
	}
	p.mu.Lock()
	_, known := p.good[key]
	p.mu.Unlock()
	if known {
		return nil
	}
	began := time.Now()
	if err := p.run(ctx, s); err != nil {
		return err
	}
	slog.Info("model load probe passed", "model", d.Name, "took", time.Since(began).Round(time.Millisecond))
	p.remember(key)
	return nil
}

// run runs one probe child for s.
func (p *Prober) run(ctx context.Context, s Spec) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	args := append(append([]string{}, p.command[1:]...), s.Args()...)
	cmd := exec.CommandContext(ctx, p.command[0], args...)
	// The Go runtime turns a signal in C code into "SIGSEGV: segmentation violation" and exit
	// status 2. GOTRACEBACK=none spares the goroutine dumps, GGML_NO_BACKTRACE ggml's gdb
	// backtrace of an assertion (seconds long).
	cmd.Env = append(append(os.Environ(), p.env...), "GOTRACEBACK=none", "GGML_NO_BACKTRACE=1")
	var stderr output
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	err := cmd.Run()
	if err == nil {
		return nil
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		return fmt.Errorf("load probe: run %s: %w", p.command[0], err)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("load probe: loading the file took over %v; the file is malformed or too large for this machine", timeout)
	}
	out := stderr.String()
	signal := crashSignal(out)
	if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		signal = signalName(ws.Signal())
	}
	if signal == "" {
		return errors.New(lastError(out))
	}
	assert := assertion.FindString(out)
	slog.Warn("model load probe crashed", "path", s.Path, "signal", signal, "assertion", assert)
	if assert != "" {
		signal += ": " + assert
	}
	return fmt.Errorf("the engine crashed loading this file (signal %s); the file is malformed or unsupported", signal)
}

var (
	// goSignal is the line the Go runtime prints for a fatal signal.
	goSignal = regexp.MustCompile(`(?m)^(SIG[A-Z]+): `)
	// assertion is ggml's message for a failed GGML_ASSERT, the most common crash.
	assertion = regexp.MustCompile(`GGML_ASSERT\(.*\) failed`)
)

// crashSignal is the fatal signal a child's output reports, "" for none.
func crashSignal(out string) string {
	if m := goSignal.FindStringSubmatch(out); m != nil {
		return m[1]
	}
	return ""
}

// remember records key as loaded and saves the record.
func (p *Prober) remember(key string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.good[key] = time.Now().UTC()
	if p.path == "" {
		return
	}
	b, err := json.MarshalIndent(p.good, "", "  ")
	if err == nil {
		err = durable.WriteFile(p.path, b, 0o600)
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		slog.Warn("model load probes: cannot remember a passed probe", "err", err)
	}
}

// fingerprint names files as they are now: path, size and modification time of each.
func fingerprint(files []string) (string, error) {
	var parts []string
	for _, f := range files {
		abs, err := filepath.Abs(f)
		if err != nil {
			return "", err
		}
		fi, err := os.Stat(abs)
		if err != nil {
			return "", err
		}
		parts = append(parts, abs+"|"+strconv.FormatInt(fi.Size(), 10)+"|"+strconv.FormatInt(fi.ModTime().UnixNano(), 10))
	}
	return strings.Join(parts, ";"), nil
}

// signalName is SIGSEGV for syscall.SIGSEGV.
func signalName(s syscall.Signal) string {
	names := map[syscall.Signal]string{syscall.SIGSEGV: "SIGSEGV", syscall.SIGABRT: "SIGABRT", syscall.SIGBUS: "SIGBUS",
		syscall.SIGFPE: "SIGFPE", syscall.SIGILL: "SIGILL", syscall.SIGKILL: "SIGKILL"}
	if n, ok := names[s]; ok {
		return n
	}
	return s.String()
}

// lastError is the reason a child that failed cleanly gave: its last "error: " line.
func lastError(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if msg, ok := strings.CutPrefix(lines[i], "error: "); ok {
			return msg
		}
	}
	return "load probe failed: " + strings.TrimSpace(lines[len(lines)-1])
}

// output keeps the first and the last outputSize bytes written to it (a child's log: the
// assertion that failed comes early, the signal and the error late).
type output struct{ head, tail []byte }

const outputSize = 16 << 10

func (o *output) Write(p []byte) (int, error) {
	n := len(p)
	if room := outputSize - len(o.head); room > 0 {
		take := min(room, len(p))
		o.head = append(o.head, p[:take]...)
		p = p[take:]
	}
	o.tail = append(o.tail, p...)
	if len(o.tail) > outputSize {
		o.tail = append(o.tail[:0:0], o.tail[len(o.tail)-outputSize:]...)
	}
	return n, nil
}

func (o *output) String() string {
	return string(bytes.ToValidUTF8(append(append([]byte{}, o.head...), o.tail...), nil))
}
