package ollamaapi

import (
	"net/http"
	"time"

	ollama "github.com/ollama/ollama/api"

	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// embed serves /api/embed: a string or a list of strings, vectors normalised to unit length
// (as Ollama's are); truncate defaults to true.
func (h *Handler) embed(w http.ResponseWriter, r *http.Request) {
	var req ollama.EmbedRequest
	if !h.decodeJSON(w, r, &req) {
		return
	}
	var texts []string
	switch in := req.Input.(type) {
	case string:
		texts = []string{in}
	case []any:
		for _, item := range in {
			s, ok := item.(string)
			if !ok {
				writeStatusError(w, invalid("input: want a string or a list of strings"))
				return
			}
			texts = append(texts, s)
		}
	default:
		writeStatusError(w, invalid("input: want a string or a list of strings"))
		return
	}
	inputs := make([]*pb.EmbedInput, len(texts))
	for i, t := range texts {
		inputs[i] = &pb.EmbedInput{Input: &pb.EmbedInput_Text{Text: t}}
	}
	start := time.Now()
	res, err := h.inference.Embed(r.Context(), &pb.EmbedRequest{Model: req.Model, Inputs: inputs, Normalize: true,
		Dimensions: int32(req.Dimensions), Truncate: req.Truncate == nil || *req.Truncate, Routing: routing(r), KeepAlive: keepAlive(req.KeepAlive)})
	if err != nil {
		writeStatusError(w, err)
		return
	}
	out := ollama.EmbedResponse{Model: req.Model, Embeddings: make([][]float32, len(res.GetEmbeddings())),
		TotalDuration: time.Since(start), PromptEvalCount: int(res.GetPromptTokens())}
	for i, e := range res.GetEmbeddings() {
		out.Embeddings[i] = e.GetValues()
	}
	writeJSON(w, http.StatusOK, out)
}

// embeddings serves the legacy /api/embeddings: one prompt, the vector not normalised.
func (h *Handler) embeddings(w http.ResponseWriter, r *http.Request) {
	var req ollama.EmbeddingRequest
	if !h.decodeJSON(w, r, &req) {
		return
	}
	res, err := h.inference.Embed(r.Context(), &pb.EmbedRequest{Model: req.Model, Routing: routing(r), KeepAlive: keepAlive(req.KeepAlive),
		Inputs: []*pb.EmbedInput{{Input: &pb.EmbedInput_Text{Text: req.Prompt}}}, Truncate: true})
	if err != nil {
		writeStatusError(w, err)
		return
	}
	vec := []float64{}
	if es := res.GetEmbeddings(); len(es) > 0 {
		for _, v := range es[0].GetValues() {
			vec = append(vec, float64(v))
		}
	}
	writeJSON(w, http.StatusOK, ollama.EmbeddingResponse{Embedding: vec})
}
