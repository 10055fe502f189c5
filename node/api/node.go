package api

import (
	"cmp"
	"context"
	"os"
	"runtime"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ekisa-team/syn4pse/node/models"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// ModelService implements pb.ModelServiceServer.
type ModelService struct {
	pb.UnimplementedModelServiceServer
	Models *models.Manager
	// IsRemote tells a call from a mesh peer; nil on a standalone node.
	IsRemote func(context.Context) bool
	// AllowRemote lists what peers may do (models.allow_remote).
	AllowRemote []string
	// Pull fetches a model into the store, reporting progress.
	Pull func(ctx context.Context, req *pb.PullModelRequest, progress func(*pb.PullProgress)) error
	// Delete removes a pulled model, returning the bytes freed.
	Delete func(name string, force bool) (int64, error)
	// DiskUsage is the size of the model store.
	DiskUsage func() (int64, error)
}

// ListModels implements pb.ModelServiceServer.
func (s *ModelService) ListModels(context.Context, *pb.ListModelsRequest) (*pb.ListModelsResponse, error) {
	var out pb.ListModelsResponse
	for _, m := range s.Models.List() {
		out.Models = append(out.Models, modelInfo(m))
	}
	if s.DiskUsage != nil {
		out.StoreBytes, _ = s.DiskUsage()
	}
	return &out, nil
}

func modelInfo(m models.Status) *pb.ModelInfo {
	info := &pb.ModelInfo{
		Name:              m.Name,
		Modality:          Modality(m.Modality),
		Engine:            m.Engine,
		State:             state(m.State),
		SizeBytes:         m.SizeBytes,
		UnavailableReason: m.Reason,
		Path:              m.Path,
		Digest:            m.Digest,
	}
	if m.State == models.StateLoaded {
		info.Details = &pb.ModelDetails{
			Architecture:       m.Info.Architecture,
			ParameterCount:     m.Info.ParameterCount,
			Quantization:       m.Info.Quantization,
			ContextLength:      int32(m.Info.ContextLength),
			TrainContextLength: int32(m.Info.TrainContextLength),
			SampleRate:         int32(m.Info.SampleRate),
			Voices:             m.Info.Voices,
			Languages:          m.Info.Languages,
			Inputs:             m.Info.Inputs,
		}
		info.Stats = &pb.ModelStats{
			ActiveRequests:       int32(m.Stats.Active),
			QueuedRequests:       int32(m.Stats.Queued),
			Parallel:             int32(m.Info.Parallel),
			RequestsTotal:        m.Stats.Requests,
			PromptTokensTotal:    m.Stats.PromptTokens,
			GeneratedTokensTotal: m.Stats.GeneratedTokens,
			TokensPerSecond:      m.Stats.TokensPerSecond(),
		}
	}
	return info
}

// Modality maps a config modality ("llm", "stt"...) to its protobuf value.
func Modality(s string) pb.Modality {
	switch s {
	case "llm":
		return pb.Modality_MODALITY_LLM
	case "embeddings":
		return pb.Modality_MODALITY_EMBEDDING
	case "rerank":
		return pb.Modality_MODALITY_RERANK
	case "stt":
		return pb.Modality_MODALITY_SPEECH_TO_TEXT
	case "tts":
		return pb.Modality_MODALITY_TEXT_TO_SPEECH
	}
	return pb.Modality_MODALITY_UNSPECIFIED
}

// ModalityName is the config's name of a modality: llm, embeddings, stt, tts ("" when unset).
func ModalityName(m pb.Modality) string {
	switch m {
	case pb.Modality_MODALITY_LLM:
		return "llm"
	case pb.Modality_MODALITY_EMBEDDING:
		return "embeddings"
	case pb.Modality_MODALITY_RERANK:
		return "rerank"
	case pb.Modality_MODALITY_SPEECH_TO_TEXT:
		return "stt"
	case pb.Modality_MODALITY_TEXT_TO_SPEECH:
		return "tts"
	}
	return ""
}

func state(s models.State) pb.ModelState {
	switch s {
	case models.StateLoaded:
		return pb.ModelState_MODEL_STATE_LOADED
	case models.StateAvailable:
		return pb.ModelState_MODEL_STATE_AVAILABLE
	case models.StateLoading:
		return pb.ModelState_MODEL_STATE_LOADING
	case models.StateUnavailable:
		return pb.ModelState_MODEL_STATE_UNAVAILABLE
	}
	return pb.ModelState_MODEL_STATE_UNSPECIFIED
}

// MeshView is what the node service shows of the mesh.
type MeshView interface {
	Peers() []*pb.PeerInfo
	Status() *pb.MeshStatusResponse
}

// NodeService implements pb.NodeServiceServer.
type NodeService struct {
	pb.UnimplementedNodeServiceServer
	Models *models.Manager
	// Mesh is nil on a standalone node.
	Mesh MeshView
	// IsRemote tells a call from a mesh peer; nil on a standalone node. Peers may not read
	// the configuration (paths, limits, what the node is set to allow).
	IsRemote func(context.Context) bool
	NodeID   string
	// Name is the name the node goes by in the mesh (p2p.name, else the hostname).
	Name       string
	Version    string
	GRPCAddr   string
	HTTPAddr   string
	Started    time.Time
	EngineInfo map[string]string
	// Hardware describes the machine; called on each GetInfo, since GPU memory changes.
	Hardware func() *pb.Hardware
	// Config is the configuration in effect as JSON, secrets hidden (config.Config.Public), for
	// GetConfig; nil when the node does not show it.
	Config []byte
}

// GetConfig implements pb.NodeServiceServer.
func (s *NodeService) GetConfig(ctx context.Context, _ *pb.GetConfigRequest) (*pb.GetConfigResponse, error) {
	if s.IsRemote != nil && s.IsRemote(ctx) {
		return nil, status.Error(codes.PermissionDenied, "a node's configuration is shown to its own clients only, not to mesh peers")
	}
	if s.Config == nil {
		return nil, status.Error(codes.Unimplemented, "this node does not show its configuration")
	}
	return &pb.GetConfigResponse{ConfigJson: string(s.Config)}, nil
}

// GetInfo implements pb.NodeServiceServer.
func (s *NodeService) GetInfo(context.Context, *pb.GetInfoRequest) (*pb.GetInfoResponse, error) {
	host, _ := os.Hostname()
	hw := &pb.Hardware{CpuCores: int32(runtime.NumCPU())}
	if s.Hardware != nil {
		hw = s.Hardware()
	}
	return &pb.GetInfoResponse{
		NodeId:        s.NodeID,
		NodeName:      cmp.Or(s.Name, host),
		Version:       s.Version,
		Hostname:      host,
		GrpcAddr:      s.GRPCAddr,
		HttpAddr:      s.HTTPAddr,
		StartedAtUnix: s.Started.Unix(),
		Hardware:      hw,
		EngineInfo:    s.EngineInfo,
	}, nil
}

// Health implements pb.NodeServiceServer. A node serves as long as it runs; models that cannot
// serve are counted so monitoring can tell.
func (s *NodeService) Health(context.Context, *pb.HealthRequest) (*pb.HealthResponse, error) {
	res := &pb.HealthResponse{Status: pb.HealthResponse_STATUS_SERVING}
	for _, m := range s.Models.List() {
		if m.State == models.StateUnavailable {
			res.ModelsUnavailable++
		} else {
			res.ModelsReady++
		}
	}
	return res, nil
}

// ListPeers implements pb.NodeServiceServer.
func (s *NodeService) ListPeers(context.Context, *pb.ListPeersRequest) (*pb.ListPeersResponse, error) {
	if s.Mesh == nil {
		return &pb.ListPeersResponse{}, nil
	}
	return &pb.ListPeersResponse{Peers: s.Mesh.Peers()}, nil
}

// MeshStatus implements pb.NodeServiceServer.
func (s *NodeService) MeshStatus(context.Context, *pb.MeshStatusRequest) (*pb.MeshStatusResponse, error) {
	if s.Mesh == nil {
		return &pb.MeshStatusResponse{Enabled: false, PeerId: s.NodeID}, nil
	}
	return s.Mesh.Status(), nil
}
