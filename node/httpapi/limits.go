package httpapi

import (
	"errors"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/ekisa-team/syn4pse/node/api"
	"github.com/ekisa-team/syn4pse/node/config"
)

// NewServer is an HTTP server for handler (this API or Ollama's) with the limits' timeouts:
// headers within ReadHeaderTimeout, the whole request within ReadTimeout, keep-alive
// connections closed after IdleTimeout. It has no http.Server.WriteTimeout, which would cut
// every stream at a fixed age: each write instead gets WriteTimeout from when it starts (see
// limitWrites), so a stream lives while it produces and its client reads.
func NewServer(handler http.Handler, l config.Limits) *http.Server {
	l = l.WithDefaults()
	return &http.Server{
		Handler:           limitWrites(handler, l.WriteTimeout),
		ReadHeaderTimeout: l.ReadHeaderTimeout,
		ReadTimeout:       l.ReadTimeout,
		IdleTimeout:       l.IdleTimeout,
	}
}

// limitWrites gives every write and flush of a response a deadline of timeout from when it
// starts. (ReadTimeout needs no such care: net/http lifts the read deadline once the body is
// read to its end, which DecodeJSON does.)
func limitWrites(next http.Handler, timeout time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dw := &deadlineWriter{ResponseWriter: w, rc: http.NewResponseController(w), timeout: timeout, r: r}
		ctx := api.WithCaller(r.Context(), api.Caller{Route: r.Method + " " + r.URL.Path, Addr: r.RemoteAddr})
		next.ServeHTTP(dw, r.WithContext(ctx))
		// net/http flushes what the handler left buffered after it returns.
		dw.extend()
	})
}

// deadlineWriter is a ResponseWriter whose writes each get a deadline. Unwrap lets
// http.ResponseController reach the connection's own writer.
type deadlineWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	r       *http.Request
	cut     bool // a write ran past its deadline (and was logged)
}

// extend moves the write deadline to timeout from now. Writers without deadlines (HTTP/2 over
// some transports, test recorders) are left as they are.
func (w *deadlineWriter) extend() {
	w.rc.SetWriteDeadline(time.Now().Add(w.timeout))
}

func (w *deadlineWriter) Write(b []byte) (int, error) {
	w.extend()
	n, err := w.ResponseWriter.Write(b)
	return n, w.check(err)
}

// Flush implements http.Flusher.
func (w *deadlineWriter) Flush() { w.FlushError() }

// FlushError is what http.ResponseController.Flush calls.
func (w *deadlineWriter) FlushError() error {
	w.extend()
	return w.check(w.rc.Flush())
}

// check logs the first write that ran past its deadline: the client stopped reading.
func (w *deadlineWriter) check(err error) error {
	if err != nil && !w.cut && errors.Is(err, os.ErrDeadlineExceeded) {
		w.cut = true
		slog.Warn("response cut: the client stopped reading", "route", w.r.Method+" "+w.r.URL.Path,
			"limit_key", "server.write_timeout", "limit", w.timeout, "remote", w.r.RemoteAddr)
	}
	return err
}

// Unwrap is the writer underneath, for http.ResponseController.
func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
