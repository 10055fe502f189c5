package node_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ekisa-team/syn4pse/engine/speechtest"
	"github.com/ekisa-team/syn4pse/internal/audio"
	"github.com/ekisa-team/syn4pse/internal/tinygguf"
	"github.com/ekisa-team/syn4pse/node"
	"github.com/ekisa-team/syn4pse/node/config"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// Speech tests run the real engines with real weights: flite speaks, PocketSphinx (Debian's
// English model) listens.

func sttDecl(name string) config.Model {
	return config.Model{Name: name, Modality: "stt", Engine: "pocketsphinx", Enabled: true, Parallel: 2,
		Declared: "test [models." + name + "]"}
}

func ttsDecl(name, engine, voice string) config.Model {
	return config.Model{Name: name, Modality: "tts", Engine: engine, Voice: voice, Enabled: true, Parallel: 1,
		Declared: "test [models." + name + "]"}
}

// speechSentences are what the round trips say and hear.
var speechSentences = []string{
	"The weather is nice today.",
	"Please open the door.",
	"I would like a cup of coffee.",
	"We will meet at the station tomorrow morning.",
	"She reads a book every night.",
}

// maxRoundTripWER bounds the word error rate of flite's kal16 voice heard by PocketSphinx over
// speechSentences, through the HTTP API. kal16 speaks the same samples every time (slt, awb and
// rms draw noise from C's rand()), so the figure is repeatable. Measured: 0.133 (4 of 30 words:
// "today" heard "to bed", "a book" heard "about"); a broken path (a wrong sample rate, a garbled
// encoder) gives rates near 1.
const maxRoundTripWER = 0.25

func TestSpeechRoundTripWithOpenAIClient(t *testing.T) {
	n := startNode(t, sttDecl("ears"), ttsDecl("voice", "flite", "kal16"))
	// Not openaiClient: its ignore_eos JSON option would replace the multipart upload.
	client := openai.NewClient(option.WithBaseURL("http://"+n.HTTPAddr()+"/v1/"), option.WithAPIKey("unused"), option.WithMaxRetries(0))

	var ref, hyp []string
	for _, sentence := range speechSentences {
		res, err := client.Audio.Speech.New(t.Context(), openai.AudioSpeechNewParams{
			Model: "voice", Input: sentence, ResponseFormat: openai.AudioSpeechNewParamsResponseFormatWAV,
			Voice: openai.AudioSpeechNewParamsVoiceUnion{OfString: openai.String("alloy")},
		})
		if err != nil {
			t.Fatalf("speech %q: %v", sentence, err)
		}
		wav, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if ct := res.Header.Get("Content-Type"); ct != "audio/wav" {
			t.Errorf("speech Content-Type %q, want audio/wav", ct)
		}
		tr, err := client.Audio.Transcriptions.New(t.Context(), openai.AudioTranscriptionNewParams{
			Model: "ears", File: openai.File(bytes.NewReader(wav), "speech.wav", "audio/wav"),
		})
		if err != nil {
			var apiErr *openai.Error
			if errors.As(err, &apiErr) {
				t.Logf("request:\n%s", apiErr.DumpRequest(true))
			}
			t.Fatalf("transcribe %q: %v", sentence, err)
		}
		ref, hyp = append(ref, sentence), append(hyp, tr.Text)
		t.Logf("said %q, heard %q", sentence, tr.Text)
	}
	rate, errs, words := speechtest.WER(strings.Join(ref, " "), strings.Join(hyp, " "))
	t.Logf("flite kal16 -> PocketSphinx through /v1/audio: WER %.3f (%d errors / %d words)", rate, errs, words)
	if rate > maxRoundTripWER {
		t.Errorf("WER %.3f > %.2f", rate, maxRoundTripWER)
	}

	// /v1/models tells the kinds apart.
	res, err := client.Models.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]string{}
	for _, m := range res.Data {
		kinds[m.ID] = m.JSON.ExtraFields["kind"].Raw()
	}
	if kinds["ears"] != `"stt"` || kinds["voice"] != `"tts"` {
		t.Errorf("/v1/models kinds %v, want ears stt and voice tts", kinds)
	}
}

