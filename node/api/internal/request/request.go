// Package request holds what every service of package api does with a request, whichever
// package implements it: map the node's errors to gRPC codes (the one place that does), refuse
// bad input, read keep_alive, hold the model it runs on.
package request

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ekisa-team/syn4pse/engine"
	"github.com/ekisa-team/syn4pse/internal/audio"
	"github.com/ekisa-team/syn4pse/internal/gguf"
	"github.com/ekisa-team/syn4pse/node/config"
	"github.com/ekisa-team/syn4pse/node/models"
	"github.com/ekisa-team/syn4pse/node/models/pull"
	"github.com/ekisa-team/syn4pse/node/models/store"
	"github.com/ekisa-team/syn4pse/node/router"
)

// Status maps the node's sentinel errors to gRPC status codes. It is the only place that does:
// the HTTP API derives its statuses from these codes.
func Status(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.Internal
	switch {
	case errors.Is(err, models.ErrNotFound), errors.Is(err, router.ErrNoNode), errors.Is(err, pull.ErrNoSource):
		code = codes.NotFound
	case errors.Is(err, models.ErrUnavailable), errors.Is(err, engine.ErrClosed), errors.Is(err, pull.ErrPeersFailed):
		code = codes.Unavailable
	case errors.Is(err, models.ErrInUse), errors.Is(err, store.ErrDigestMismatch), errors.Is(err, pull.ErrDeclaredPath):
		code = codes.FailedPrecondition
	case errors.Is(err, store.ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, store.ErrNotGGUF), errors.Is(err, pull.ErrInvalid), errors.Is(err, gguf.ErrInvalid):
		code = codes.InvalidArgument
	case errors.Is(err, store.ErrAccessDenied):
		code = codes.PermissionDenied
	case errors.Is(err, models.ErrBusy), errors.Is(err, engine.ErrCacheFull):
		code = codes.ResourceExhausted
	case errors.Is(err, store.ErrBusy):
		code = codes.Aborted
	case errors.Is(err, engine.ErrInvalidRequest), errors.Is(err, engine.ErrContextExceeded):
		code = codes.InvalidArgument
	case errors.Is(err, audio.ErrTooLong):
		// OUT_OF_RANGE is a request over a limit (package api's limits.go): HTTP answers 413.
		code = codes.OutOfRange
	case errors.Is(err, audio.ErrUnsupported), errors.Is(err, audio.ErrCorrupt), errors.Is(err, audio.ErrEncoderMissing):
		code = codes.InvalidArgument
	case errors.Is(err, engine.ErrUnsupported):
		code = codes.Unimplemented
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	}
	return status.Error(code, err.Error())
}

// Invalid is the error of a request that is wrong as sent: INVALID_ARGUMENT with a message that
// says what to send instead.
func Invalid(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}

// KeepAlive reads a request's keep_alive; "" keeps the model's own (nil).
func KeepAlive(s string) (*time.Duration, error) {
	if s == "" {
		return nil, nil
	}
	d, err := config.ParseKeepAlive(s)
	if err != nil {
		return nil, Invalid("keep_alive: %v", err)
	}
	return &d, nil
}

// Acquire holds the model called name for one request, after checking that it is of modality
// want when this node knows it (what names the API asking, for the message).
func Acquire(ctx context.Context, m *models.Manager, name, want, what, keepAliveText string) (*models.Lease, error) {
	if st, ok := m.Status(name); ok && st.Modality != want {
		return nil, Invalid("%q is a %s model; %s take %s models", name, st.Modality, what, want)
	}
	keepAlive, err := KeepAlive(keepAliveText)
	if err != nil {
		return nil, err
	}
	lease, err := m.Acquire(ctx, name, keepAlive)
	if err != nil {
		return nil, Status(err)
	}
	return lease, nil
}

// Millis is d in milliseconds, as the API's timings give it.
func Millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
