package httpapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Bounds of an image fetched from a URL (server.fetch_image_urls).
const (
	maxImageBytes     = 20 << 20
	imageFetchTimeout = 10 * time.Second
)

// inlineImageURLs replaces the http(s) image URLs of req's messages by data: URLs of what they
// hold, when the node fetches image URLs (server.fetch_image_urls); else such a URL is a 400
// that says how to send the image instead.
func (h *Handler) inlineImageURLs(ctx context.Context, req *chatRequest) error {
	for i := range req.Messages {
		var parts []contentPart
		if json.Unmarshal(req.Messages[i].Content, &parts) != nil {
			continue // a string or null: no image
		}
		changed := false
		for j, p := range parts {
			if p.Type != "image_url" || p.ImageURL == nil || !isWebURL(p.ImageURL.URL) {
				continue
			}
			if !h.FetchImageURLs {
				return status.Errorf(codes.InvalidArgument, "messages[%d].content part %d: this node fetches no image URLs: send the image as a data:image/...;base64 URL, or set server.fetch_image_urls = true", i, j)
			}
			dataURL, err := fetchImage(ctx, p.ImageURL.URL)
			if err != nil {
				return status.Errorf(codes.InvalidArgument, "messages[%d].content part %d: %v", i, j, err)
			}
			parts[j].ImageURL.URL = dataURL
			changed = true
		}
		if changed {
			raw, err := json.Marshal(parts)
			if err != nil {
				return err
			}
			req.Messages[i].Content = raw
		}
	}
	return nil
}

func isWebURL(url string) bool {
	return strings.HasPrefix(url, "http://") || strings.HasPrefix(url, "https://")
}

// imageClient fetches image URLs: bounded in time, a few redirects at most.
var imageClient = &http.Client{
	Timeout: imageFetchTimeout,
	CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= 3 {
			return fmt.Errorf("more than 3 redirects")
		}
		return nil
	},
}

// fetchImage downloads an image (at most maxImageBytes) and returns it as a data: URL.
func fetchImage(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", fmt.Errorf("image URL %q: %v", url, err)
	}
	res, err := imageClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("fetch the image: %v", err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return "", fmt.Errorf("fetch the image: %s answered %s", url, res.Status)
	}
	data, err := io.ReadAll(io.LimitReader(res.Body, maxImageBytes+1))
	if err != nil {
		return "", fmt.Errorf("fetch the image: %v", err)
	}
	if len(data) > maxImageBytes {
		return "", fmt.Errorf("the image at %s is larger than %d MiB", url, maxImageBytes>>20)
	}
	mime := http.DetectContentType(data)
	if !strings.HasPrefix(mime, "image/") {
		return "", fmt.Errorf("%s holds %s, not an image", url, mime)
	}
	return "data:" + mime + ";base64," + base64.StdEncoding.EncodeToString(data), nil
}