// speak asks the node's HTTP API for speech and returns the bytes.
func speak(t *testing.T, addr string, body map[string]any) (*http.Response, []byte) {
	t.Helper()
	b, _ := json.Marshal(body)
	res, err := http.Post("http://"+addr+"/v1/audio/speech", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, data
}

// upload posts a transcription form and returns the response.
func upload(t *testing.T, addr string, file []byte, fields map[string]string) (*http.Response, []byte) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for k, v := range fields {
		mw.WriteField(k, v)
	}
	if file != nil {
		fw, _ := mw.CreateFormFile("file", "audio.bin")
		fw.Write(file)
	}
	mw.Close()
	res, err := http.Post("http://"+addr+"/v1/audio/transcriptions", mw.FormDataContentType(), &body)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, data
}

func TestSpeechFormatsDecodeBack(t *testing.T) {
	n := startNode(t, ttsDecl("voice", "flite", "kal16"))
	text := "Hello there. This is a test of the speech route."
	_, wav := speak(t, n.HTTPAddr(), map[string]any{"model": "voice", "input": text, "response_format": "wav"})
	ref, err := audio.Decode(wav)
	if err != nil {
		t.Fatalf("wav: %v", err)
	}
	if ref.Rate != 16000 || ref.Duration() < time.Second {
		t.Fatalf("wav: %d Hz, %v; want 16 kHz, over a second", ref.Rate, ref.Duration())
	}
	for _, format := range []string{"pcm", "flac", "mp3", "opus"} {
		t.Run(format, func(t *testing.T) {
			if !slices.Contains(audio.Formats(), format) {
				t.Skipf("%s: its encoder program is not installed (scripts/install-deps.sh installs it)", format)
			}
			res, data := speak(t, n.HTTPAddr(), map[string]any{"model": "voice", "input": text, "response_format": format})
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status %d: %s", res.StatusCode, data)
			}
			if ct := res.Header.Get("Content-Type"); ct != audio.ContentType(format) {
				t.Errorf("Content-Type %q, want %q", ct, audio.ContentType(format))
			}
			if format == "opus" {
				if !bytes.HasPrefix(data, []byte("OggS")) {
					t.Errorf("opus output does not start an Ogg stream")
				}
				return
			}
			var got audio.Audio
			if format == "pcm" {
				got, err = audio.DecodeRaw(data, 16000, 1)
			} else {
				got, err = audio.Decode(data)
			}
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			// mp3 pads with encoder delay; the others are the same samples.
			if d := got.Duration() - ref.Duration(); d < -10*time.Millisecond || d > 150*time.Millisecond {
				t.Errorf("%s lasts %v, wav %v", format, got.Duration(), ref.Duration())
			}
		})
	}
}

