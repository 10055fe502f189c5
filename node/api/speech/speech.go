// Package speech implements the speech methods of SYN4PSE's inference service: transcription,
// synthesis, and the voice pipeline that chains them with a chat (Converse, ChatAloud). Package
// api's InferenceService serves them through a Service over its own models and router, so gRPC
// still registers one inference service.
package speech

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ekisa-team/syn4pse/engine"
	"github.com/ekisa-team/syn4pse/internal/audio"
	"github.com/ekisa-team/syn4pse/node/api/internal/request"
	"github.com/ekisa-team/syn4pse/node/models"
	"github.com/ekisa-team/syn4pse/node/router"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// Service implements Transcribe, Synthesize and Converse of pb.InferenceServiceServer over the
// node's models and, through the router, the mesh's.
type Service struct {
	Models *models.Manager
	// NodeID names this node in served_by.
	NodeID string
	// Router picks the node that serves a request; nil serves everything here.
	Router *router.Router
	// MaxAudio bounds the duration of the audio a request sends (server.max_audio); 0 is
	// DefaultMaxAudio.
	MaxAudio time.Duration
	// Chat runs a chat request where the router says (api's StreamChat): the voice pipeline's
	// answer.
	Chat func(ctx context.Context, req *pb.ChatRequest, send router.Sender) error
}

// DefaultMaxAudio is the longest audio a request may send when the node sets no limit.
const DefaultMaxAudio = 30 * time.Minute

// maxAudioBytes bounds the audio bytes one request may send, whatever their duration: 30
// minutes of 48 kHz 16-bit stereo, with room to spare.
const maxAudioBytes = 512 << 20

// Transcribe serves pb.InferenceServiceServer's Transcribe: the first message carries the
// config, the audio follows as it is recorded.
func (s *Service) Transcribe(stream grpc.BidiStreamingServer[pb.TranscribeRequest, pb.TranscribeResponse]) error {
	first, err := stream.Recv()
	if errors.Is(err, io.EOF) {
		return request.Invalid("the call sent no message: send a TranscribeRequest with config first")
	}
	if err != nil {
		return err
	}
	if first.GetConfig() == nil {
		return request.Invalid("the first TranscribeRequest must carry config (the model, the audio format)")
	}
	buf := NewAudioBuffer()
	buf.Add(first.GetAudio())
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf.Fill(ctx, func() ([]byte, error) {
			req, err := stream.Recv()
			return req.GetAudio(), err
		})
	}()
	err = s.StreamTranscribe(ctx, first.GetConfig(), buf, stream.Send)
	cancel()
	wg.Wait()
	return err
}

// StreamTranscribe runs a transcription where the router says and sends its events; errors are
// gRPC status errors. The audio comes from buf, which the caller fills and ends.
func (s *Service) StreamTranscribe(ctx context.Context, cfg *pb.TranscribeConfig, buf *AudioBuffer, send func(*pb.TranscribeResponse) error) error {
	if cfg.GetModel() == "" {
		return request.Invalid("model is empty: name a speech-to-text model (syn4pse models list shows them)")
	}
	local := func(ctx context.Context, send func(*pb.TranscribeResponse) error) error {
		return s.localTranscribe(ctx, cfg, buf.Reader(), send)
	}
	if s.Router == nil {
		return local(ctx, send)
	}
	return request.Status(s.Router.Transcribe(ctx, cfg, func() router.AudioReader { return buf.Reader() }, send, local))
}

