package pocketsphinx

import "C"

import (
	"context"
	"log/slog"
	"strings"
	"sync"
)

// logLine collects PocketSphinx's log fragments until a newline: a line may come in pieces
// (E_INFO, then E_INFOCONT continuations).
var logLine struct {
	sync.Mutex
	buf strings.Builder
}

// synPocketsphinxLog receives every log message of the library (shim.c's callback), on the
// thread of the C call that logged it. Everything goes to slog at debug level: what matters to a
// user (a model that does not load) comes back as an error from NewDecoder.
//
//export synPocketsphinxLog
func synPocketsphinxLog(_ C.int, text *C.char) {
	if !slog.Default().Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	s := C.GoString(text)
	logLine.Lock()
	defer logLine.Unlock()
	logLine.buf.WriteString(s)
	if !strings.HasSuffix(s, "\n") {
		return
	}
	line := strings.TrimSpace(logLine.buf.String())
	logLine.buf.Reset()
	if line != "" {
		slog.Debug(line, "component", "pocketsphinx")
	}
}
