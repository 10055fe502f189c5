package api

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ekisa-team/syn4pse/engine"
	"github.com/ekisa-team/syn4pse/internal/audio"
	"github.com/ekisa-team/syn4pse/internal/gguf"
	"github.com/ekisa-team/syn4pse/node/models"
	"github.com/ekisa-team/syn4pse/node/models/pull"
	"github.com/ekisa-team/syn4pse/node/models/store"
	"github.com/ekisa-team/syn4pse/node/router"
)

// toStatus maps the node's sentinel errors to gRPC status codes. It is the only place that does:
// the HTTP API derives its statuses from these codes.
func toStatus(err error) error {
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
		// OUT_OF_RANGE is a request over a limit (limits.go): HTTP answers 413.
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

func invalid(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}
