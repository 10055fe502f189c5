package wire

import (
	"encoding/json"
	"net/http"
)

// Events writes server-sent events in OpenAI's shape. Headers go out with the first event (Start),
// so an error before it still gets a proper HTTP status.
type Events struct {
	W       http.ResponseWriter
	Started bool
	Failed  bool // the client went away
	buf     []byte
}

// Start sends the stream's headers: its status goes out with them.
func (s *Events) Start(servedBy string) {
	s.Started = true
	h := s.W.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	if servedBy != "" {
		h.Set("Syn4pse-Served-By", servedBy)
	}
	s.W.WriteHeader(http.StatusOK)
}

// Write sends v as one event.
func (s *Events) Write(v any) error {
	var err error
	s.buf = append(s.buf[:0], "data: "...)
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	s.buf = append(s.buf, b...)
	s.buf = append(s.buf, "\n\n"...)
	return s.WriteRaw(s.buf)
}

// WriteRaw sends b as it is and flushes it; a failed write marks the client gone.
func (s *Events) WriteRaw(b []byte) error {
	if _, err := s.W.Write(b); err != nil {
		s.Failed = true
		return err
	}
	if err := http.NewResponseController(s.W).Flush(); err != nil {
		s.Failed = true
		return err
	}
	return nil
}

// Fail ends an event stream that failed (nothing when err is nil or the client went away):
// before any event, with an HTTP error response; after, with an error event in OpenAI's shape.
func (s *Events) Fail(err error) {
	switch {
	case err == nil || s.Failed:
	case !s.Started:
		WriteStatusError(s.W, err)
	default:
		_, body := statusError(err)
		s.Write(body)
	}
}
