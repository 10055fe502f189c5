package httpapi

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ekisa-team/syn4pse/node/api"
	"github.com/ekisa-team/syn4pse/node/httpapi/wire"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// samplingFields are the sampling knobs of OpenAI's chat and completion requests, plus the
// llama.cpp server's extras (top_k, min_p, repeat_penalty, repeat_last_n).
type samplingFields struct {
	Temperature         *float32        `json:"temperature"`
	TopP                *float32        `json:"top_p"`
	TopK                *int32          `json:"top_k"`
	MinP                *float32        `json:"min_p"`
	RepeatPenalty       *float32        `json:"repeat_penalty"`
	RepeatLastN         *int32          `json:"repeat_last_n"`
	PresencePenalty     *float32        `json:"presence_penalty"`
	FrequencyPenalty    *float32        `json:"frequency_penalty"`
	Seed                *int64          `json:"seed"`
	MaxTokens           *int32          `json:"max_tokens"`
	MaxCompletionTokens *int32          `json:"max_completion_tokens"`
	Stop                json.RawMessage `json:"stop"`
	IgnoreEOS           bool            `json:"ignore_eos"`
	KeepAlive           json.RawMessage `json:"keep_alive"`
	N                   *int32          `json:"n"`
	// Logprobs is a boolean in chat requests (with TopLogprobs), the number of alternatives
	// in legacy completions.
	Logprobs      json.RawMessage `json:"logprobs"`
	TopLogprobs   *int32          `json:"top_logprobs"`
	Stream        bool            `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
	ResponseFormat *responseFormat `json:"response_format"`
}

type responseFormat struct {
	Type       string `json:"type"`
	JSONSchema *struct {
		Name   string          `json:"name"`
		Schema json.RawMessage `json:"schema"`
		Strict bool            `json:"strict"`
	} `json:"json_schema"`
}

func (f *samplingFields) includeUsage() bool {
	return f.StreamOptions != nil && f.StreamOptions.IncludeUsage
}

// choices is the number of choices asked for (n).
func (f *samplingFields) choices() int {
	if f.N == nil || *f.N < 1 {
		return 1
	}
	return int(*f.N)
}

// toProto converts the fields, failing with InvalidArgument on values the API cannot take;
// chat says how to read logprobs.
func (f *samplingFields) toProto(chat bool) (*pb.SamplingParams, *pb.ResponseFormat, error) {
	if f.N != nil && (*f.N < 1 || *f.N > api.MaxChoices) {
		return nil, nil, status.Errorf(codes.InvalidArgument, "n = %d: want 1 to %d choices", *f.N, api.MaxChoices)
	}
	sp := &pb.SamplingParams{
		Temperature: f.Temperature, TopP: f.TopP, TopK: f.TopK, MinP: f.MinP,
		RepeatPenalty: f.RepeatPenalty, RepeatLastN: f.RepeatLastN,
		PresencePenalty: f.PresencePenalty, FrequencyPenalty: f.FrequencyPenalty,
		IgnoreEos: f.IgnoreEOS, N: int32(f.choices()),
	}
	if err := f.logprobsToProto(chat, sp); err != nil {
		return nil, nil, err
	}
	if f.Seed != nil {
		seed := uint32(*f.Seed)
		sp.Seed = &seed
	}
	switch {
	case f.MaxCompletionTokens != nil:
		sp.MaxTokens = f.MaxCompletionTokens
	case f.MaxTokens != nil:
		sp.MaxTokens = f.MaxTokens
	}
	stop, err := stringOrList(f.Stop, "stop")
	if err != nil {
		return nil, nil, err
	}
	sp.Stop = stop
	rf, err := f.ResponseFormat.toProto()
	return sp, rf, err
}

// logprobsToProto reads chat's logprobs (a boolean) and top_logprobs, or legacy completions'
// logprobs (the number of alternatives, null for none).
func (f *samplingFields) logprobsToProto(chat bool, sp *pb.SamplingParams) error {
	if len(f.Logprobs) == 0 || string(f.Logprobs) == "null" {
		if f.TopLogprobs != nil && *f.TopLogprobs > 0 {
			return status.Error(codes.InvalidArgument, "top_logprobs needs logprobs: true")
		}
		return nil
	}
	if chat {
		if err := json.Unmarshal(f.Logprobs, &sp.Logprobs); err != nil {
			return status.Error(codes.InvalidArgument, "logprobs: want true or false")
		}
		if f.TopLogprobs != nil {
			sp.TopLogprobs = *f.TopLogprobs
		}
	} else {
		if err := json.Unmarshal(f.Logprobs, &sp.TopLogprobs); err != nil {
			return status.Error(codes.InvalidArgument, "logprobs: want the number of alternatives (0 to 20)")
		}
		sp.Logprobs = true
	}
	if sp.TopLogprobs < 0 || sp.TopLogprobs > 20 {
		return status.Errorf(codes.InvalidArgument, "top_logprobs %d: want 0 to 20", sp.TopLogprobs)
	}
	return nil
}

func (rf *responseFormat) toProto() (*pb.ResponseFormat, error) {
	if rf == nil {
		return nil, nil
	}
	switch rf.Type {
	case "", "text":
		return &pb.ResponseFormat{Type: pb.ResponseFormat_TYPE_TEXT}, nil
	case "json_object":
		return &pb.ResponseFormat{Type: pb.ResponseFormat_TYPE_JSON_OBJECT}, nil
	case "json_schema":
		if rf.JSONSchema == nil || len(rf.JSONSchema.Schema) == 0 {
			return nil, status.Error(codes.InvalidArgument, `response_format.json_schema.schema is required when type is "json_schema"`)
		}
		return &pb.ResponseFormat{Type: pb.ResponseFormat_TYPE_JSON_SCHEMA, JsonSchema: string(rf.JSONSchema.Schema)}, nil
	}
	return nil, status.Errorf(codes.InvalidArgument, `response_format.type %q: want "text", "json_object" or "json_schema"`, rf.Type)
}

// stringOrList decodes a field that OpenAI allows as a string or a list of strings.
func stringOrList(raw json.RawMessage, field string) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var one string
	if err := json.Unmarshal(raw, &one); err == nil {
		return []string{one}, nil
	}
	var list []string
	if err := json.Unmarshal(raw, &list); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%s: want a string or a list of strings", field)
	}
	return list, nil
}

type chatRequest struct {
	Model    string        `json:"model"`
	Messages []chatMessage `json:"messages"`
	// Modalities ["text", "audio"] asks for the answer also as speech, in Audio's voice and
	// format (OpenAI's audio chat).
	Modalities []string     `json:"modalities"`
	Audio      *audioOutput `json:"audio"`
	// Tools and ToolChoice are OpenAI's tool calling.
	Tools      []chatTool      `json:"tools"`
	ToolChoice json.RawMessage `json:"tool_choice"`
	// ContinueFinalMessage (vLLM's name) continues the final assistant message instead of
	// starting a new turn: an assistant prefill.
	ContinueFinalMessage bool `json:"continue_final_message"`
	samplingFields
}

// audioOutput is a chat request's "audio": how to speak the answer. Model (ours) names the
// text-to-speech model; without it the node's first one speaks.
type audioOutput struct {
	Voice  string `json:"voice"`
	Format string `json:"format"`
	Model  string `json:"model"`
}

type chatMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
	Name    string          `json:"name"`
	// ToolCalls are an assistant turn's calls; ToolCallID the call a "tool" turn answers.
	ToolCalls  []toolCall `json:"tool_calls"`
	ToolCallID string     `json:"tool_call_id"`
}

type contentPart struct {
	Type     string `json:"type"`
	Text     string `json:"text"`
	ImageURL *struct {
		URL string `json:"url"`
	} `json:"image_url"`
	InputAudio *struct {
		Data   string `json:"data"`
		Format string `json:"format"`
	} `json:"input_audio"`
}

func (r *chatRequest) toProto(routing *pb.Routing) (*pb.ChatRequest, error) {
	sp, rf, err := r.samplingFields.toProto(true)
	if err != nil {
		return nil, err
	}
	req := &pb.ChatRequest{Model: r.Model, Sampling: sp, ResponseFormat: rf, Routing: routing, KeepAlive: wire.KeepAlive(r.KeepAlive),
		ContinueFinalMessage: r.ContinueFinalMessage}
	for i, m := range r.Messages {
		msg := &pb.Message{Role: m.Role, Name: m.Name, ToolCalls: toolCallsToProto(m.ToolCalls), ToolCallId: m.ToolCallID}
		if err := parseContent(m.Content, msg); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "messages[%d].content: %v", i, err)
		}
		req.Messages = append(req.Messages, msg)
	}
	if err := toolsToProto(r.Tools, r.ToolChoice, req); err != nil {
		return nil, err
	}
	return req, nil
}

// parseContent accepts a string, null (assistant turns with tool calls) or a list of parts.
func parseContent(raw json.RawMessage, msg *pb.Message) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	if err := json.Unmarshal(raw, &msg.Content); err == nil {
		return nil
	}
	var parts []contentPart
	if err := json.Unmarshal(raw, &parts); err != nil {
		return fmt.Errorf("want a string or a list of content parts")
	}
	for j, p := range parts {
		part, err := p.toProto()
		if err != nil {
			return fmt.Errorf("part %d: %w", j, err)
		}
		msg.Parts = append(msg.Parts, part)
	}
	return nil
}

// toProto converts one content part: text, an image as a data: URL (the node fetches no
// URLs), or input_audio (base64 WAV or MP3, OpenAI's formats; FLAC too).
func (p contentPart) toProto() (*pb.ContentPart, error) {
	switch p.Type {
	case "text":
		return &pb.ContentPart{Part: &pb.ContentPart_Text{Text: p.Text}}, nil
	case "image_url":
		if p.ImageURL == nil {
			return nil, fmt.Errorf(`image_url is missing: {"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}`)
		}
		mime, data, err := parseDataURL(p.ImageURL.URL)
		if err != nil {
			return nil, err
		}
		return &pb.ContentPart{Part: &pb.ContentPart_Image{Image: &pb.Media{Data: data, MimeType: mime}}}, nil
	case "input_audio":
		if p.InputAudio == nil || p.InputAudio.Data == "" {
			return nil, fmt.Errorf(`input_audio is missing: {"type": "input_audio", "input_audio": {"data": "<base64>", "format": "wav"}}`)
		}
		data, err := base64.StdEncoding.DecodeString(p.InputAudio.Data)
		if err != nil {
			return nil, fmt.Errorf("input_audio.data is not base64: %v", err)
		}
		format := strings.ToLower(p.InputAudio.Format)
		if format != "wav" && format != "mp3" && format != "flac" {
			return nil, fmt.Errorf("input_audio.format %q: want wav, mp3 or flac", p.InputAudio.Format)
		}
		return &pb.ContentPart{Part: &pb.ContentPart_Audio{Audio: &pb.Media{Data: data, MimeType: "audio/" + format}}}, nil
	}
	return nil, fmt.Errorf("type %q: want text, image_url or input_audio", p.Type)
}

