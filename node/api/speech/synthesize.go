package speech

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/ekisa-team/syn4pse/engine"
	"github.com/ekisa-team/syn4pse/internal/audio"
	"github.com/ekisa-team/syn4pse/node/api/internal/request"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// maxSpeechInput bounds the text of one synthesis, as OpenAI's speech API does.
const maxSpeechInput = 4096

// Synthesize serves pb.InferenceServiceServer's Synthesize.
func (s *Service) Synthesize(req *pb.SynthesizeRequest, stream grpc.ServerStreamingServer[pb.SynthesizeResponse]) error {
	return s.StreamSynthesize(stream.Context(), req, stream.Send)
}

// StreamSynthesize runs a synthesis where the router says and sends its events: audio chunks
// sentence by sentence, then a final event. Errors are gRPC status errors.
func (s *Service) StreamSynthesize(ctx context.Context, req *pb.SynthesizeRequest, send func(*pb.SynthesizeResponse) error) error {
	if s.Router == nil {
		return s.localSynthesize(ctx, req, send)
	}
	return request.Status(s.Router.Synthesize(ctx, req, send, s.localSynthesize))
}

func (s *Service) localSynthesize(ctx context.Context, req *pb.SynthesizeRequest, send func(*pb.SynthesizeResponse) error) error {
	if err := checkSynthesize(req); err != nil {
		return err
	}
	model := req.GetModel()
	lease, err := request.Acquire(ctx, s.Models, model, "tts", "Synthesize and /v1/audio/speech", req.GetKeepAlive())
	if err != nil {
		return err
	}
	defer lease.Release()
	tts := lease.TTS()
	if tts == nil {
		return request.Invalid("%q is not a text-to-speech model", model)
	}
	out := &speechOut{send: func(c *pb.AudioChunk) error {
		return send(&pb.SynthesizeResponse{Model: model, ServedBy: s.NodeID, Event: &pb.SynthesizeResponse_Audio{Audio: c}})
	}, format: formatOr(req.GetFormat(), "pcm")}
	start := time.Now()
	for _, sentence := range splitSentences(req.GetInput()) {
		if err := out.speak(ctx, tts, engine.SynthesizeRequest{Text: sentence, Voice: req.GetVoice(), Speed: req.GetSpeed()}); err != nil {
			out.abort()
			return request.Status(err)
		}
	}
	if err := out.close(); err != nil {
		return request.Status(err)
	}
	final := &pb.SynthesizeFinal{SampleRate: int32(out.rate), DurationSeconds: out.duration().Seconds(), ProcessMs: request.Millis(time.Since(start)), ServedBy: s.NodeID}
	return send(&pb.SynthesizeResponse{Model: model, ServedBy: s.NodeID, Event: &pb.SynthesizeResponse_Final{Final: final}})
}

func checkSynthesize(req *pb.SynthesizeRequest) error {
	switch {
	case req.GetModel() == "":
		return request.Invalid("model is empty: name a text-to-speech model (syn4pse models list shows them)")
	case req.GetInput() == "" || len(splitSentences(req.GetInput())) == 0:
		return request.Invalid("input is empty: give the text to speak")
	case len(req.GetInput()) > maxSpeechInput:
		return request.Invalid("input is %d bytes: at most %d; split the text into several requests", len(req.GetInput()), maxSpeechInput)
	case req.GetSpeed() != 0 && (req.GetSpeed() < 0.25 || req.GetSpeed() > 4 || math.IsNaN(float64(req.GetSpeed()))):
		return request.Invalid("speed %v: want 0.25 to 4 (1 is normal)", req.GetSpeed())
	}
	if format := formatOr(req.GetFormat(), "pcm"); !slices.Contains(audio.Formats(), format) {
		// Not encodable here: the encoder says why (an unknown format, a program to install).
		enc, err := audio.NewEncoder(io.Discard, format, 16000)
		if err == nil {
			enc.Close()
		}
		return request.Status(fmt.Errorf("format %q: %w", format, err))
	}
	return nil
}

func formatOr(format, def string) string {
	if format == "" {
		return def
	}
	return format
}

// speechOut encodes the audio of consecutive syntheses into one stream of chunks: the encoder
// starts at the rate of the first audio and later audio is resampled to it, so the chunks
// concatenate into one file.
type speechOut struct {
	send   func(*pb.AudioChunk) error
	format string

	mu   sync.Mutex // the encoder may write from its own goroutine (mp3, opus)
	enc  *audio.Encoder
	rate int
	// resampler converts audio that comes at another rate than the first (resampleFrom).
	resampler    *audio.Resampler
	resampleFrom int
	frames       int64
	caption      string // the sentence that the next chunk starts
	sendErr      error
}

// speak synthesizes one sentence into the stream.
func (o *speechOut) speak(ctx context.Context, tts engine.TTS, req engine.SynthesizeRequest) error {
	o.setCaption(req.Text)
	_, err := tts.Synthesize(ctx, req, func(c engine.AudioChunk) error {
		return o.write(c)
	})
	return err
}

// setCaption sets the sentence that the next chunk starts; "" keeps the one not yet sent.
func (o *speechOut) setCaption(text string) {
	if text == "" {
		return
	}
	o.mu.Lock()
	o.caption = text
	o.mu.Unlock()
}

func (o *speechOut) write(c engine.AudioChunk) error {
	if o.enc == nil {
		enc, err := audio.NewEncoder(chunkWriter{o}, o.format, c.Rate)
		if err != nil {
			return err
		}
		o.enc, o.rate = enc, c.Rate
	}
	samples := c.Samples
	if c.Rate != o.rate {
		// A voice at another rate: one resampler for the stream, so chunk edges stay smooth.
		if o.resampler == nil || o.resampleFrom != c.Rate {
			o.resampler, o.resampleFrom = audio.NewResampler(c.Rate, o.rate), c.Rate
		}
		samples = o.resampler.Process(samples)
	}
	o.frames += int64(len(samples))
	if err := o.enc.Write(samples); err != nil {
		return err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.sendErr
}

// chunkWriter turns what the encoder writes into audio chunks.
type chunkWriter struct{ o *speechOut }

func (w chunkWriter) Write(p []byte) (int, error) {
	o := w.o
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.sendErr != nil {
		return 0, o.sendErr
	}
	chunk := &pb.AudioChunk{Data: append([]byte(nil), p...), Format: o.format, SampleRate: int32(o.rate), Text: o.caption}
	o.caption = ""
	if err := o.send(chunk); err != nil {
		o.sendErr = err
		return 0, err
	}
	return len(p), nil
}

func (o *speechOut) close() error {
	if o.enc == nil {
		return errors.New("the model produced no audio")
	}
	err := o.enc.Close()
	o.mu.Lock()
	defer o.mu.Unlock()
	return errors.Join(err, o.sendErr)
}

// abort stops the encoder after a failure.
func (o *speechOut) abort() {
	if o.enc != nil {
		o.enc.Close()
	}
}

func (o *speechOut) duration() time.Duration {
	if o.rate == 0 {
		return 0
	}
	return time.Duration(o.frames) * time.Second / time.Duration(o.rate)
}
