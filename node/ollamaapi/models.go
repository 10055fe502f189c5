package ollamaapi

import (
	"fmt"
	"net/http"
	"path"
	"strings"
	"time"

	ollama "github.com/ollama/ollama/api"
	"github.com/ollama/ollama/types/model"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// tags lists the models that can serve (loaded, loading or on disk), as /api/tags does.
func (h *Handler) tags(w http.ResponseWriter, r *http.Request) {
	list, err := h.usable(r)
	if err != nil {
		writeStatusError(w, err)
		return
	}
	res := ollama.ListResponse{Models: []ollama.ListModelResponse{}}
	for _, m := range list {
		res.Models = append(res.Models, ollama.ListModelResponse{Name: m.GetName(), Model: m.GetName(), ModifiedAt: h.node.Started,
			Size: m.GetSizeBytes(), Digest: strings.TrimPrefix(m.GetDigest(), "sha256:"), Details: details(m)})
	}
	writeJSON(w, http.StatusOK, res)
}

// usable are the models a client could use; unavailable ones are left out.
func (h *Handler) usable(r *http.Request) ([]*pb.ModelInfo, error) {
	res, err := h.models.ListModels(r.Context(), &pb.ListModelsRequest{})
	if err != nil {
		return nil, err
	}
	var out []*pb.ModelInfo
	for _, m := range res.GetModels() {
		if m.GetState() != pb.ModelState_MODEL_STATE_UNAVAILABLE {
			out = append(out, m)
		}
	}
	return out, nil
}

func (h *Handler) find(r *http.Request, name string) (*pb.ModelInfo, error) {
	list, err := h.usable(r)
	if err != nil {
		return nil, err
	}
	for _, m := range list {
		if m.GetName() == name {
			return m, nil
		}
	}
	return nil, status.Errorf(codes.NotFound, "model %q not found: this node serves it once it is declared in syn4pse.toml or pulled", name)
}

func details(m *pb.ModelInfo) ollama.ModelDetails {
	d := m.GetDetails()
	arch := d.GetArchitecture()
	out := ollama.ModelDetails{Format: "gguf", Family: arch, QuantizationLevel: d.GetQuantization()}
	if arch != "" {
		out.Families = []string{arch}
	}
	if n := d.GetParameterCount(); n > 0 {
		out.ParameterSize = parameterSize(n)
	}
	return out
}

// parameterSize writes a parameter count as Ollama does: 7.6B, 135M.
func parameterSize(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.1fB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.0fM", float64(n)/1e6)
	}
	return fmt.Sprintf("%.0fK", float64(n)/1e3)
}

// show describes one model: details, the model_info keys Ollama's clients read (architecture,
// parameter count, context length) and capabilities.
func (h *Handler) show(w http.ResponseWriter, r *http.Request) {
	var req ollama.ShowRequest
	if !h.decodeJSON(w, r, &req) {
		return
	}
	name := modelName(req.Model, req.Name) //lint:ignore SA1019 older clients send "name"
	m, err := h.find(r, name)
	if err != nil {
		writeStatusError(w, err)
		return
	}
	d := m.GetDetails()
	arch := d.GetArchitecture()
	info := map[string]any{"general.architecture": arch, "general.parameter_count": d.GetParameterCount()}
	if n := d.GetContextLength(); n > 0 && arch != "" {
		info[arch+".context_length"] = n
	}
	writeJSON(w, http.StatusOK, ollama.ShowResponse{Details: details(m), ModelInfo: info, Capabilities: capabilities(m), ModifiedAt: h.node.Started})
}

func capabilities(m *pb.ModelInfo) []model.Capability {
	switch m.GetModality() {
	case pb.Modality_MODALITY_EMBEDDING:
		return []model.Capability{model.CapabilityEmbedding}
	case pb.Modality_MODALITY_LLM:
		caps := []model.Capability{model.CapabilityCompletion}
		for _, in := range m.GetDetails().GetInputs() {
			if in == "image" {
				caps = append(caps, model.CapabilityVision)
			}
		}
		return caps
	}
	return nil
}

// ps lists the loaded models.
func (h *Handler) ps(w http.ResponseWriter, r *http.Request) {
	res, err := h.models.ListRunning(r.Context(), &pb.ListRunningRequest{})
	if err != nil {
		writeStatusError(w, err)
		return
	}
	list, err := h.usable(r)
	if err != nil {
		writeStatusError(w, err)
		return
	}
	infos := map[string]*pb.ModelInfo{}
	for _, m := range list {
		infos[m.GetName()] = m
	}
	out := ollama.ProcessResponse{Models: []ollama.ProcessModelResponse{}}
	for _, rm := range res.GetModels() {
		info := infos[rm.GetName()]
		p := ollama.ProcessModelResponse{Name: rm.GetName(), Model: rm.GetName(), Size: rm.GetMemoryBytes(),
			Digest: strings.TrimPrefix(info.GetDigest(), "sha256:"), Details: details(info), ContextLength: int(info.GetDetails().GetContextLength())}
		if ms := rm.GetExpiresAtUnixMs(); ms > 0 {
			p.ExpiresAt = time.UnixMilli(ms)
		}
		out.Models = append(out.Models, p)
	}
	writeJSON(w, http.StatusOK, out)
}

// pull pulls a model by name (from a peer, or the source its declaration names) or by source: a
// model named by an http(s) URL or hf://OWNER/REPO/FILE is stored under the file's name without
// ".gguf". Progress streams as Ollama's NDJSON, ending with {"status": "success"}.
func (h *Handler) pull(w http.ResponseWriter, r *http.Request) {
	var req ollama.PullRequest
	if !h.decodeJSON(w, r, &req) {
		return
	}
	name := modelName(req.Model, req.Name) //lint:ignore SA1019 older clients send "name"
	preq := &pb.PullModelRequest{Name: name}
	if strings.Contains(name, "://") {
		preq.Source, preq.Name = name, strings.TrimSuffix(path.Base(name), ".gguf")
	}
	stream := req.Stream == nil || *req.Stream
	s := &ndjson{w: w}
	err := h.models.StreamPull(r.Context(), preq, func(p *pb.PullProgress) {
		if stream {
			s.send(ollama.ProgressResponse{Status: p.GetStatus(), Digest: p.GetDigest(), Total: p.GetTotalBytes(), Completed: p.GetCompletedBytes()})
		}
	})
	switch {
	case err != nil:
		s.finish(err)
	case stream:
		s.send(ollama.ProgressResponse{Status: "success"})
	default:
		writeJSON(w, http.StatusOK, ollama.ProgressResponse{Status: "success"})
	}
}

// delete removes a pulled model from the node's store.
func (h *Handler) delete(w http.ResponseWriter, r *http.Request) {
	var req ollama.DeleteRequest
	if !h.decodeJSON(w, r, &req) {
		return
	}
	name := modelName(req.Model, req.Name) //lint:ignore SA1019 older clients send "name"
	if _, err := h.models.DeleteModel(r.Context(), &pb.DeleteModelRequest{Name: name}); err != nil {
		writeStatusError(w, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// modelName is a request's model: "model", or the "name" older clients send.
func modelName(model, name string) string {
	if model != "" {
		return model
	}
	return name
}
