package speech

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/ekisa-team/syn4pse/engine"
	"github.com/ekisa-team/syn4pse/node/api/internal/request"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// Converse serves pb.InferenceServiceServer's Converse: one voice turn, audio in and audio out.
// Each stage is its own routed request (StreamTranscribe, Chat, StreamSynthesize), so the three
// may run on three nodes; the answer's sentences go to text-to-speech as the model writes them.
func (s *Service) Converse(stream grpc.BidiStreamingServer[pb.ConverseRequest, pb.ConverseResponse]) error {
	first, err := stream.Recv()
	if errors.Is(err, io.EOF) {
		return request.Invalid("the call sent no message: send a ConverseRequest with config first")
	}
	if err != nil {
		return err
	}
	cfg := first.GetConfig()
	if err := checkConverse(cfg); err != nil {
		return err
	}
	buf := NewAudioBuffer()
	buf.Add(first.GetAudio())
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf.Fill(ctx, func() ([]byte, error) {
			req, err := stream.Recv()
			return req.GetAudio(), err
		})
	}()
	var sendMu sync.Mutex
	send := func(ev *pb.ConverseResponse) error {
		sendMu.Lock()
		defer sendMu.Unlock()
		return stream.Send(ev)
	}
	err = s.converse(ctx, cfg, buf, send)
	cancel()
	return err
}

func checkConverse(cfg *pb.ConverseConfig) error {
	switch {
	case cfg == nil:
		return request.Invalid("the first ConverseRequest must carry config (the three models, the audio format)")
	case cfg.GetSttModel() == "" || cfg.GetLlmModel() == "" || cfg.GetTtsModel() == "":
		return request.Invalid("stt_model, llm_model and tts_model must all be set")
	}
	return nil
}

// converse runs the three stages; send is safe to call from several goroutines.
func (s *Service) converse(ctx context.Context, cfg *pb.ConverseConfig, buf *AudioBuffer, send func(*pb.ConverseResponse) error) error {
	transcript, err := s.hear(ctx, cfg, buf)
	if err != nil {
		return err
	}
	heard := time.Now()
	if err := send(&pb.ConverseResponse{Event: &pb.ConverseResponse_Transcript{Transcript: transcript}}); err != nil {
		return err
	}
	if strings.TrimSpace(transcript.GetText()) == "" {
		return request.Invalid("no speech was recognised in the audio: nothing to answer")
	}
	chat := &pb.ChatRequest{Model: cfg.GetLlmModel(), Sampling: cfg.GetSampling(), Routing: cfg.GetRouting(),
		Messages: append(append([]*pb.Message(nil), cfg.GetMessages()...), &pb.Message{Role: "user", Content: transcript.GetText()})}
	speech := &pb.SynthesizeRequest{Model: cfg.GetTtsModel(), Voice: cfg.GetVoice(), Format: cfg.GetAudioFormat(), Routing: cfg.GetRouting()}
	aloud, err := s.ChatAloud(ctx, chat, speech, heard,
		func(text, _ string) error {
			return send(&pb.ConverseResponse{Event: &pb.ConverseResponse_Delta{Delta: &pb.Delta{Text: text}}})
		},
		func(c *pb.AudioChunk) error {
			return send(&pb.ConverseResponse{Event: &pb.ConverseResponse_Audio{Audio: c}})
		})
	if err != nil {
		return err
	}
	final := &pb.ConverseFinal{SttServedBy: transcript.GetServedBy(), LlmServedBy: aloud.Final.GetServedBy(), TtsServedBy: aloud.TTSServedBy,
		Answer: aloud.Answer, Usage: aloud.Final.GetUsage(), FirstTextMs: request.Millis(aloud.FirstText), FirstAudioMs: request.Millis(aloud.FirstAudio)}
	return send(&pb.ConverseResponse{Event: &pb.ConverseResponse_Final{Final: final}})
}

// Aloud is what ChatAloud did: the answer, the chat's final event, the node that spoke, and
// how long after its start the first text and the first audio came.
type Aloud struct {
	Answer      string
	Final       *pb.Final
	TTSServedBy string
	FirstText   time.Duration
	FirstAudio  time.Duration
}