func (s *Service) localTranscribe(ctx context.Context, cfg *pb.TranscribeConfig, in router.AudioReader, send func(*pb.TranscribeResponse) error) error {
	model := cfg.GetModel()
	if st, ok := s.Models.Status(model); ok && st.Modality != "stt" && st.Modality != "llm" {
		return request.Invalid("%q is a %s model; Transcribe and /v1/audio/transcriptions need an stt model or an LLM that takes audio", model, st.Modality)
	}
	keepAlive, err := request.KeepAlive(cfg.GetKeepAlive())
	if err != nil {
		return err
	}
	temperature := cfg.GetTemperature()
	if temperature < 0 || temperature > 1 || math.IsNaN(float64(temperature)) {
		return request.Invalid("temperature %v: want 0 to 1", temperature)
	}
	lease, err := s.Models.Acquire(ctx, model, keepAlive)
	if err != nil {
		return request.Status(err)
	}
	defer lease.Release()
	stt := lease.STT()
	if llm := lease.LLM(); llm != nil {
		return s.transcribeWithLLM(ctx, cfg, in, llm, send)
	}
	if stt == nil {
		return request.Invalid("%q is not a speech-to-text model", model)
	}
	read, err := s.audioSource(ctx, cfg, in, stt.Info().SampleRate)
	if err != nil {
		return err
	}
	req := engine.TranscribeRequest{Read: read, Language: cfg.GetLanguage(), Prompt: cfg.GetPrompt(), Temperature: temperature}
	segments := 0
	res, err := stt.Transcribe(ctx, req, func(ev engine.TranscriptEvent) error {
		resp := &pb.TranscribeResponse{Model: model, ServedBy: s.NodeID}
		switch {
		case ev.Segment != nil:
			resp.Event = &pb.TranscribeResponse_Segment{Segment: segmentProto(segments, *ev.Segment)}
			segments++
		case cfg.GetPartial():
			resp.Event = &pb.TranscribeResponse_Partial{Partial: ev.Partial}
		default:
			return nil
		}
		return send(resp)
	})
	if err != nil {
		return request.Status(err)
	}
	final := &pb.TranscribeFinal{Text: res.Text, Language: res.Language, DurationSeconds: res.AudioDuration.Seconds(),
		ProcessMs: request.Millis(res.ProcessDuration), ServedBy: s.NodeID}
	for i, seg := range res.Segments {
		final.Segments = append(final.Segments, segmentProto(i, seg))
	}
	return send(&pb.TranscribeResponse{Model: model, ServedBy: s.NodeID, Event: &pb.TranscribeResponse_Final{Final: final}})
}

// llmTranscriptRate is the audio an audio-input LLM hears, in Hz (Whisper-family encoders).
const llmTranscriptRate = 16000

// transcribeWithLLM transcribes with an audio-input LLM (Voxtral, Qwen2-Audio, Ultravox through
// mtmd): the audio goes in a chat message that asks for its transcript, and the answer is the
// text, as one segment (these models give no timings).
func (s *Service) transcribeWithLLM(ctx context.Context, cfg *pb.TranscribeConfig, in router.AudioReader, llm engine.LLM, send func(*pb.TranscribeResponse) error) error {
	model := cfg.GetModel()
	if !slices.Contains(llm.Info().Inputs, "audio") {
		return request.Invalid("%q is an LLM without audio input: declare it with an audio projector (mmproj), or use an stt model", model)
	}
	read, err := s.audioSource(ctx, cfg, in, llmTranscriptRate)
	if err != nil {
		return err
	}
	var samples []float32
	for {
		chunk, err := read()
		samples = append(samples, chunk...)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return request.Status(err)
		}
	}
	var wav bytes.Buffer
	enc, err := audio.NewEncoder(&wav, "wav", llmTranscriptRate)
	if err == nil {
		err = enc.Write(samples)
	}
	if err == nil {
		err = enc.Close()
	}
	if err != nil {
		return request.Status(err)
	}
	ask := "Transcribe the audio word for word. Reply with the transcript only."
	if cfg.GetLanguage() != "" {
		ask += " The speech is in " + cfg.GetLanguage() + "."
	}
	if cfg.GetPrompt() != "" {
		ask += " Context: " + cfg.GetPrompt()
	}
	duration := time.Duration(len(samples)) * time.Second / llmTranscriptRate
	gen := engine.GenerateRequest{
		Messages:  []engine.Message{{Role: "user", Content: ask + "\n" + engine.MediaMarker, Media: []engine.Media{{Data: wav.Bytes(), MIME: "audio/wav"}}}},
		Sampling:  engine.DefaultSampling(),
		MaxTokens: 32 + int(duration.Seconds()*8), // speech is 2-4 words a second
	}
	gen.Sampling.Temperature = cfg.GetTemperature()
	var text strings.Builder
	start := time.Now()
	if _, err := llm.Generate(ctx, gen, func(piece string) error { text.WriteString(piece); return nil }); err != nil {
		return request.Status(err)
	}
	seg := engine.Segment{Text: strings.TrimSpace(text.String()), End: duration}
	if err := send(&pb.TranscribeResponse{Model: model, ServedBy: s.NodeID, Event: &pb.TranscribeResponse_Segment{Segment: segmentProto(0, seg)}}); err != nil {
		return err
	}
	final := &pb.TranscribeFinal{Text: seg.Text, Language: cfg.GetLanguage(), DurationSeconds: duration.Seconds(),
		ProcessMs: request.Millis(time.Since(start)), ServedBy: s.NodeID, Segments: []*pb.TranscriptSegment{segmentProto(0, seg)}}
	return send(&pb.TranscribeResponse{Model: model, ServedBy: s.NodeID, Event: &pb.TranscribeResponse_Final{Final: final}})
}