// parseDataURL reads data:<mime>;base64,<data>.
func parseDataURL(url string) (string, []byte, error) {
	rest, ok := strings.CutPrefix(url, "data:")
	meta, payload, found := strings.Cut(rest, ",")
	mime, isBase64 := strings.CutSuffix(meta, ";base64")
	if !ok || !found || !isBase64 {
		return "", nil, fmt.Errorf("image_url.url: want a data:image/...;base64,... URL (or an http(s) URL where server.fetch_image_urls is on)")
	}
	data, err := base64.StdEncoding.DecodeString(payload)
	if err != nil {
		return "", nil, fmt.Errorf("image_url.url: the data is not base64: %v", err)
	}
	return mime, data, nil
}

type completionRequest struct {
	Model  string          `json:"model"`
	Prompt json.RawMessage `json:"prompt"`
	samplingFields
}

func (r *completionRequest) toProto(routing *pb.Routing) (*pb.CompleteRequest, error) {
	sp, rf, err := r.samplingFields.toProto(false)
	if err != nil {
		return nil, err
	}
	prompts, err := stringOrList(r.Prompt, "prompt")
	if err != nil {
		return nil, err
	}
	if len(prompts) != 1 {
		return nil, status.Errorf(codes.InvalidArgument, "prompt: want one string (got %d prompts)", len(prompts))
	}
	return &pb.CompleteRequest{Model: r.Model, Prompt: prompts[0], Sampling: sp, ResponseFormat: rf, Routing: routing, KeepAlive: wire.KeepAlive(r.KeepAlive)}, nil
}

