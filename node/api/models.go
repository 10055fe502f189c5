package api

import (
	"context"
	"slices"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ekisa-team/syn4pse/node/api/internal/request"
	"github.com/ekisa-team/syn4pse/node/models"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// permit refuses an operation a peer may not ask for (models.allow_remote); local clients may
// do everything.
func (s *ModelService) permit(ctx context.Context, op string) error {
	if s.IsRemote == nil || !s.IsRemote(ctx) || slices.Contains(s.AllowRemote, op) {
		return nil
	}
	return status.Errorf(codes.PermissionDenied, "this node does not let peers %s models (models.allow_remote)", op)
}

// LoadModel implements pb.ModelServiceServer.
func (s *ModelService) LoadModel(ctx context.Context, req *pb.LoadModelRequest) (*pb.LoadModelResponse, error) {
	if err := s.permit(ctx, "load"); err != nil {
		return nil, err
	}
	keepAlive, err := request.KeepAlive(req.GetKeepAlive())
	if err != nil {
		return nil, err
	}
	if err := s.Models.Load(ctx, req.GetName(), keepAlive); err != nil {
		return nil, request.Status(err)
	}
	st, _ := s.Models.Status(req.GetName())
	return &pb.LoadModelResponse{Model: running(st)}, nil
}

// UnloadModel implements pb.ModelServiceServer.
func (s *ModelService) UnloadModel(ctx context.Context, req *pb.UnloadModelRequest) (*pb.UnloadModelResponse, error) {
	if err := s.permit(ctx, "unload"); err != nil {
		return nil, err
	}
	if err := s.Models.Unload(req.GetName()); err != nil {
		return nil, request.Status(err)
	}
	return &pb.UnloadModelResponse{}, nil
}

// ListRunning implements pb.ModelServiceServer.
func (s *ModelService) ListRunning(context.Context, *pb.ListRunningRequest) (*pb.ListRunningResponse, error) {
	var out pb.ListRunningResponse
	for _, st := range s.Models.List() {
		if st.State == models.StateLoaded {
			out.Models = append(out.Models, running(st))
		}
	}
	return &out, nil
}

// PullModel implements pb.ModelServiceServer.
func (s *ModelService) PullModel(req *pb.PullModelRequest, stream grpc.ServerStreamingServer[pb.PullProgress]) error {
	var sendErr error
	err := s.StreamPull(stream.Context(), req, func(p *pb.PullProgress) {
		if sendErr == nil {
			sendErr = stream.Send(p)
		}
	})
	if err != nil {
		return err
	}
	return sendErr
}

// StreamPull runs a pull, calling progress with each event; errors are gRPC status errors.
func (s *ModelService) StreamPull(ctx context.Context, req *pb.PullModelRequest, progress func(*pb.PullProgress)) error {
	if err := s.permit(ctx, "pull"); err != nil {
		return err
	}
	return request.Status(s.Pull(ctx, req, progress))
}

// DeleteModel implements pb.ModelServiceServer.
func (s *ModelService) DeleteModel(ctx context.Context, req *pb.DeleteModelRequest) (*pb.DeleteModelResponse, error) {
	if err := s.permit(ctx, "delete"); err != nil {
		return nil, err
	}
	freed, err := s.Delete(req.GetName(), req.GetForce())
	if err != nil {
		return nil, request.Status(err)
	}
	return &pb.DeleteModelResponse{FreedBytes: freed}, nil
}

func running(st models.Status) *pb.RunningModel {
	r := &pb.RunningModel{Name: st.Name, MemoryBytes: st.MemoryBytes, ActiveRequests: int32(st.Refs),
		KeepAlive: keepAliveText(st.KeepAlive), LoadedAtUnixMs: st.LoadedAt.UnixMilli()}
	if st.Refs == 0 && !st.LastUsed.IsZero() {
		r.IdleMs = time.Since(st.LastUsed).Milliseconds()
	}
	if !st.ExpiresAt.IsZero() {
		r.ExpiresAtUnixMs = st.ExpiresAt.UnixMilli()
	}
	return r
}

func keepAliveText(d time.Duration) string {
	if d < 0 {
		return "-1"
	}
	return d.String()
}
