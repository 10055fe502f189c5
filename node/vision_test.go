package node_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"

	"github.com/ekisa-team/syn4pse/internal/tinygguf"
	"github.com/ekisa-team/syn4pse/node"
	"github.com/ekisa-team/syn4pse/node/config"
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

// An image part may name an http(s) URL only where server.fetch_image_urls is on: the node then
// fetches it (here from a server on loopback) and counts it as the same image sent inline;
// elsewhere, and for a URL that holds no image, the answer is a 400 that says what to do.
func TestImageURLsFetchedOnlyWhenAllowed(t *testing.T) {
	projector := filepath.Join(t.TempDir(), "mmproj.gguf")
	if err := tinygguf.WriteVisionProjector(projector, 4); err != nil {
		t.Fatal(err)
	}
	dataURL := pngDataURL(t, 24, 24)
	png, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(dataURL, "data:image/png;base64,"))
	images := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/cat.png":
			w.Write(png)
		case "/page.html":
			w.Write([]byte("<html><body>not an image</body></html>"))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(images.Close)

	viewer := tinyDecl("viewer")
	viewer.Projector = projector
	start := func(fetch bool) string {
		cfg := &config.Config{DataDir: t.TempDir(), Server: config.Server{Host: "127.0.0.1", ShutdownTimeout: 10 * time.Second, FetchImageURLs: fetch},
			Log: config.Log{Level: "info", Format: "text"}, Lifecycle: config.Lifecycle{KeepAlive: 5 * time.Minute}, Models: []config.Model{viewer}}
		n, err := node.Start(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { n.Shutdown(context.Background()) })
		return n.HTTPAddr()
	}
	chat := func(addr, url string) (*openai.ChatCompletion, error) {
		client := openaiClient("http://" + addr)
		return client.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{
			Model: "viewer",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage([]openai.ChatCompletionContentPartUnionParam{
				openai.TextContentPart("Describe:"), openai.ImageContentPart(openai.ChatCompletionContentPartImageImageURLParam{URL: url})})},
			MaxTokens: openai.Int(4), Seed: openai.Int(1),
		})
	}
	fetching, refusing := start(true), start(false)

	inline, err := chat(fetching, dataURL)
	if err != nil {
		t.Fatal(err)
	}
	fetched, err := chat(fetching, images.URL+"/cat.png")
	if err != nil {
		t.Fatalf("fetched image: %v", err)
	}
	if fetched.Usage.PromptTokens != inline.Usage.PromptTokens {
		t.Errorf("fetched image: %d prompt tokens, inline %d", fetched.Usage.PromptTokens, inline.Usage.PromptTokens)
	}
	for _, tc := range []struct{ addr, url, want string }{
		{refusing, images.URL + "/cat.png", "server.fetch_image_urls"},
		{fetching, images.URL + "/page.html", "not an image"},
		{fetching, images.URL + "/missing.png", "404"},
	} {
		_, err := chat(tc.addr, tc.url)
		var apiErr *openai.Error
		if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest || !strings.Contains(apiErr.Message, tc.want) {
			t.Errorf("%s: %v; want 400 mentioning %q", tc.url, err, tc.want)
		}
	}
}

// Image positions count in the context check: a prompt that fits as text but not with its image
// is a 400 that states the limit.
func TestImageCountsInTheContext(t *testing.T) {
	projector := filepath.Join(t.TempDir(), "mmproj.gguf")
	if err := tinygguf.WriteVisionProjector(projector, 4); err != nil {
		t.Fatal(err)
	}
	viewer := tinyDecl("viewer")
	viewer.Projector, viewer.ContextLength = projector, 32
	n := startNode(t, viewer)
	client := openaiClient("http://" + n.HTTPAddr())
	ask := func(parts ...openai.ChatCompletionContentPartUnionParam) error {
		_, err := client.Chat.Completions.New(t.Context(), openai.ChatCompletionNewParams{Model: "viewer",
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage(parts)}, MaxTokens: openai.Int(2)})
		return err
	}
	if err := ask(openai.TextContentPart("Describe:")); err != nil {
		t.Fatalf("text alone (24 tokens of 32): %v", err)
	}
	err := ask(openai.TextContentPart("Describe:"), openai.ImageContentPart(openai.ChatCompletionContentPartImageImageURLParam{URL: pngDataURL(t, 8, 8)}))
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusBadRequest || !strings.Contains(apiErr.Message, "32") {
		t.Errorf("text and an image (40 positions of 32): %v", err)
	}
}
