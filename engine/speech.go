package engine

import (
	"context"
	"errors"
	"time"
)

// Speech: engines take and make mono float32 samples in [-1, 1] at the rate the model states
// (ModelInfo.SampleRate, or each chunk's Rate). Decoding files, resampling and encoding are the
// node's work (internal/audio), so every engine sees one format.

// ErrNoSpeech means the audio held nothing the model could recognise as speech.
var ErrNoSpeech = errors.New("no speech found in the audio")

// TranscribeRequest is one transcription. The audio arrives through Read, so a whole file and a
// live stream take the same path.
type TranscribeRequest struct {
	// Read returns the next chunk of mono samples at the model's SampleRate; it returns io.EOF
	// (with or without a last chunk) at the end of the audio.
	Read func() ([]float32, error)
	// Language is a BCP 47 tag; "" for the model's.
	Language string
	// Prompt is text that may precede the audio (names, spelling); engines may ignore it.
	Prompt      string
	Temperature float32
}

// Word is one recognised word and where it is in the audio.
type Word struct {
	Word       string
	Start, End time.Duration
	// Probability is the engine's confidence in the word, 0..1 (0 when it gives none).
	Probability float32
}

// Segment is one utterance: a stretch of speech between pauses.
type Segment struct {
	Text       string
	Start, End time.Duration
	Words      []Word
}

// TranscriptEvent is what a transcription reports as it goes: the hypothesis for the utterance
// being heard (Partial, replacing the previous one), or a finished utterance (Segment).
type TranscriptEvent struct {
	Partial string
	Segment *Segment
}

// TranscribeResult is a finished transcription.
type TranscribeResult struct {
	Text     string
	Segments []Segment
	Language string
	// AudioDuration is the length of the audio; ProcessDuration the time the engine took.
	AudioDuration   time.Duration
	ProcessDuration time.Duration
}

// STT is a loaded speech-to-text model. Transcribe may be called from many goroutines.
type STT interface {
	Model
	// Transcribe reads the request's audio to its end, calling emit as utterances are heard.
	// It stops when ctx is cancelled (returning ctx's error) or emit returns an error.
	Transcribe(ctx context.Context, req TranscribeRequest, emit func(TranscriptEvent) error) (TranscribeResult, error)
}

// STTEngine loads speech-to-text models.
type STTEngine interface {
	Name() string
	LoadSTT(ctx context.Context, opts LoadOptions) (STT, error)
}

// SynthesizeRequest is one piece of text to speak.
type SynthesizeRequest struct {
	Text string
	// Voice is one of the model's Voices; "" for its default.
	Voice string
	// Speed scales the speaking rate: 1 normal, 2 twice as fast (0 means 1).
	Speed float32
}

// AudioChunk is a piece of synthesized audio: mono samples in [-1, 1] at Rate Hz.
type AudioChunk struct {
	Rate    int
	Samples []float32
}

// SynthesizeResult describes a finished synthesis.
type SynthesizeResult struct {
	Rate            int
	AudioDuration   time.Duration
	ProcessDuration time.Duration
}

// TTS is a loaded text-to-speech model. Synthesize may be called from many goroutines; it
// speaks the text it is given as one piece (the node splits long input into sentences).
type TTS interface {
	Model
	// Synthesize calls emit with the audio as it is made. It stops when ctx is cancelled
	// (returning ctx's error) or emit returns an error. An unknown voice is ErrInvalidRequest.
	Synthesize(ctx context.Context, req SynthesizeRequest, emit func(AudioChunk) error) (SynthesizeResult, error)
}

// TTSEngine loads text-to-speech models.
type TTSEngine interface {
	Name() string
	LoadTTS(ctx context.Context, opts LoadOptions) (TTS, error)
}