func TestTranscriptionResponseFormats(t *testing.T) {
	n := startNode(t, sttDecl("ears"), ttsDecl("voice", "flite", "kal16"))
	_, wav := speak(t, n.HTTPAddr(), map[string]any{"model": "voice", "input": "Please open the door. I would like a cup of coffee.", "response_format": "wav"})

	res, body := upload(t, n.HTTPAddr(), wav, map[string]string{"model": "ears", "response_format": "verbose_json", "timestamp_granularities[]": "word"})
	if res.StatusCode != http.StatusOK {
		t.Fatalf("verbose_json: %d %s", res.StatusCode, body)
	}
	var verbose struct {
		Text     string  `json:"text"`
		Duration float64 `json:"duration"`
		Language string  `json:"language"`
		Words    []struct {
			Word       string
			Start, End float64
		} `json:"words"`
	}
	if err := json.Unmarshal(body, &verbose); err != nil {
		t.Fatal(err)
	}
	if verbose.Text == "" || verbose.Duration < 2 || len(verbose.Words) < 4 || verbose.Language != "english" {
		t.Fatalf("verbose_json: %s", body)
	}
	for i, w := range verbose.Words {
		if w.End <= w.Start || (i > 0 && w.Start < verbose.Words[i-1].Start) || w.End > verbose.Duration+0.01 {
			t.Errorf("word %d %+v: times out of order", i, w)
		}
	}

	_, srt := upload(t, n.HTTPAddr(), wav, map[string]string{"model": "ears", "response_format": "srt"})
	if !strings.HasPrefix(string(srt), "1\n00:00:") || !strings.Contains(string(srt), " --> ") {
		t.Errorf("srt:\n%s", srt)
	}
	_, vtt := upload(t, n.HTTPAddr(), wav, map[string]string{"model": "ears", "response_format": "vtt"})
	if !strings.HasPrefix(string(vtt), "WEBVTT\n\n00:00:") {
		t.Errorf("vtt:\n%s", vtt)
	}
	res, text := upload(t, n.HTTPAddr(), wav, map[string]string{"model": "ears", "response_format": "text"})
	if !strings.HasPrefix(res.Header.Get("Content-Type"), "text/plain") || strings.TrimSpace(string(text)) != verbose.Text {
		t.Errorf("text: %q (%s), want %q", text, res.Header.Get("Content-Type"), verbose.Text)
	}

	// stream=true: delta events that add up to the done event's text.
	res, stream := upload(t, n.HTTPAddr(), wav, map[string]string{"model": "ears", "stream": "true"})
	if res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %s %s", res.Header.Get("Content-Type"), stream)
	}
	var deltas, done string
	sc := bufio.NewScanner(bytes.NewReader(stream))
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		var ev struct{ Type, Delta, Text string }
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			t.Fatalf("event %q: %v", data, err)
		}
		switch ev.Type {
		case "transcript.text.delta":
			deltas += ev.Delta
		case "transcript.text.done":
			done = ev.Text
		}
	}
	if done == "" || deltas != done || done != verbose.Text {
		t.Errorf("stream: deltas %q, done %q, want %q", deltas, done, verbose.Text)
	}
}

func TestSpeechBadInputKeepsServing(t *testing.T) {
	cfg := &config.Config{
		DataDir: t.TempDir(), Server: config.Server{Host: "127.0.0.1", ShutdownTimeout: 10 * time.Second, MaxAudio: 2 * time.Second},
		Log: config.Log{Level: "info", Format: "text"}, Lifecycle: config.Lifecycle{KeepAlive: 5 * time.Minute},
		Models: []config.Model{sttDecl("ears"), ttsDecl("voice", "flite", "kal16"), tinyDecl("tiny")},
	}
	n, err := node.Start(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Shutdown(context.Background()) })
	addr := n.HTTPAddr()
	_, long := speak(t, addr, map[string]any{"model": "voice", "input": strings.Repeat("This sentence is long enough. ", 4), "response_format": "wav"})

	tests := []struct {
		name   string
		file   []byte
		fields map[string]string
		status int
		want   string
	}{
		{"random bytes", bytes.Repeat([]byte{0x13, 0x37}, 500), map[string]string{"model": "ears"}, 400, "MP3, FLAC"},
		{"truncated wav", long[:30], map[string]string{"model": "ears"}, 400, "WAV"},
		{"too long", long, map[string]string{"model": "ears"}, 413, "server.max_audio"},
		{"no file", nil, map[string]string{"model": "ears"}, 400, "file is missing"},
		{"no model", long, map[string]string{}, 400, "model is missing"},
		{"unknown model", long, map[string]string{"model": "nope"}, 404, "nope"},
		{"a text-only llm", long, map[string]string{"model": "tiny"}, 400, "without audio input"},
		{"bad format", long, map[string]string{"model": "ears", "response_format": "xml"}, 400, "response_format"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, body := upload(t, addr, tc.file, tc.fields)
			if res.StatusCode != tc.status || !strings.Contains(string(body), tc.want) {
				t.Errorf("status %d %s; want %d mentioning %q", res.StatusCode, body, tc.status, tc.want)
			}
		})
	}
	speechTests := []struct {
		name   string
		body   map[string]any
		status int
		want   string
	}{
		{"empty input", map[string]any{"model": "voice", "input": " "}, 400, "input is empty"},
		{"unknown voice", map[string]any{"model": "voice", "input": "Hi.", "voice": "darth"}, 400, "slt"},
		{"bad speed", map[string]any{"model": "voice", "input": "Hi.", "speed": 9}, 400, "speed"},
		{"bad format", map[string]any{"model": "voice", "input": "Hi.", "response_format": "aac"}, 400, "aac"},
		{"an stt model", map[string]any{"model": "ears", "input": "Hi."}, 400, "is a stt model"},
	}
	for _, tc := range speechTests {
		t.Run(tc.name, func(t *testing.T) {
			res, body := speak(t, addr, tc.body)
			if res.StatusCode != tc.status || !strings.Contains(string(body), tc.want) {
				t.Errorf("status %d %s; want %d mentioning %q", res.StatusCode, body, tc.status, tc.want)
			}
		})
	}
	_, short := speak(t, addr, map[string]any{"model": "voice", "input": "Hello.", "response_format": "wav"})
	res, body := upload(t, addr, short, map[string]string{"model": "ears"})
	if res.StatusCode != http.StatusOK {
		t.Errorf("after bad input: %d %s", res.StatusCode, body)
	}
}

