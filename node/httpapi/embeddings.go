package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"net/http"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ekisa-team/syn4pse/node/httpapi/wire"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// embeddingsRequest is the body of POST /v1/embeddings (OpenAI's shape, plus Ollama's
// keep_alive and truncate).
type embeddingsRequest struct {
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`
	EncodingFormat string          `json:"encoding_format"`
	Dimensions     int32           `json:"dimensions"`
	Truncate       bool            `json:"truncate"`
	KeepAlive      json.RawMessage `json:"keep_alive"`
}

// embeddings serves POST /v1/embeddings. Vectors are normalised to unit length, as OpenAI's are.
func (h *Handler) embeddings(w http.ResponseWriter, r *http.Request) {
	var body embeddingsRequest
	if !h.decodeJSON(w, r, &body) {
		return
	}
	inputs, err := embedInputs(body.Input)
	if err != nil {
		wire.WriteStatusError(w, err)
		return
	}
	switch body.EncodingFormat {
	case "", "float", "base64":
	default:
		wire.WriteStatusError(w, status.Errorf(codes.InvalidArgument, "encoding_format %q: want float or base64", body.EncodingFormat))
		return
	}
	res, err := h.inference.Embed(r.Context(), &pb.EmbedRequest{Model: body.Model, Inputs: inputs, Normalize: true,
		Dimensions: body.Dimensions, Truncate: body.Truncate, Routing: wire.Routing(r), KeepAlive: wire.KeepAlive(body.KeepAlive)})
	if err != nil {
		wire.WriteStatusError(w, err)
		return
	}
	if id := res.GetServedBy(); id != "" {
		w.Header().Set("Syn4pse-Served-By", id)
	}
	data := make([]map[string]any, len(res.GetEmbeddings()))
	for i, e := range res.GetEmbeddings() {
		var vec any = e.GetValues()
		if body.EncodingFormat == "base64" {
			vec = base64Floats(e.GetValues())
		}
		data[i] = map[string]any{"object": "embedding", "index": i, "embedding": vec}
	}
	tokens := res.GetPromptTokens()
	wire.WriteJSON(w, http.StatusOK, map[string]any{
		"object": "list", "data": data, "model": res.GetModel(),
		"usage": map[string]any{"prompt_tokens": tokens, "total_tokens": tokens},
	})
}

// embedInputs reads OpenAI's input: a string, an array of strings, an array of token ids or an
// array of arrays of token ids.
func embedInputs(raw json.RawMessage) ([]*pb.EmbedInput, error) {
	bad := status.Error(codes.InvalidArgument, "input: want a string, an array of strings, an array of token ids or an array of arrays of token ids")
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, status.Error(codes.InvalidArgument, "input is missing: send the text to embed")
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []*pb.EmbedInput{textInput(one)}, nil
	}
	var items []json.RawMessage
	if json.Unmarshal(raw, &items) != nil {
		return nil, bad
	}
	if len(items) == 0 {
		return nil, status.Error(codes.InvalidArgument, "input is an empty array: send at least one text")
	}
	var ids []int32
	if json.Unmarshal(raw, &ids) == nil {
		return []*pb.EmbedInput{tokenInput(ids)}, nil
	}
	out := make([]*pb.EmbedInput, len(items))
	for i, item := range items {
		var text string
		var ids []int32
		switch {
		case json.Unmarshal(item, &text) == nil:
			out[i] = textInput(text)
		case json.Unmarshal(item, &ids) == nil:
			out[i] = tokenInput(ids)
		default:
			return nil, bad
		}
	}
	return out, nil
}

func textInput(s string) *pb.EmbedInput {
	return &pb.EmbedInput{Input: &pb.EmbedInput_Text{Text: s}}
}

func tokenInput(ids []int32) *pb.EmbedInput {
	return &pb.EmbedInput{Input: &pb.EmbedInput_Tokens{Tokens: &pb.TokenIDs{Ids: ids}}}
}

// base64Floats is OpenAI's base64 encoding of a vector: little-endian float32s.
func base64Floats(v []float32) string {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return base64.StdEncoding.EncodeToString(b)
}
