package api

import (
	"math"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/ekisa-team/syn4pse/engine"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// These tests need no cgo: the services' conversions are plain Go.

func TestApplySampling(t *testing.T) {
	var unset engine.GenerateRequest
	if err := applySampling(&unset, nil); err != nil {
		t.Fatal(err)
	}
	want := engine.DefaultSampling()
	want.Seed = math.MaxUint32
	if unset.Sampling != want {
		t.Fatalf("no sampling params: %+v, want llama.cpp's defaults with a random seed %+v", unset.Sampling, want)
	}

	var gen engine.GenerateRequest
	sp := &pb.SamplingParams{Temperature: proto.Float32(0), TopK: proto.Int32(5), TopP: proto.Float32(0.5),
		MinP: proto.Float32(0.1), RepeatPenalty: proto.Float32(1.1), RepeatLastN: proto.Int32(-1),
		PresencePenalty: proto.Float32(0.5), FrequencyPenalty: proto.Float32(-0.5), Seed: proto.Uint32(7),
		MaxTokens: proto.Int32(12), Stop: []string{"\n"}, IgnoreEos: true}
	if err := applySampling(&gen, sp); err != nil {
		t.Fatal(err)
	}
	got := gen.Sampling
	if got.Temperature != 0 || got.TopK != 5 || got.TopP != 0.5 || got.MinP != 0.1 || got.RepeatPenalty != 1.1 ||
		got.RepeatLastN != -1 || got.PresencePenalty != 0.5 || got.FrequencyPenalty != -0.5 || got.Seed != 7 {
		t.Errorf("sampling %+v does not carry the request's values", got)
	}
	if gen.MaxTokens != 12 || len(gen.Stop) != 1 || !gen.IgnoreEOS {
		t.Errorf("request %+v lost max_tokens, stop or ignore_eos", gen)
	}

	bad := []struct {
		sp   *pb.SamplingParams
		want string
	}{
		{&pb.SamplingParams{Temperature: proto.Float32(-1)}, "sampling.temperature"},
		{&pb.SamplingParams{Temperature: proto.Float32(float32(math.NaN()))}, "sampling.temperature"},
		{&pb.SamplingParams{TopP: proto.Float32(1.5)}, "sampling.top_p"},
		{&pb.SamplingParams{TopK: proto.Int32(-1)}, "sampling.top_k"},
		{&pb.SamplingParams{MinP: proto.Float32(2)}, "sampling.min_p"},
		{&pb.SamplingParams{RepeatPenalty: proto.Float32(-1)}, "sampling.repeat_penalty"},
		{&pb.SamplingParams{RepeatLastN: proto.Int32(-2)}, "sampling.repeat_last_n"},
		{&pb.SamplingParams{PresencePenalty: proto.Float32(3)}, "sampling.presence_penalty"},
		{&pb.SamplingParams{FrequencyPenalty: proto.Float32(-3)}, "sampling.frequency_penalty"},
		{&pb.SamplingParams{MaxTokens: proto.Int32(-1)}, "sampling.max_tokens"},
		{&pb.SamplingParams{Stop: make([]string, 17)}, "sampling.stop has 17 strings"},
	}
	for _, tt := range bad {
		err := applySampling(&engine.GenerateRequest{}, tt.sp)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: err %v, want InvalidArgument naming %s", tt.sp, err, tt.want)
		}
	}
}

func TestApplyFormat(t *testing.T) {
	tests := []struct {
		rf                  *pb.ResponseFormat
		wantSchema, wantErr string
		wantGrammar         string
	}{
		{rf: nil},
		{rf: &pb.ResponseFormat{Type: pb.ResponseFormat_TYPE_TEXT}},
		{rf: &pb.ResponseFormat{Type: pb.ResponseFormat_TYPE_JSON_OBJECT}, wantSchema: `{"type": "object"}`},
		{rf: &pb.ResponseFormat{Type: pb.ResponseFormat_TYPE_JSON_SCHEMA, JsonSchema: `{"type":"string"}`}, wantSchema: `{"type":"string"}`},
		{rf: &pb.ResponseFormat{Type: pb.ResponseFormat_TYPE_JSON_SCHEMA, JsonSchema: `{`}, wantErr: "not valid JSON"},
		{rf: &pb.ResponseFormat{Type: pb.ResponseFormat_TYPE_GRAMMAR, Grammar: `root ::= "a"`}, wantGrammar: `root ::= "a"`},
		{rf: &pb.ResponseFormat{Type: pb.ResponseFormat_TYPE_GRAMMAR}, wantErr: "grammar is empty"},
		{rf: &pb.ResponseFormat{Type: 99}, wantErr: "is unknown"},
	}
	for _, tt := range tests {
		var gen engine.GenerateRequest
		err := applyFormat(&gen, tt.rf)
		switch {
		case tt.wantErr != "":
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%v: err %v, want InvalidArgument with %q", tt.rf, err, tt.wantErr)
			}
		case err != nil || gen.JSONSchema != tt.wantSchema || gen.Grammar != tt.wantGrammar:
			t.Errorf("%v: schema %q grammar %q err %v", tt.rf, gen.JSONSchema, gen.Grammar, err)
		}
	}
}
