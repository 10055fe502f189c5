package main

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ekisa-team/syn4pse/internal/audio"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// A voice turn across three nodes: alpha (a laptop: the voice) takes the question, beta serves
// only the speech-to-text model and gamma only the LLM. Each stage says who served it.
func TestMeshConverseAcrossThreeNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three node processes")
	}
	a := newMeshNode(t, "alpha", nil)
	a.declare("[backends.tts.flite]\nvoice = \"kal16\"")
	b := newMeshNode(t, "beta", nil)
	b.declare("[backends.stt.pocketsphinx]")
	c := newMeshNode(t, "gamma", map[string]string{"x": writeModel(t, "tiny")})
	formMesh(t, a, b, c)
	a.waitFor("beta's and gamma's models in alpha's table", func() bool {
		return len(a.peers("pocketsphinx")) == 1 && len(a.peers("x")) == 1
	})

	// The CLI on alpha: speak locally, transcribe on beta.
	question := filepath.Join(t.TempDir(), "question.wav")
	if out, stderr, code := a.run("speak", "I would like a cup of coffee.", "-o", question); code != 0 {
		t.Fatalf("speak: %d %s %s", code, out, stderr)
	}
	out, stderr, code := a.run("transcribe", question)
	if code != 0 || !strings.Contains(out, "coffee") {
		t.Fatalf("transcribe through beta: %d %q %s", code, out, stderr)
	}
	wav, err := os.ReadFile(question)
	if err != nil {
		t.Fatal(err)
	}

	stream, err := pb.NewInferenceServiceClient(a.conn).Converse(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	maxTokens := int32(16)
	cfg := &pb.ConverseConfig{SttModel: "pocketsphinx", LlmModel: "x", TtsModel: "flite", AudioFormat: "wav",
		Sampling: &pb.SamplingParams{MaxTokens: &maxTokens, IgnoreEos: true}}
	if err := stream.Send(&pb.ConverseRequest{Config: cfg, Audio: wav}); err != nil {
		t.Fatal(err)
	}
	stream.CloseSend()
	var heard, answer string
	var spoken []byte
	var final *pb.ConverseFinal
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("converse: %v", err)
		}
		heard += ev.GetTranscript().GetText()
		answer += ev.GetDelta().GetText()
		spoken = append(spoken, ev.GetAudio().GetData()...)
		if f := ev.GetFinal(); f != nil {
			final = f
		}
	}
	if !strings.Contains(heard, "coffee") || answer == "" || final == nil {
		t.Fatalf("heard %q, answer %q, final %v", heard, answer, final)
	}
	want := map[string]string{"stt": b.peerID(), "llm": c.peerID(), "tts": a.peerID()}
	got := map[string]string{"stt": final.GetSttServedBy(), "llm": final.GetLlmServedBy(), "tts": final.GetTtsServedBy()}
	for stage := range want {
		if got[stage] != want[stage] {
			t.Errorf("%s served by %s, want %s", stage, got[stage], want[stage])
		}
	}
	if _, err := audio.Decode(spoken); err != nil {
		t.Errorf("the answer's audio: %v", err)
	}
	t.Logf("first answer text after %.0f ms, first audio after %.0f ms", final.GetFirstTextMs(), final.GetFirstAudioMs())
}