// ChatAloud runs a chat and speaks its answer sentence by sentence as the model writes it: each
// sentence is its own routed synthesis (speech names the model, voice, output format and
// routing; its input is ignored), encoded here into one stream in speech's format. text gets the
// answer's pieces and the node that wrote them, each before its sentence goes to be spoken,
// audio the chunks; they may be called from two goroutines at once. since is when the clock of
// FirstText and FirstAudio starts.
func (s *Service) ChatAloud(ctx context.Context, chat *pb.ChatRequest, speech *pb.SynthesizeRequest, since time.Time,
	text func(piece, servedBy string) error, audio func(*pb.AudioChunk) error) (Aloud, error) {
	var out Aloud
	speaker := s.newSpeaker(ctx, speech, audio, since)
	var splitter sentenceSplitter
	var words markdownWords
	say := func(sentence string) {
		if w := words.say(sentence); w != "" {
			speaker.say(w)
		}
	}
	var answer strings.Builder
	err := s.Chat(ctx, chat, func(ev *pb.GenerateResponse) error {
		if f := ev.GetFinal(); f != nil {
			out.Final = f
			return nil
		}
		piece := ev.GetDelta().GetText()
		if answer.Len() == 0 {
			out.FirstText = time.Since(since)
		}
		answer.WriteString(piece)
		if err := text(piece, ev.GetServedBy()); err != nil {
			return err
		}
		for _, sentence := range splitter.Add(piece) {
			say(sentence)
		}
		return nil
	})
	if rest := splitter.Flush(); rest != "" && err == nil {
		say(rest)
	}
	spoken := speaker.finish(err != nil)
	if err != nil {
		return out, err
	}
	if spoken.err != nil {
		return out, spoken.err
	}
	out.Answer, out.TTSServedBy, out.FirstAudio = answer.String(), spoken.servedBy, spoken.firstAudio
	return out, nil
}

// hear runs the speech-to-text stage and returns its final event.
func (s *Service) hear(ctx context.Context, cfg *pb.ConverseConfig, buf *AudioBuffer) (*pb.TranscribeFinal, error) {
	var final *pb.TranscribeFinal
	stt := &pb.TranscribeConfig{Model: cfg.GetSttModel(), Format: cfg.GetFormat(), SampleRate: cfg.GetSampleRate(),
		Channels: cfg.GetChannels(), Language: cfg.GetLanguage(), Routing: cfg.GetRouting()}
	err := s.StreamTranscribe(ctx, stt, buf, func(ev *pb.TranscribeResponse) error {
		if f := ev.GetFinal(); f != nil {
			final = f
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if final == nil {
		return nil, request.Invalid("the speech-to-text stage ended without a transcript")
	}
	return final, nil
}

// speaker runs the text-to-speech stage on its own goroutine: sentences queue while the model
// writes the next ones, and their audio, asked of the TTS node as PCM, is encoded here into one
// stream in the client's format.
type speaker struct {
	s         *Service
	speech    *pb.SynthesizeRequest
	sentences chan string
	done      chan struct{}
	cancel    context.CancelFunc
	result    spoken
}

type spoken struct {
	servedBy   string
	firstAudio time.Duration
	err        error
}

func (s *Service) newSpeaker(ctx context.Context, speech *pb.SynthesizeRequest, audio func(*pb.AudioChunk) error, since time.Time) *speaker {
	ctx, cancel := context.WithCancel(ctx)
	sp := &speaker{s: s, speech: speech, sentences: make(chan string, 64), done: make(chan struct{}), cancel: cancel}
	out := &speechOut{format: formatOr(speech.GetFormat(), "pcm"), send: func(c *pb.AudioChunk) error {
		if sp.result.firstAudio == 0 {
			sp.result.firstAudio = time.Since(since)
		}
		return audio(c)
	}}
	go sp.run(ctx, out)
	return sp
}

// say queues a sentence.
func (sp *speaker) say(sentence string) {
	select {
	case sp.sentences <- sentence:
	case <-sp.done: // the stage failed; its error is reported by finish
	}
}

// finish waits for the queued sentences to be spoken (or, when abort, stops at once).
func (sp *speaker) finish(abort bool) spoken {
	if abort {
		sp.cancel()
	}
	close(sp.sentences)
	<-sp.done
	sp.cancel()
	return sp.result
}

func (sp *speaker) run(ctx context.Context, out *speechOut) {
	defer close(sp.done)
	for sentence := range sp.sentences {
		if ctx.Err() != nil {
			break
		}
		req := &pb.SynthesizeRequest{Model: sp.speech.GetModel(), Input: sentence, Voice: sp.speech.GetVoice(), Speed: sp.speech.GetSpeed(),
			Format: "pcm", Routing: sp.speech.GetRouting(), KeepAlive: sp.speech.GetKeepAlive()}
		err := sp.s.StreamSynthesize(ctx, req, func(ev *pb.SynthesizeResponse) error {
			if f := ev.GetFinal(); f != nil {
				sp.result.servedBy = f.GetServedBy()
				return nil
			}
			a := ev.GetAudio()
			out.setCaption(a.GetText())
			return out.write(engine.AudioChunk{Rate: int(a.GetSampleRate()), Samples: pcmSamples(a.GetData())})
		})
		if err != nil {
			sp.result.err = err
			sp.cancel()
			break
		}
	}
	if out.enc == nil {
		return
	}
	if sp.result.err != nil {
		out.abort()
		return
	}
	if err := out.close(); err != nil {
		sp.result.err = request.Status(err)
	}
}

// pcmSamples reads s16le mono PCM; an odd last byte is dropped.
func pcmSamples(data []byte) []float32 {
	out := make([]float32, len(data)/2)
	for i := range out {
		out[i] = float32(int16(binary.LittleEndian.Uint16(data[2*i:]))) / 32768
	}
	return out
}
