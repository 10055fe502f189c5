package api

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
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// Converse implements pb.InferenceServiceServer: one voice turn, audio in and audio out. Each
// stage is its own routed request (StreamTranscribe, StreamChat, StreamSynthesize), so the three
// may run on three nodes; the answer's sentences go to text-to-speech as the model writes them.
func (s *InferenceService) Converse(stream grpc.BidiStreamingServer[pb.ConverseRequest, pb.ConverseResponse]) error {
	first, err := stream.Recv()
	if errors.Is(err, io.EOF) {
		return invalid("the call sent no message: send a ConverseRequest with config first")
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
		return invalid("the first ConverseRequest must carry config (the three models, the audio format)")
	case cfg.GetSttModel() == "" || cfg.GetLlmModel() == "" || cfg.GetTtsModel() == "":
		return invalid("stt_model, llm_model and tts_model must all be set")
	}
	return nil
}

// converse runs the three stages; send is safe to call from several goroutines.
func (s *InferenceService) converse(ctx context.Context, cfg *pb.ConverseConfig, buf *AudioBuffer, send func(*pb.ConverseResponse) error) error {
	transcript, err := s.hear(ctx, cfg, buf)
	if err != nil {
		return err
	}
	heard := time.Now()
	if err := send(&pb.ConverseResponse{Event: &pb.ConverseResponse_Transcript{Transcript: transcript}}); err != nil {
		return err
	}
	if strings.TrimSpace(transcript.GetText()) == "" {
		return invalid("no speech was recognised in the audio: nothing to answer")
	}
	final := &pb.ConverseFinal{SttServedBy: transcript.GetServedBy()}

	speaker := s.newSpeaker(ctx, cfg, send, heard)
	var splitter sentenceSplitter
	var answer strings.Builder
	chat := &pb.ChatRequest{Model: cfg.GetLlmModel(), Sampling: cfg.GetSampling(), Routing: cfg.GetRouting(),
		Messages: append(append([]*pb.Message(nil), cfg.GetMessages()...), &pb.Message{Role: "user", Content: transcript.GetText()})}
	err = s.StreamChat(ctx, chat, func(ev *pb.GenerateResponse) error {
		if f := ev.GetFinal(); f != nil {
			final.LlmServedBy, final.Usage = f.GetServedBy(), f.GetUsage()
			return nil
		}
		text := ev.GetDelta().GetText()
		if answer.Len() == 0 {
			final.FirstTextMs = ms(time.Since(heard))
		}
		answer.WriteString(text)
		for _, sentence := range splitter.Add(text) {
			speaker.say(sentence)
		}
		return send(&pb.ConverseResponse{Event: &pb.ConverseResponse_Delta{Delta: &pb.Delta{Text: text}}})
	})
	if rest := splitter.Flush(); rest != "" && err == nil {
		speaker.say(rest)
	}
	spoken := speaker.finish(err != nil)
	if err != nil {
		return err
	}
	if spoken.err != nil {
		return spoken.err
	}
	final.Answer, final.TtsServedBy, final.FirstAudioMs = answer.String(), spoken.servedBy, spoken.firstAudioMs
	return send(&pb.ConverseResponse{Event: &pb.ConverseResponse_Final{Final: final}})
}

// hear runs the speech-to-text stage and returns its final event.
func (s *InferenceService) hear(ctx context.Context, cfg *pb.ConverseConfig, buf *AudioBuffer) (*pb.TranscribeFinal, error) {
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
		return nil, invalid("the speech-to-text stage ended without a transcript")
	}
	return final, nil
}

// speaker runs the text-to-speech stage on its own goroutine: sentences queue while the model
// writes the next ones, and their audio, asked of the TTS node as PCM, is encoded here into one
// stream in the client's format.
type speaker struct {
	s         *InferenceService
	cfg       *pb.ConverseConfig
	sentences chan string
	done      chan struct{}
	cancel    context.CancelFunc
	result    spoken
}

type spoken struct {
	servedBy     string
	firstAudioMs float64
	err          error
}

func (s *InferenceService) newSpeaker(ctx context.Context, cfg *pb.ConverseConfig, send func(*pb.ConverseResponse) error, heard time.Time) *speaker {
	ctx, cancel := context.WithCancel(ctx)
	sp := &speaker{s: s, cfg: cfg, sentences: make(chan string, 64), done: make(chan struct{}), cancel: cancel}
	out := &speechOut{format: formatOr(cfg.GetAudioFormat(), "pcm"), send: func(c *pb.AudioChunk) error {
		if sp.result.firstAudioMs == 0 {
			sp.result.firstAudioMs = ms(time.Since(heard))
		}
		return send(&pb.ConverseResponse{Event: &pb.ConverseResponse_Audio{Audio: c}})
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
		req := &pb.SynthesizeRequest{Model: sp.cfg.GetTtsModel(), Input: sentence, Voice: sp.cfg.GetVoice(), Format: "pcm", Routing: sp.cfg.GetRouting()}
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
		sp.result.err = toStatus(err)
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
