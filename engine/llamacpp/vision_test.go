package llamacpp_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"image"
	"image/color"
	"image/gif"
	"image/jpeg"
	"image/png"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ekisa-team/syn4pse/engine"
	"github.com/ekisa-team/syn4pse/internal/tinygguf"
)

var visionProjector struct {
	once sync.Once
	path string
	err  error
}

// loadVision loads the tiny model with a generated LLaVA projector.
func loadVision(t *testing.T, opts engine.LoadOptions) engine.LLM {
	t.Helper()
	visionProjector.once.Do(func() {
		visionProjector.path = filepath.Join(filepath.Dir(modelPath), "mmproj-vision.gguf")
		visionProjector.err = tinygguf.WriteVisionProjector(visionProjector.path, 1)
	})
	if visionProjector.err != nil {
		t.Fatal(visionProjector.err)
	}
	opts.Projector = visionProjector.path
	began := time.Now()
	llm := load(t, opts)
	t.Logf("model and vision projector loaded in %v", time.Since(began))
	return llm
}

// testImage is a w×h gradient, not square, so the projector pads it.
func testImage(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{uint8(255 * x / w), uint8(255 * y / h), 128, 255})
		}
	}
	return img
}

// encodeImage is img in format: png, jpeg, gif or bmp (the standard library writes no BMP:
// bmpEncode does).
func encodeImage(t *testing.T, format string, img image.Image) []byte {
	t.Helper()
	var b bytes.Buffer
	var err error
	switch format {
	case "png":
		err = png.Encode(&b, img)
	case "jpeg":
		err = jpeg.Encode(&b, img, nil)
	case "gif":
		err = gif.Encode(&b, img, nil)
	case "bmp":
		bmpEncode(&b, img)
	default:
		t.Fatalf("no encoder for %s", format)
	}
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// bmpEncode writes img as a 24-bit bottom-up BMP.
func bmpEncode(b *bytes.Buffer, img image.Image) {
	r := img.Bounds()
	w, h := r.Dx(), r.Dy()
	stride := (3*w + 3) &^ 3
	le := binary.LittleEndian
	b.WriteString("BM")
	for _, v := range []any{uint32(54 + stride*h), uint32(0), uint32(54),
		uint32(40), int32(w), int32(h), uint16(1), uint16(24), uint32(0), uint32(stride * h),
		int32(2835), int32(2835), uint32(0), uint32(0)} {
		binary.Write(b, le, v)
	}
	row := make([]byte, stride)
	for y := h - 1; y >= 0; y-- {
		for x := range w {
			cr, cg, cb, _ := img.At(r.Min.X+x, r.Min.Y+y).RGBA()
			row[3*x], row[3*x+1], row[3*x+2] = byte(cb>>8), byte(cg>>8), byte(cr>>8)
		}
		b.Write(row)
	}
}

func imageRequest(maxTokens int, images ...[]byte) engine.GenerateRequest {
	msg := engine.Message{Role: "user", Content: "What is in"}
	for _, img := range images {
		msg.Content += " " + engine.MediaMarker
		msg.Media = append(msg.Media, engine.Media{Data: img})
	}
	msg.Content += "?"
	return engine.GenerateRequest{Messages: []engine.Message{msg}, Sampling: greedy(), MaxTokens: maxTokens, IgnoreEOS: true}
}

func TestGenerateWithImages(t *testing.T) {
	llm := loadVision(t, engine.LoadOptions{Threads: 2})
	// The same text without the images, and with one: each image adds the same positions,
	// VisionImageTokens of them its embeddings, the rest the text split around its marker.
	_, _, plain := generate(t, llm, imageRequest(1))
	img := testImage(40, 24)
	_, _, one := generate(t, llm, imageRequest(1, encodeImage(t, "png", testImage(8, 8))))
	perImage := one.PromptTokens - plain.PromptTokens
	if perImage < tinygguf.VisionImageTokens || perImage > tinygguf.VisionImageTokens+3 {
		t.Fatalf("an image added %d prompt tokens to %d, want %d and a few of text", perImage, plain.PromptTokens, tinygguf.VisionImageTokens)
	}
	cases := []struct {
		name   string
		images [][]byte
	}{
		{"png", [][]byte{encodeImage(t, "png", img)}},
		{"jpeg", [][]byte{encodeImage(t, "jpeg", img)}},
		{"gif", [][]byte{encodeImage(t, "gif", img)}},
		{"bmp", [][]byte{encodeImage(t, "bmp", img)}},
		{"two images", [][]byte{encodeImage(t, "png", img), encodeImage(t, "jpeg", testImage(64, 64))}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			text, _, res := generate(t, llm, imageRequest(8, c.images...))
			if res.CompletionTokens != 8 || res.FinishReason != engine.FinishLength {
				t.Fatalf("result %+v, want 8 tokens", res)
			}
			want := plain.PromptTokens + len(c.images)*perImage
			if res.PromptTokens != want || res.CachedPromptTokens != 0 {
				t.Fatalf("prompt tokens %d (cached %d), want %d: %d without images, %d an image",
					res.PromptTokens, res.CachedPromptTokens, want, plain.PromptTokens, perImage)
			}
			t.Logf("%d image(s): prompt of %d tokens read in %v, 8 tokens generated in %v: %q",
				len(c.images), res.PromptTokens, res.PromptDuration, res.GenerateDuration, text)
		})
	}
}

func TestImageErrors(t *testing.T) {
	text := load(t, engine.LoadOptions{})
	vision := loadVision(t, engine.LoadOptions{})
	png := encodeImage(t, "png", testImage(8, 8))
	cases := []struct {
		name    string
		llm     engine.LLM
		data    []byte
		want    error
		mention string
	}{
		{"image to a text model", text, png, engine.ErrInvalidRequest, "no vision"},
		{"audio to a vision projector", vision, sineWAV(1), engine.ErrInvalidRequest, "images only"},
		{"not an image", vision, []byte("this is no image at all"), engine.ErrInvalidRequest, "media"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.llm.Generate(t.Context(), imageRequest(2, c.data), func(string) error { return nil })
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.mention) {
				t.Fatalf("err = %v, want %v mentioning %q", err, c.want, c.mention)
			}
		})
	}
}
