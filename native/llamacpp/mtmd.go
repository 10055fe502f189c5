package llamacpp

/*
#include <stdlib.h>
#include "llama.h"
#include "mtmd.h"
#include "mtmd-helper.h"

extern void synLog(int level, char *text, void *user_data);
static void syn_mtmd_log_set(void) {
	mtmd_log_set((ggml_log_callback)synLog, NULL);
	mtmd_helper_log_set((ggml_log_callback)synLog, NULL);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"github.com/ekisa-team/syn4pse/internal/gguf"
)

// Errors from Projector.Tokenize, for a request whose media or markers are wrong.
var (
	// ErrMedia means a media item is neither an image stb_image decodes nor WAV, MP3 or FLAC.
	ErrMedia = errors.New("not a readable image (PNG, JPEG, BMP, GIF...) or audio file (WAV, MP3, FLAC)")
	// ErrMarkers means the prompt does not hold one marker per media item.
	ErrMarkers = errors.New("the prompt does not hold one media marker per media item")
)

var mtmdLogOnce sync.Once

// ProjectorParams says how to open a multimodal projector.
type ProjectorParams struct {
	// GPU runs the encoder on the first GPU, when there is one.
	GPU bool
	// Threads of the encoder on the CPU; 0 lets mtmd choose.
	Threads int
}

// Projector is a multimodal projector (an "mmproj" GGUF: an image or audio encoder and the
// projection into a language model's embeddings), opened for one Model through llama.cpp's
// mtmd. Close frees it; the Model must outlive it. Tokenize is safe for concurrent use; Eval is
// not, and runs on the goroutine that owns the Context.
type Projector struct {
	c *C.struct_mtmd_context
}

// OpenProjector opens the mmproj file at path for m. It fails when the GGUF check refuses the
// file (gguf.Check), when llama.cpp rejects it, or when the projector's output width is not m's embedding width (a projector made for
// another model).
func OpenProjector(path string, m *Model, p ProjectorParams) (*Projector, error) {
	Init()
	mtmdLogOnce.Do(func() { C.syn_mtmd_log_set() })
	if err := gguf.Check(path); err != nil {
		return nil, err
	}
	params := C.mtmd_context_params_default()
	params.use_gpu = C.bool(p.GPU)
	params.print_timings = C.bool(false)
	if p.Threads > 0 {
		params.n_threads = C.int(p.Threads)
	}
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	c := C.mtmd_init_from_file(cpath, m.c, params)
	if c == nil {
		return nil, errors.New("llama.cpp could not load the projector (not an mmproj GGUF, an unsupported projector type, or one made for another model; the debug log has llama.cpp's reason)")
	}
	return &Projector{c: c}, nil
}

// Close frees the projector.
func (p *Projector) Close() error {
	if p.c != nil {
		C.mtmd_free(p.c)
		p.c = nil
	}
	return nil
}

// MediaMarker is the text that stands for one media item in a prompt given to Tokenize.
func MediaMarker() string { return C.GoString(C.mtmd_default_marker()) }

// Audio reports whether the projector takes audio.
func (p *Projector) Audio() bool { return bool(C.mtmd_support_audio(p.c)) }

// Vision reports whether the projector takes images.
func (p *Projector) Vision() bool { return bool(C.mtmd_support_vision(p.c)) }

// AudioSampleRate is the rate, in Hz, the audio encoder works at (audio is resampled to it);
// 0 when the projector takes no audio.
func (p *Projector) AudioSampleRate() int { return max(int(C.mtmd_get_audio_bitrate(p.c)), 0) }

// MediaPrompt is a prompt tokenized with its media: chunks of text tokens and of image or audio
// embeddings to come. Free releases it.
type MediaPrompt struct {
	c *C.struct_mtmd_input_chunks
	// Tokens is the number of KV-cache cells the prompt fills.
	Tokens int
	// Positions is the number of positions it takes (equal to Tokens except under M-RoPE).
	Positions int
}

// Free releases the chunks.
func (mp *MediaPrompt) Free() {
	if mp.c != nil {
		C.mtmd_input_chunks_free(mp.c)
		mp.c = nil
	}
}

// Media is one item for Tokenize: decoded audio, or a file's bytes.
type Media struct {
	// Samples is mono audio at the projector's AudioSampleRate; nil for a file in Data.
	Samples []float32
	// Data is an image file, or a WAV, MP3 or FLAC file that mtmd decodes and resamples.
	Data []byte
}

// bitmap makes the mtmd bitmap of m; the caller frees it. The C side copies what it reads.
func (p *Projector) bitmap(m Media) *C.struct_mtmd_bitmap {
	switch {
	case len(m.Samples) > 0:
		return C.mtmd_bitmap_init_from_audio(C.size_t(len(m.Samples)), (*C.float)(unsafe.Pointer(&m.Samples[0])))
	case len(m.Data) > 0:
		return C.mtmd_helper_bitmap_init_from_buf(p.c, (*C.uchar)(unsafe.Pointer(&m.Data[0])), C.size_t(len(m.Data)))
	}
	return nil
}

// Tokenize splits prompt at its MediaMarkers and tokenizes the text around them, with each
// media item for the marker at its place. addSpecial adds BOS as Model.Tokenize does. The
// prompt must end with text: its last token gives the logits the generation starts from.
func (p *Projector) Tokenize(prompt string, addSpecial bool, media []Media) (*MediaPrompt, error) {
	bitmaps := make([]*C.struct_mtmd_bitmap, 0, len(media))
	defer func() {
		for _, b := range bitmaps {
			C.mtmd_bitmap_free(b)
		}
	}()
	for i, m := range media {
		b := p.bitmap(m)
		if b == nil {
			return nil, fmt.Errorf("media %d: %w", i, ErrMedia)
		}
		bitmaps = append(bitmaps, b)
	}
	ctext := C.CString(prompt)
	defer C.free(unsafe.Pointer(ctext))
	text := C.struct_mtmd_input_text{text: ctext, add_special: C.bool(addSpecial), parse_special: C.bool(true)}
	chunks := C.mtmd_input_chunks_init()
	// bitmaps lives in Go memory and holds C pointers only: cgo allows passing it.
	var first **C.struct_mtmd_bitmap
	if len(bitmaps) > 0 {
		first = &bitmaps[0]
	}
	switch code := C.mtmd_tokenize(p.c, chunks, &text, first, C.size_t(len(bitmaps))); code {
	case 0:
	case 1:
		C.mtmd_input_chunks_free(chunks)
		return nil, ErrMarkers
	default:
		C.mtmd_input_chunks_free(chunks)
		return nil, fmt.Errorf("llama.cpp could not preprocess the media (mtmd_tokenize: %d): %w", int(code), ErrMedia)
	}
	mp := &MediaPrompt{
		c:         chunks,
		Tokens:    int(C.mtmd_helper_get_n_tokens(chunks)),
		Positions: int(C.mtmd_helper_get_n_pos(chunks)),
	}
	n := C.mtmd_input_chunks_size(chunks)
	if n == 0 || C.mtmd_input_chunk_get_type(C.mtmd_input_chunks_get(chunks, n-1)) != C.MTMD_INPUT_CHUNK_TYPE_TEXT {
		mp.Free()
		return nil, errors.New("the prompt ends with a media item: it must end with text (the chat template's generation prompt)")
	}
	return mp, nil
}

// Eval decodes the whole prompt into sequence seq of c from position pos: text chunks in
// batches of up to batchSize tokens, media chunks encoded by the projector and their embeddings
// decoded (with the non-causal attention or M-RoPE positions the model needs). It returns the
// position after the prompt. The logits of the prompt's last token are then output -1 of c,
// for Sampler.Sample. On an error the sequence holds part of the prompt: the caller removes it.
// SetAbort stops the decodes (ErrAborted, or ErrNoKVSlot when a media decode was stopped); the
// encoder itself runs to the end of the item.
func (p *Projector) Eval(c *Context, mp *MediaPrompt, pos, seq, batchSize int) (int, error) {
	var next C.llama_pos
	code := C.mtmd_helper_eval_chunks(p.c, c.c, mp.c, C.llama_pos(pos), C.llama_seq_id(seq), C.int32_t(batchSize), C.bool(true), &next)
	switch code {
	case 0:
		return int(next), nil
	case 1:
		return 0, ErrNoKVSlot
	case 2:
		return 0, ErrAborted
	default:
		return 0, fmt.Errorf("llama.cpp could not evaluate the media prompt (code %d)", int(code))
	}
}