func TestGRPCTranscribeStreamsPCM(t *testing.T) {
	n := startNode(t, sttDecl("ears"), ttsDecl("voice", "flite", "kal16"))
	client := pb.NewInferenceServiceClient(grpcConn(t, n))
	pcm := synthesize(t, client, &pb.SynthesizeRequest{Model: "voice", Input: "We will meet at the station tomorrow morning. She reads a book every night."})

	stream, err := client.Transcribe(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&pb.TranscribeRequest{Config: &pb.TranscribeConfig{Model: "ears", Format: "pcm", SampleRate: 16000, Channels: 1, Partial: true}}); err != nil {
		t.Fatal(err)
	}
	go func() {
		// 100 ms pieces, as a microphone would send them.
		for i := 0; i < len(pcm); i += 3200 {
			if stream.Send(&pb.TranscribeRequest{Audio: pcm[i:min(i+3200, len(pcm))]}) != nil {
				return
			}
		}
		stream.CloseSend()
	}()
	var partials, segments []string
	var final *pb.TranscribeFinal
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case ev.GetPartial() != "":
			partials = append(partials, ev.GetPartial())
		case ev.GetSegment() != nil:
			segments = append(segments, ev.GetSegment().GetText())
		case ev.GetFinal() != nil:
			final = ev.GetFinal()
		}
		if ev.GetServedBy() != n.PeerID() {
			t.Errorf("served_by %q, want %q", ev.GetServedBy(), n.PeerID())
		}
	}
	t.Logf("%d partials, segments %q", len(partials), segments)
	if final == nil || len(segments) == 0 || final.GetText() != strings.Join(segments, " ") || len(partials) == 0 {
		t.Fatalf("final %v, segments %q, %d partials", final, segments, len(partials))
	}
	if rate, _, _ := speechtest.WER("We will meet at the station tomorrow morning. She reads a book every night.", final.GetText()); rate > 0.5 {
		t.Errorf("heard %q (WER %.2f)", final.GetText(), rate)
	}
}

// synthesize returns the PCM of a Synthesize call.
func synthesize(t *testing.T, client pb.InferenceServiceClient, req *pb.SynthesizeRequest) []byte {
	t.Helper()
	stream, err := client.Synthesize(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	var pcm []byte
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return pcm
		}
		if err != nil {
			t.Fatal(err)
		}
		pcm = append(pcm, ev.GetAudio().GetData()...)
	}
}

func TestGRPCSynthesizeStreamsSentenceBySentence(t *testing.T) {
	n := startNode(t, ttsDecl("voice", "flite", "kal16"))
	client := pb.NewInferenceServiceClient(grpcConn(t, n))
	input := "The first sentence is here. Then a second one! Is this the third? Dr. Smith wrote the fourth. And that is all."
	stream, err := client.Synthesize(t.Context(), &pb.SynthesizeRequest{Model: "voice", Input: input, Format: "wav"})
	if err != nil {
		t.Fatal(err)
	}
	var captions []string
	var wav []byte
	var final *pb.SynthesizeFinal
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if c := ev.GetAudio(); c != nil {
			wav = append(wav, c.GetData()...)
			if c.GetText() != "" {
				captions = append(captions, c.GetText())
			}
		}
		if f := ev.GetFinal(); f != nil {
			final = f
		}
	}
	want := []string{"The first sentence is here.", "Then a second one!", "Is this the third?", "Dr. Smith wrote the fourth.", "And that is all."}
	if !slices.Equal(captions, want) {
		t.Errorf("captions %q, want %q", captions, want)
	}
	a, err := audio.Decode(wav)
	if err != nil {
		t.Fatalf("the chunks do not make one WAV: %v", err)
	}
	if final == nil || final.GetSampleRate() != 16000 || absDuration(a.Duration()-time.Duration(final.GetDurationSeconds()*float64(time.Second))) > time.Millisecond {
		t.Errorf("final %v, audio %v", final, a.Duration())
	}
}