func segmentProto(id int, seg engine.Segment) *pb.TranscriptSegment {
	out := &pb.TranscriptSegment{Id: int32(id), Text: seg.Text, Start: seg.Start.Seconds(), End: seg.End.Seconds()}
	for _, w := range seg.Words {
		out.Words = append(out.Words, &pb.TranscriptWord{Word: w.Word, Start: w.Start.Seconds(), End: w.End.Seconds(), Probability: w.Probability})
	}
	return out
}

// audioSource turns the request's audio into what an engine reads: mono samples at rate. A
// file (WAV, MP3, FLAC) is decoded once it has all arrived; raw PCM is converted as it comes.
func (s *Service) audioSource(ctx context.Context, cfg *pb.TranscribeConfig, in router.AudioReader, rate int) (func() ([]float32, error), error) {
	maxAudio := s.MaxAudio
	if maxAudio <= 0 {
		maxAudio = DefaultMaxAudio
	}
	switch cfg.GetFormat() {
	case "", "file":
		data, err := readAll(ctx, in)
		if err != nil {
			return nil, err
		}
		if len(data) == 0 {
			return nil, request.Invalid("the request holds no audio: send a WAV, MP3 or FLAC file")
		}
		a, err := audio.Decoder{MaxDuration: maxAudio}.Decode(data)
		if errors.Is(err, audio.ErrTooLong) {
			return nil, request.Status(fmt.Errorf("%w: the node takes at most %v (server.max_audio); send shorter audio", audio.ErrTooLong, maxAudio))
		}
		if err != nil {
			return nil, request.Status(fmt.Errorf("audio: %w", err))
		}
		samples := audio.Resample(a.Mono(), rate).Samples
		return func() ([]float32, error) {
			out := samples
			samples = nil
			return out, io.EOF
		}, nil
	case "pcm":
		return pcmSource(ctx, cfg, in, rate, maxAudio)
	}
	return nil, request.Invalid("format %q: want \"\" (a WAV, MP3 or FLAC file) or \"pcm\" (raw s16le at sample_rate)", cfg.GetFormat())
}

