package node_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openai/openai-go/v3"

	"github.com/ekisa-team/syn4pse/internal/tinygguf"
)

// pngDataURL is a w×h gradient as a data: URL, as the SDKs send a local image.
func pngDataURL(t *testing.T, w, h int) string {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{uint8(255 * x / w), uint8(255 * y / h), 64, 255})
		}
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return "data:image/png;base64," + base64.StdEncoding.EncodeToString(b.Bytes())
}

// A vision LLM (the tiny model with a generated LLaVA projector, through llama.cpp's mtmd)
// answers the official SDK's chat with image_url parts, one or two, counting the images'
// positions in usage; /v1/models says it takes images; an image to a text-only model is a 400
// saying it has no vision.
func TestChatWithImages(t *testing.T) {
	projector := filepath.Join(t.TempDir(), "mmproj.gguf")
	if err := tinygguf.WriteVisionProjector(projector, 4); err != nil {
		t.Fatal(err)
	}
	viewer := tinyDecl("viewer")
	viewer.Projector = projector
	n := startNode(t, viewer, tinyDecl("tiny"))
	client := openaiClient("http://" + n.HTTPAddr())
	chat := func(model string, images ...string) (*openai.ChatCompletion, error) {
		parts := []openai.ChatCompletionContentPartUnionParam{openai.TextContentPart("Describe:")}
		for _, url := range images {
			parts = append(parts, openai.ImageContentPart(openai.ChatCompletionContentPartImageImageURLParam{URL: url}))
		}
		return client.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{
			Model:     model,
			Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage(parts)},
			MaxTokens: openai.Int(6),
			Seed:      openai.Int(1),
		})
	}
	var prompt []int64
	for _, images := range [][]string{nil, {pngDataURL(t, 24, 16)}, {pngDataURL(t, 24, 16), pngDataURL(t, 64, 64)}} {
		res, err := chat("viewer", images...)
		if err != nil {
			t.Fatalf("%d images: %v", len(images), err)
		}
		if res.Usage.CompletionTokens != 6 || len(res.Choices) != 1 || res.Choices[0].Message.Content == "" {
			t.Fatalf("%d images: usage %+v, choices %+v", len(images), res.Usage, res.Choices)
		}
		prompt = append(prompt, res.Usage.PromptTokens)
	}
	// Each image fills VisionImageTokens positions, and its marker splits the text a little.
	for i := 1; i < len(prompt); i++ {
		if d := prompt[i] - prompt[i-1]; d < tinygguf.VisionImageTokens || d > tinygguf.VisionImageTokens+3 {
			t.Errorf("prompt tokens with 0, 1, 2 images: %v: want about %d more an image", prompt, tinygguf.VisionImageTokens)
		}
	}
	t.Logf("prompt tokens with 0, 1, 2 images: %v", prompt)

	model, err := client.Models.Get(t.Context(), "viewer")
	if err != nil || model.JSON.ExtraFields["inputs"].Raw() != `["text","image"]` {
		t.Errorf("/v1/models/viewer inputs: %v %v", model.JSON.ExtraFields["inputs"].Raw(), err)
	}
	_, err = chat("tiny", pngDataURL(t, 8, 8))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest ||
		!strings.Contains(apiErr.Message, "no vision") || !strings.Contains(apiErr.Message, "mmproj") {
		t.Errorf("image to a text-only model: %v", err)
	}
}