func absDuration(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

func TestConverseOnOneNode(t *testing.T) {
	n := startNode(t, sttDecl("ears"), ttsDecl("voice", "flite", "kal16"), tinyDecl("tiny"))
	client := pb.NewInferenceServiceClient(grpcConn(t, n))
	question := synthesize(t, client, &pb.SynthesizeRequest{Model: "voice", Input: "I would like a cup of coffee.", Format: "wav"})
	events := converse(t, client, &pb.ConverseConfig{SttModel: "ears", LlmModel: "tiny", TtsModel: "voice", AudioFormat: "wav",
		Sampling: &pb.SamplingParams{MaxTokens: ptr[int32](24), IgnoreEos: true, Seed: ptr[uint32](7)}}, question)
	if events.transcript == nil || !strings.Contains(events.transcript.GetText(), "coffee") {
		t.Errorf("transcript %v", events.transcript)
	}
	if events.final == nil || events.final.GetAnswer() != events.answer || events.answer == "" {
		t.Fatalf("final %v, answer %q", events.final, events.answer)
	}
	for stage, by := range map[string]string{"stt": events.final.GetSttServedBy(), "llm": events.final.GetLlmServedBy(), "tts": events.final.GetTtsServedBy()} {
		if by != n.PeerID() {
			t.Errorf("%s served by %q, want this node %q", stage, by, n.PeerID())
		}
	}
	if _, err := audio.Decode(events.audio); err != nil {
		t.Errorf("the answer's audio is not one WAV (%d bytes): %v", len(events.audio), err)
	}
}

type converseEvents struct {
	transcript *pb.TranscribeFinal
	answer     string
	audio      []byte
	final      *pb.ConverseFinal
}

func converse(t *testing.T, client pb.InferenceServiceClient, cfg *pb.ConverseConfig, question []byte) converseEvents {
	t.Helper()
	stream, err := client.Converse(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&pb.ConverseRequest{Config: cfg, Audio: question}); err != nil {
		t.Fatal(err)
	}
	stream.CloseSend()
	var out converseEvents
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("converse: %v (%v)", err, status.Code(err))
		}
		switch {
		case ev.GetTranscript() != nil:
			out.transcript = ev.GetTranscript()
		case ev.GetDelta() != nil:
			out.answer += ev.GetDelta().GetText()
		case ev.GetAudio() != nil:
			out.audio = append(out.audio, ev.GetAudio().GetData()...)
		case ev.GetFinal() != nil:
			out.final = ev.GetFinal()
		}
	}
}

func TestGRPCSpeechErrors(t *testing.T) {
	n := startNode(t, sttDecl("ears"))
	client := pb.NewInferenceServiceClient(grpcConn(t, n))
	stream, err := client.Transcribe(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	stream.Send(&pb.TranscribeRequest{Audio: []byte("no config")})
	stream.CloseSend()
	if _, err := stream.Recv(); status.Code(err) != codes.InvalidArgument {
		t.Errorf("no config: %v", err)
	}
	stream, _ = client.Transcribe(t.Context())
	stream.Send(&pb.TranscribeRequest{Config: &pb.TranscribeConfig{Model: "ears", Format: "pcm", SampleRate: 3}})
	stream.CloseSend()
	if _, err := stream.Recv(); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "sample_rate") {
		t.Errorf("bad rate: %v", err)
	}
}

