package store

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// hfTokenEnv names the environment variable holding a Hugging Face access token, sent to
// huggingface.co hosts only, for gated and private repositories.
const hfTokenEnv = "HF_TOKEN"

// ResolveSource turns hf://OWNER/REPO/FILE[@REVISION] into
// https://huggingface.co/OWNER/REPO/resolve/REVISION/FILE (REVISION defaults to "main"; FILE
// may sit in folders); http and https URLs pass through. Anything else is an error saying
// what is accepted.
func ResolveSource(source string) (string, error) {
	const accepted = "use hf://OWNER/REPO/FILE[@REVISION] or an http(s) URL"
	if rest, ok := strings.CutPrefix(source, "hf://"); ok {
		revision := "main"
		if i := strings.LastIndex(rest, "@"); i >= 0 {
			rest, revision = rest[:i], rest[i+1:]
		}
		parts := strings.Split(rest, "/")
		if len(parts) < 3 || revision == "" || strings.HasSuffix(rest, "/") {
			return "", fmt.Errorf("source %q: want hf://OWNER/REPO/FILE[@REVISION]", source)
		}
		for i, part := range parts {
			if part == "" || part == "." || part == ".." {
				return "", fmt.Errorf("source %q: empty or relative path element in hf://OWNER/REPO/FILE", source)
			}
			parts[i] = url.PathEscape(part)
		}
		file := strings.Join(parts[2:], "/")
		return fmt.Sprintf("https://huggingface.co/%s/%s/resolve/%s/%s", parts[0], parts[1], url.PathEscape(revision), file), nil
	}
	u, err := url.Parse(source)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("unsupported source %q: %s", source, accepted)
	}
	return source, nil
}

// newHTTPClient bounds connecting and waiting for headers, never the whole download: a model
// takes as long as it takes; a stalled body is caught by the pull's own idle timer.
func newHTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   15 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		ExpectContinueTimeout: time.Second,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConns:          10,
	}}
}

// isHuggingFace reports whether rawURL is on huggingface.co or one of its subdomains.
func isHuggingFace(rawURL string) bool {
	u, err := url.Parse(rawURL)
	if err != nil {
		return false
	}
	host := strings.ToLower(u.Hostname())
	return host == "huggingface.co" || strings.HasSuffix(host, ".huggingface.co")
}

// authorization returns the Authorization header for rawURL: the HF_TOKEN bearer for
// huggingface.co hosts, nothing for others. Go's client drops it on redirects off that domain
// (to the CDN's signed URLs).
func authorization(rawURL string) string {
	if tok := strings.TrimSpace(os.Getenv(hfTokenEnv)); tok != "" && isHuggingFace(rawURL) {
		return "Bearer " + tok
	}
	return ""
}

// sourceDigest returns the sha256 the source states for the body, if any: Hugging Face puts
// it, quoted, in X-Linked-Etag on the redirect to its CDN, or in ETag. Headers holding anything
// but 64 hex digits (an md5, an opaque tag) are not digests and are ignored.
func sourceDigest(resp *http.Response) string {
	for r := resp; r != nil; {
		for _, key := range []string{"X-Linked-Etag", "ETag"} {
			tag := strings.Trim(strings.TrimPrefix(r.Header.Get(key), "W/"), `"`)
			if tag = strings.ToLower(tag); isHexDigest(tag) {
				return tag
			}
		}
		if r.Request == nil {
			break
		}
		r = r.Request.Response // the redirect that led to this response
	}
	return ""
}

// validator returns what a resumed request sends in If-Range so the source answers with the
// whole body if it changed: a strong ETag, else Last-Modified.
func validator(resp *http.Response) string {
	if tag := resp.Header.Get("ETag"); tag != "" && !strings.HasPrefix(tag, "W/") {
		return tag
	}
	return resp.Header.Get("Last-Modified")
}

// parseContentRange reads "bytes START-END/TOTAL" (TOTAL may be "*", returned as -1) or
// "bytes */TOTAL" (start -1).
func parseContentRange(v string) (start, total int64, ok bool) {
	spec, ok := strings.CutPrefix(v, "bytes ")
	if !ok {
		return 0, 0, false
	}
	rng, size, ok := strings.Cut(spec, "/")
	if !ok {
		return 0, 0, false
	}
	total = -1
	if size != "*" {
		n, err := strconv.ParseInt(size, 10, 64)
		if err != nil {
			return 0, 0, false
		}
		total = n
	}
	if rng == "*" {
		return -1, total, true
	}
	first, _, ok := strings.Cut(rng, "-")
	n, err := strconv.ParseInt(first, 10, 64)
	if !ok || err != nil {
		return 0, 0, false
	}
	return n, total, true
}

// permanentError marks a failure that retrying will not cure.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

func permanent(err error) error { return &permanentError{err} }

func isPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// statusError explains a response that is not the body: what the user can do about it, and
// whether a retry may help (server errors, throttling).
func statusError(resp *http.Response, rawURL string) error {
	switch code := resp.StatusCode; {
	case code == http.StatusNotFound || code == http.StatusGone:
		return permanent(fmt.Errorf("%s: %w (HTTP %s): check the owner, repository, file name and revision",
			rawURL, ErrNotFound, resp.Status))
	case code == http.StatusUnauthorized || code == http.StatusForbidden:
		return permanent(fmt.Errorf("%s: %w (HTTP %s): %s", rawURL, ErrAccessDenied, resp.Status, accessHint(rawURL)))
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		return fmt.Errorf("%s: HTTP %s", rawURL, resp.Status)
	default:
		return permanent(fmt.Errorf("%s: unexpected HTTP %s", rawURL, resp.Status))
	}
}

func accessHint(rawURL string) string {
	switch {
	case !isHuggingFace(rawURL):
		return "the server refused access to the file"
	case authorization(rawURL) == "":
		return "the repository may be gated or private: accept its terms on huggingface.co and set " +
			hfTokenEnv + " to an access token that can read it"
	default:
		return "the repository may be gated or private, and the token in " + hfTokenEnv +
			" cannot read it: accept the repository's terms on huggingface.co with that account, or use another token"
	}
}