type usage struct {
	PromptTokens        int32 `json:"prompt_tokens"`
	CompletionTokens    int32 `json:"completion_tokens"`
	TotalTokens         int32 `json:"total_tokens"`
	PromptTokensDetails struct {
		CachedTokens int32 `json:"cached_tokens"`
	} `json:"prompt_tokens_details"`
}

func usageOf(f *pb.Final) *usage {
	u := &usage{
		PromptTokens:     f.GetUsage().GetPromptTokens(),
		CompletionTokens: f.GetUsage().GetCompletionTokens(),
		TotalTokens:      f.GetUsage().GetTotalTokens(),
	}
	u.PromptTokensDetails.CachedTokens = f.GetUsage().GetCachedPromptTokens()
	return u
}

// add counts one choice's usage into u: the prompt once, the completion tokens of every choice.
func (u *usage) add(f *pb.Final) {
	if u.PromptTokens == 0 {
		u.PromptTokens = f.GetUsage().GetPromptTokens()
		u.PromptTokensDetails.CachedTokens = f.GetUsage().GetCachedPromptTokens()
	}
	u.CompletionTokens += f.GetUsage().GetCompletionTokens()
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
}

func finishReason(f *pb.Final) string {
	switch f.GetFinishReason() {
	case pb.FinishReason_FINISH_REASON_LENGTH:
		return "length"
	case pb.FinishReason_FINISH_REASON_TOOL_CALLS:
		return "tool_calls"
	}
	return "stop"
}