// BenchmarkSpeechFirstAudio measures what sentence-by-sentence synthesis buys: the time to the
// first audio byte of /v1/audio/speech for a five-sentence input against the time to the last
// byte (the whole synthesis), in the same request. It reports both and first/whole.
func BenchmarkSpeechFirstAudio(b *testing.B) {
	n := startNodeB(b, ttsDecl("voice", "flite", "kal16"))
	body, _ := json.Marshal(map[string]any{"model": "voice", "response_format": "wav",
		"input": "The first train leaves at seven in the morning. It stops at every station along the coast. " +
			"Passengers can buy tickets on board or at the station. The journey takes about three hours. " +
			"Lunch is served in the dining car from noon."})
	var first, whole time.Duration
	for b.Loop() {
		start := time.Now()
		res, err := http.Post("http://"+n.HTTPAddr()+"/v1/audio/speech", "application/json", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		one := make([]byte, 1)
		if _, err := io.ReadFull(res.Body, one); err != nil {
			b.Fatal(err)
		}
		first += time.Since(start)
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		whole += time.Since(start)
	}
	b.ReportMetric(float64(first.Milliseconds())/float64(b.N), "first_byte_ms")
	b.ReportMetric(float64(whole.Milliseconds())/float64(b.N), "whole_ms")
	b.ReportMetric(first.Seconds()/whole.Seconds(), "first/whole")
}

// An OpenAI client asking for a spoken answer (modalities text and audio) gets the text as the
// audio's transcript and the speech as base64 WAV, spoken by the node's text-to-speech model.
func TestChatAnswersWithAudio(t *testing.T) {
	n := startNode(t, ttsDecl("voice", "flite", "kal16"), tinyDecl("tiny"))
	client := openaiClient("http://" + n.HTTPAddr())
	params := openai.ChatCompletionNewParams{
		Model:      "tiny",
		Messages:   []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Say something.")},
		MaxTokens:  openai.Int(12),
		Seed:       openai.Int(5),
		Modalities: []string{"text", "audio"},
		Audio: openai.ChatCompletionAudioParam{Format: openai.ChatCompletionAudioParamFormatWAV,
			Voice: openai.ChatCompletionAudioParamVoiceUnion{OfString: openai.String("alloy")}},
	}
	res, err := client.Chat.Completions.New(t.Context(), params)
	if err != nil {
		t.Fatal(err)
	}
	msg := res.Choices[0].Message
	if msg.Audio.Transcript == "" || msg.Audio.ID == "" || res.Usage.CompletionTokens != 12 {
		t.Fatalf("message %+v, usage %+v", msg, res.Usage)
	}
	wav, err := base64.StdEncoding.DecodeString(msg.Audio.Data)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := audio.Decode(wav); err != nil {
		t.Errorf("audio of %q: %v", msg.Audio.Transcript, err)
	}

	// Streamed: the transcript in pieces, then the audio in base64 pieces; the serving node in
	// Syn4pse-Served-By and the usage in its own chunk, as for a text stream.
	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	var head *http.Response
	stream := client.Chat.Completions.NewStreaming(t.Context(), params, option.WithResponseInto(&head))
	var transcript, data strings.Builder
	var usage openai.CompletionUsage
	for stream.Next() {
		if u := stream.Current().Usage; u.TotalTokens > 0 {
			usage = u
		}
		var chunk struct {
			Choices []struct {
				Delta struct {
					Audio struct{ Transcript, Data string }
				}
			}
		}
		if err := json.Unmarshal([]byte(stream.Current().RawJSON()), &chunk); err != nil {
			t.Fatal(err)
		}
		for _, c := range chunk.Choices {
			transcript.WriteString(c.Delta.Audio.Transcript)
			data.WriteString(c.Delta.Audio.Data)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if transcript.String() != msg.Audio.Transcript {
		t.Errorf("streamed transcript %q, want %q", transcript.String(), msg.Audio.Transcript)
	}
	if usage.CompletionTokens != 12 || head.Header.Get("Syn4pse-Served-By") != nodeID(t, n.HTTPAddr()) {
		t.Errorf("streamed usage %+v, Syn4pse-Served-By %q: want 12 completion tokens from this node", usage, head.Header.Get("Syn4pse-Served-By"))
	}
	// Each delta's data is its own base64 piece of one WAV stream.
	if data.Len() == 0 {
		t.Errorf("streamed no audio")
	}
}

// OuteTTS through the speech route: a generated random-weight OuteTTS LLM and WavTokenizer
// decoder through real llama.cpp (the audio is noise; the path, the rate and the format are
// real).
func TestOuteTTSThroughSpeechRoute(t *testing.T) {
	dir := t.TempDir()
	llm, vocoder := filepath.Join(dir, "outetts.gguf"), filepath.Join(dir, "wavtokenizer.gguf")
	if err := tinygguf.Write(llm, tinygguf.Options{Arch: "outetts", Seed: 2}); err != nil {
		t.Fatal(err)
	}
	if err := tinygguf.Write(vocoder, tinygguf.Options{Arch: "wavtokenizer", Seed: 2}); err != nil {
		t.Fatal(err)
	}
	decl := config.Model{Name: "oute", Modality: "tts", Engine: "outetts", Path: llm, Vocoder: vocoder, Enabled: true,
		Threads: 1, BatchSize: 512, Parallel: 1, FlashAttention: "auto", GPULayers: -1, MainGPU: -1, Declared: "test [models.oute]"}
	n := startNode(t, decl)
	res, wav := speak(t, n.HTTPAddr(), map[string]any{"model": "oute", "input": "Hello there. Two sentences here.", "response_format": "wav"})
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", res.StatusCode, wav)
	}
	a, err := audio.Decode(wav)
	if err != nil {
		t.Fatal(err)
	}
	if a.Rate != 24000 || a.Duration() <= 0 {
		t.Errorf("OuteTTS audio: %d Hz, %v", a.Rate, a.Duration())
	}
}

// An audio-input LLM (the tiny model with a generated Qwen2-Audio projector, through llama.cpp's
// mtmd) answers a chat whose message carries speech as an OpenAI input_audio part; the same
// audio to a text-only model is refused naming mmproj.
func TestChatWithInputAudio(t *testing.T) {
	projector := filepath.Join(t.TempDir(), "mmproj.gguf")
	if err := tinygguf.WriteAudioProjector(projector, 4); err != nil {
		t.Fatal(err)
	}
	listener := tinyDecl("listener")
	listener.Projector, listener.ContextLength = projector, 4096
	n := startNode(t, listener, tinyDecl("tiny"), ttsDecl("voice", "flite", "kal16"))
	_, wav := speak(t, n.HTTPAddr(), map[string]any{"model": "voice", "input": "What is the weather like?", "response_format": "wav"})
	client := openaiClient("http://" + n.HTTPAddr())
	params := openai.ChatCompletionNewParams{
		Model: "listener",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage([]openai.ChatCompletionContentPartUnionParam{
			openai.TextContentPart("Answer the question:"),
			openai.InputAudioContentPart(openai.ChatCompletionContentPartInputAudioInputAudioParam{
				Data: base64.StdEncoding.EncodeToString(wav), Format: "wav"}),
		})},
		MaxTokens: openai.Int(6),
		Seed:      openai.Int(1),
	}
	res, err := client.Chat.Completions.New(t.Context(), params)
	if err != nil {
		t.Fatal(err)
	}
	// The audio took one 30-second window of the encoder: hundreds of prompt positions.
	if res.Usage.CompletionTokens != 6 || res.Usage.PromptTokens < 700 {
		t.Errorf("usage %+v: want 6 generated after a prompt holding the audio", res.Usage)
	}
	// The same model as a neural speech-to-text engine, through the transcription route.
	tr, body := upload(t, n.HTTPAddr(), wav, map[string]string{"model": "listener", "response_format": "verbose_json"})
	if tr.StatusCode != http.StatusOK || !strings.Contains(string(body), `"segments":[{"id":0`) {
		t.Errorf("transcription by the audio LLM: %d %s", tr.StatusCode, body)
	}
	list, err := client.Models.Get(t.Context(), "listener")
	if err != nil || list.JSON.ExtraFields["inputs"].Raw() != `["text","audio"]` {
		t.Errorf("/v1/models/listener inputs: %v %v", list.JSON.ExtraFields["inputs"].Raw(), err)
	}
	params.Model = "tiny"
	_, err = client.Chat.Completions.New(t.Context(), params)
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest || !strings.Contains(apiErr.Message, "mmproj") {
		t.Errorf("audio to a text-only model: %v", err)
	}
}
