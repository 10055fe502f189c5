package outetts

import (
	"fmt"

	native "github.com/ekisa-team/syn4pse/native/llamacpp"
)

// vocoder is a WavTokenizer decoder ("wavtokenizer-dec") with its context: audio codes in, one
// spectrum frame per code out, turned into a wave by the ISTFT. Not safe for concurrent use.
type vocoder struct {
	model *native.Model
	lctx  *native.Context
	batch *native.Batch
	istft *istft
	codes int // the vocabulary: codes are 0..codes-1
}

// vocoderRate is the sample rate of WavTokenizer's 24 kHz models, the ones OuteTTS uses.
const vocoderRate = 24000

// newVocoder loads the decoder at path for up to maxCodes codes per call. Its output width
// gives the frame size n (n/2+1 log-magnitudes and as many phases); frames step n/4 samples,
// as in every WavTokenizer (1280 and 320 at 24 kHz: 75 codes a second).
func newVocoder(path string, maxCodes, threads int, mp native.ModelParams) (*vocoder, error) {
	m, err := native.LoadModel(path, mp)
	if err != nil {
		return nil, fmt.Errorf("vocoder %s: %w", path, err)
	}
	if arch, _ := m.Meta("general.architecture"); arch != "wavtokenizer-dec" {
		m.Close()
		return nil, fmt.Errorf("vocoder %s: architecture %q, want wavtokenizer-dec (a WavTokenizer decoder GGUF)", path, arch)
	}
	width := m.EmbeddingLength()
	n := width - 2
	if width%2 != 0 || n <= 0 || n%4 != 0 {
		m.Close()
		return nil, fmt.Errorf("vocoder %s: output width %d is not a spectrum of 2·(n/2+1) values", path, width)
	}
	// The decoder has no KV cache: one Encode takes all the codes in one micro-batch.
	lctx, err := native.NewContext(m, native.ContextParams{
		ContextLength: maxCodes, BatchSize: maxCodes, Sequences: 1, Threads: threads,
		Embeddings: true,
	})
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("vocoder %s: %w", path, err)
	}
	return &vocoder{model: m, lctx: lctx, batch: native.NewBatch(maxCodes), istft: newISTFT(n, n/4), codes: m.VocabSize()}, nil
}

// maxCodes is the most codes one call takes.
func (v *vocoder) maxCodes() int { return v.batch.Cap() }

// wave returns the audio of codes: len(codes) × hop samples at vocoderRate.
func (v *vocoder) wave(codes []int32) ([]float32, error) {
	if len(codes) == 0 {
		return nil, nil
	}
	if len(codes) > v.maxCodes() {
		return nil, fmt.Errorf("vocoder: %d codes, at most %d per call", len(codes), v.maxCodes())
	}
	v.batch.Clear()
	for i, c := range codes {
		v.batch.Add(c, i, 0, true)
	}
	if err := v.lctx.Encode(v.batch); err != nil {
		return nil, fmt.Errorf("vocoder: %w", err)
	}
	spec := make([]float32, 0, len(codes)*v.istft.frameSize())
	for i := range codes {
		before := len(spec)
		if spec = v.lctx.Embeddings(spec, i); len(spec)-before != v.istft.frameSize() {
			return nil, fmt.Errorf("vocoder: frame %d has %d values, want %d", i, len(spec)-before, v.istft.frameSize())
		}
	}
	return v.istft.synthesize(spec)
}

// close frees the context, the batch and the model.
func (v *vocoder) close() {
	v.lctx.Close()
	v.batch.Free()
	v.model.Close()
}
