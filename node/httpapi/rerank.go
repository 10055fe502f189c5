package httpapi

import (
	"encoding/json"
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ekisa-team/syn4pse/node/httpapi/wire"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// rerankRequest is the body of POST /v1/rerank, as llama.cpp's server, Jina and Cohere take it.
type rerankRequest struct {
	Model           string            `json:"model"`
	Query           string            `json:"query"`
	Documents       []json.RawMessage `json:"documents"`
	TopN            int32             `json:"top_n"`
	ReturnDocuments bool              `json:"return_documents"`
	Truncate        bool              `json:"truncate"`
	KeepAlive       json.RawMessage   `json:"keep_alive"`
}

// rerank serves POST /v1/rerank: results sorted by relevance_score, highest first.
func (h *Handler) rerank(w http.ResponseWriter, r *http.Request) {
	var body rerankRequest
	if !h.decodeJSON(w, r, &body) {
		return
	}
	docs, err := documentTexts(body.Documents)
	if err != nil {
		wire.WriteStatusError(w, err)
		return
	}
	res, err := h.inference.Rerank(r.Context(), &pb.RerankRequest{Model: body.Model, Query: body.Query, Documents: docs,
		TopN: body.TopN, Truncate: body.Truncate, Routing: wire.Routing(r), KeepAlive: wire.KeepAlive(body.KeepAlive)})
	if err != nil {
		wire.WriteStatusError(w, err)
		return
	}
	if id := res.GetServedBy(); id != "" {
		w.Header().Set("Syn4pse-Served-By", id)
	}
	results := make([]map[string]any, len(res.GetResults()))
	for i, x := range res.GetResults() {
		results[i] = map[string]any{"index": x.GetIndex(), "relevance_score": x.GetRelevanceScore()}
		if body.ReturnDocuments {
			results[i]["document"] = map[string]string{"text": docs[x.GetIndex()]}
		}
	}
	tokens := res.GetPromptTokens()
	wire.WriteJSON(w, http.StatusOK, map[string]any{
		"object": "list", "model": res.GetModel(), "results": results,
		"usage": map[string]any{"prompt_tokens": tokens, "total_tokens": tokens},
	})
}

// documentTexts reads documents given as strings or as Cohere's {"text": ...} objects.
func documentTexts(raw []json.RawMessage) ([]string, error) {
	docs := make([]string, len(raw))
	for i, d := range raw {
		var obj struct {
			Text *string `json:"text"`
		}
		switch {
		case json.Unmarshal(d, &docs[i]) == nil:
		case json.Unmarshal(d, &obj) == nil && obj.Text != nil:
			docs[i] = *obj.Text
		default:
			return nil, status.Errorf(codes.InvalidArgument, "documents[%d]: want a string or {\"text\": ...}", i)
		}
	}
	return docs, nil
}
