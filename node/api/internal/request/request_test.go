package request

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ekisa-team/syn4pse/engine"
	"github.com/ekisa-team/syn4pse/node/models"
	"github.com/ekisa-team/syn4pse/node/models/pull"
	"github.com/ekisa-team/syn4pse/node/models/store"
	"github.com/ekisa-team/syn4pse/node/router"
)

func TestStatusMapsEachSentinel(t *testing.T) {
	tests := []struct {
		err  error
		want codes.Code
	}{
		{models.ErrNotFound, codes.NotFound},
		{router.ErrNoNode, codes.NotFound},
		{store.ErrNotFound, codes.NotFound},
		{pull.ErrNoSource, codes.NotFound},
		{models.ErrUnavailable, codes.Unavailable},
		{engine.ErrClosed, codes.Unavailable},
		{pull.ErrPeersFailed, codes.Unavailable},
		{models.ErrInUse, codes.FailedPrecondition},
		{store.ErrDigestMismatch, codes.FailedPrecondition},
		{pull.ErrDeclaredPath, codes.FailedPrecondition},
		{store.ErrNotGGUF, codes.InvalidArgument},
		{pull.ErrInvalid, codes.InvalidArgument},
		{engine.ErrInvalidRequest, codes.InvalidArgument},
		{engine.ErrContextExceeded, codes.InvalidArgument},
		{store.ErrAccessDenied, codes.PermissionDenied},
		{models.ErrBusy, codes.ResourceExhausted},
		{store.ErrBusy, codes.Aborted},
		{engine.ErrUnsupported, codes.Unimplemented},
		{context.Canceled, codes.Canceled},
		{context.DeadlineExceeded, codes.DeadlineExceeded},
		{errors.New("something else"), codes.Internal},
	}
	for _, tt := range tests {
		wrapped := fmt.Errorf("load tiny: %w", tt.err)
		st, ok := status.FromError(Status(wrapped))
		if !ok || st.Code() != tt.want || st.Message() != wrapped.Error() {
			t.Errorf("Status(%v) = %v %q, want %v with the message kept", wrapped, st.Code(), st.Message(), tt.want)
		}
	}
	if Status(nil) != nil {
		t.Error("Status(nil) is not nil")
	}
	already := status.Error(codes.ResourceExhausted, "queue full")
	if got := Status(already); got != already {
		t.Errorf("a status error was rewritten: %v", got)
	}
}

func TestKeepAlive(t *testing.T) {
	if d, err := KeepAlive(""); d != nil || err != nil {
		t.Errorf(`"" = %v, %v: want the model's own (nil)`, d, err)
	}
	if d, err := KeepAlive("10m"); err != nil || d == nil || d.Minutes() != 10 {
		t.Errorf(`"10m" = %v, %v`, d, err)
	}
	if _, err := KeepAlive("soon"); status.Code(err) != codes.InvalidArgument {
		t.Errorf(`"soon": %v, want InvalidArgument`, err)
	}
}