// pcmSource converts raw s16le audio as it arrives: downmixed, resampled, checked against the
// duration limit.
func pcmSource(ctx context.Context, cfg *pb.TranscribeConfig, in router.AudioReader, rate int, maxAudio time.Duration) (func() ([]float32, error), error) {
	from, channels := int(cfg.GetSampleRate()), int(max(cfg.GetChannels(), 1))
	if from < audio.MinRate || from > audio.MaxRate {
		return nil, request.Invalid("sample_rate %d: raw PCM needs its rate, %d to %d Hz", from, audio.MinRate, audio.MaxRate)
	}
	if channels > 8 {
		return nil, request.Invalid("channels %d: at most 8", channels)
	}
	frame := 2 * channels
	resampler := audio.NewResampler(from, rate)
	var carry []byte
	var frames int64
	limit := int64(maxAudio.Seconds() * float64(from))
	return func() ([]float32, error) {
		for {
			piece, err := in.Next(ctx)
			if errors.Is(err, io.EOF) {
				return resampler.Flush(), io.EOF
			}
			if err != nil {
				return nil, err
			}
			carry = append(carry, piece...)
			n := len(carry) / frame * frame
			if n == 0 {
				continue
			}
			frames += int64(n / frame)
			if frames > limit {
				return nil, fmt.Errorf("%w: the audio passes %v, the node's limit (server.max_audio)", audio.ErrTooLong, maxAudio)
			}
			mono := make([]float32, n/frame)
			for i := range mono {
				var sum float32
				for c := 0; c < channels; c++ {
					sum += float32(int16(binary.LittleEndian.Uint16(carry[i*frame+2*c:]))) / 32768
				}
				mono[i] = sum / float32(channels)
			}
			carry = append(carry[:0], carry[n:]...)
			if out := resampler.Process(mono); len(out) > 0 {
				return out, nil
			}
		}
	}, nil
}

func readAll(ctx context.Context, in router.AudioReader) ([]byte, error) {
	var data []byte
	for {
		piece, err := in.Next(ctx)
		if errors.Is(err, io.EOF) {
			return data, nil
		}
		if err != nil {
			return nil, request.Status(err)
		}
		data = append(data, piece...)
	}
}

// AudioBuffer holds the audio of one request as it arrives, so that the node serving it can
// read it while it comes and a second node can read it again from the start when the first
// failed. It is safe for one filler and many readers.
type AudioBuffer struct {
	mu     sync.Mutex
	pieces [][]byte
	size   int
	err    error // io.EOF once the audio ended, else why it stopped
	grew   chan struct{}
}

// NewAudioBuffer returns an empty buffer that waits for audio.
func NewAudioBuffer() *AudioBuffer {
	return &AudioBuffer{grew: make(chan struct{})}
}

// Add appends a piece of audio.
func (b *AudioBuffer) Add(piece []byte) {
	if len(piece) == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return
	}
	b.size += len(piece)
	if b.size > maxAudioBytes {
		b.endLocked(status.Errorf(codes.OutOfRange, "the audio is larger than %d MiB", maxAudioBytes>>20))
		return
	}
	b.pieces = append(b.pieces, piece)
	b.wakeLocked()
}

// End ends the audio: with io.EOF when it is complete, else with the reason it stopped.
func (b *AudioBuffer) End(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.endLocked(err)
}

func (b *AudioBuffer) endLocked(err error) {
	if b.err == nil {
		b.err = err
		b.wakeLocked()
	}
}

func (b *AudioBuffer) wakeLocked() {
	close(b.grew)
	b.grew = make(chan struct{})
}

// Fill adds the pieces next returns until it fails, then ends the buffer with its error
// (io.EOF at the end of the audio), or stops when ctx ends.
func (b *AudioBuffer) Fill(ctx context.Context, next func() ([]byte, error)) {
	for ctx.Err() == nil {
		piece, err := next()
		if err != nil {
			b.End(err)
			return
		}
		b.Add(piece)
	}
	b.End(ctx.Err())
}

// Reader returns a reader of the audio from its start.
func (b *AudioBuffer) Reader() router.AudioReader { return &audioReader{b: b} }

type audioReader struct {
	b    *AudioBuffer
	next int
}

// Next returns the next piece, waiting for it to arrive.
func (r *audioReader) Next(ctx context.Context) ([]byte, error) {
	for {
		r.b.mu.Lock()
		if r.next < len(r.b.pieces) {
			piece := r.b.pieces[r.next]
			r.next++
			r.b.mu.Unlock()
			return piece, nil
		}
		err, grew := r.b.err, r.b.grew
		r.b.mu.Unlock()
		if err != nil {
			return nil, err
		}
		select {
		case <-grew:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
