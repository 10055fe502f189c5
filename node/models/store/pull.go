package store

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/ekisa-team/syn4pse/engine"
	ggufcheck "github.com/ekisa-team/syn4pse/internal/gguf"
)

// PullRequest says what to pull.
type PullRequest struct {
	// Name is the model's name in the store.
	Name string
	// Source is hf://OWNER/REPO/FILE[@REVISION] or an http(s) URL.
	Source string
	// SHA256 is the expected digest, hex or "sha256:<hex>"; empty trusts the digest the
	// source states (Hugging Face's ETag) or, failing that, records the one computed.
	SHA256 string
	// Modality is "llm" when empty; llm and embedding models must be GGUF files.
	Modality string
	// Engine is engine.DefaultEngine when empty.
	Engine string
}

// retryPolicy says how a pull rides out a flaky source.
type retryPolicy struct {
	attempts   int           // consecutive failures without progress before giving up
	backoff    time.Duration // first wait between attempts, doubled after each failure
	maxBackoff time.Duration
	idle       time.Duration // a body that sends nothing this long is dropped and resumed
}

var defaultRetry = retryPolicy{attempts: 5, backoff: 500 * time.Millisecond, maxBackoff: 8 * time.Second, idle: time.Minute}

// Pull downloads the model file of req.Source into the store and writes its manifest,
// reporting progress to progress (which may be nil) from one goroutine at a time, never after
// Pull returns. The download resumes what an interrupted pull left, retries a dropped
// connection from where it stopped, and verifies the sha256 before the file enters blobs/. A
// model whose blob is already present is not downloaded again.
func (s *Store) Pull(ctx context.Context, req PullRequest, progress func(Progress)) (Manifest, error) {
	m, err := s.pull(ctx, req, progress)
	if err != nil {
		return Manifest{}, fmt.Errorf("pull %s: %w", req.Name, err)
	}
	return m, nil
}

func (s *Store) pull(ctx context.Context, req PullRequest, progress func(Progress)) (Manifest, error) {
	if err := checkName(req.Name); err != nil {
		return Manifest{}, err
	}
	src, err := ResolveSource(req.Source)
	if err != nil {
		return Manifest{}, err
	}
	var expect string
	if req.SHA256 != "" {
		if expect, err = parseDigest(req.SHA256); err != nil {
			return Manifest{}, err
		}
	}
	m := Manifest{Name: req.Name, Modality: cmp.Or(req.Modality, "llm"), Engine: cmp.Or(req.Engine, engine.DefaultEngine), Source: req.Source}
	rep := newReporter(progress, src)
	defer rep.close()
	rep.emit(StatusResolving)

	// The partial file is named for what it will be when known, so any writer of the same
	// blob (a peer transfer too) resumes it; else for the URL.
	key := blobName(expect)
	if expect == "" {
		urlSum := sha256.Sum256([]byte(src))
		key = "url-" + hex.EncodeToString(urlSum[:16])
	}
	unlock, err := s.lockKey(ctx, key)
	if err != nil {
		return Manifest{}, err
	}
	defer unlock()

	d := &download{s: s, url: src, expect: expect, gguf: m.Modality == "llm" || m.Modality == "embeddings" || m.Modality == "embedding", rep: rep}
	pb, err := d.run(ctx, key)
	if err != nil {
		return Manifest{}, err
	}
	rep.emit(StatusVerifying)
	if pb != nil && d.gguf {
		// A file llama.cpp would misread never enters the store.
		if err := ggufcheck.Check(pb.path); err != nil {
			pb.Discard()
			return Manifest{}, fmt.Errorf("%s: %w", src, err)
		}
	}
	s.mu.Lock()
	var file File
	if pb != nil {
		file, err = pb.commitLocked()
	} else if f, ok := s.blobFile(d.expect); ok {
		file = f
	} else {
		err = fmt.Errorf("blob sha256:%s: %w (removed meanwhile)", d.expect, ErrNotFound)
	}
	if err == nil {
		m.Files, m.PulledAt = []File{file}, time.Now().UTC()
		_, err = s.putManifestLocked(m)
	}
	s.mu.Unlock()
	if errors.Is(err, ErrDigestMismatch) && req.SHA256 == "" {
		err = fmt.Errorf("%w; the expected digest is the one the source stated in its ETag", err)
	}
	if err != nil {
		return Manifest{}, err
	}
	rep.set(file.Size, file.Digest)
	rep.setCompleted(file.Size)
	rep.emit(StatusDone)
	return m, nil
}

// download fetches one URL into one partial file, over as many requests as it takes.
type download struct {
	s      *Store
	url    string
	expect string // hex sha256 the bytes must have, "" until known
	gguf   bool
	rep    *reporter
	note   partialNote
	found  bool // the source stated a digest the store already has
}

// run returns the partial file complete and ready to commit, or nil when the blob d.expect
// is already in the store.
func (d *download) run(ctx context.Context, key string) (*PartialBlob, error) {
	if _, ok := d.s.blobFile(d.expect); ok && d.expect != "" {
		return nil, nil
	}
	pb, err := d.s.openPartial(key, d.expect, -1)
	if err != nil {
		return nil, err
	}
	if d.note = pb.readNote(); d.note.URL != d.url {
		d.note = partialNote{URL: d.url}
	}
	// Bytes of unknown digest are resumed only while the source vouches they are the same
	// (If-Range); known-digest bytes are checked at the end anyway.
	stale := d.expect == "" && d.note.Validator == ""
	if pb.offset > 0 && (stale || (d.gguf && !bytes.HasPrefix(pb.head, []byte("GGUF")))) {
		if err := pb.reset(); err != nil {
			pb.Abort()
			return nil, err
		}
	}
	if pb.offset > 0 {
		slog.Info("resuming model download", "url", d.url, "offset", pb.offset)
	}
	d.rep.setCompleted(pb.offset)
	failures := 0
	for {
		before := pb.offset
		err := d.fetch(ctx, pb)
		if err == nil {
			break
		}
		if pb.offset > before {
			failures = 0
		}
		failures++
		if ctx.Err() != nil || isPermanent(err) {
			d.drop(pb, err)
			return nil, err
		}
		if failures >= d.s.retry.attempts {
			d.drop(pb, err)
			return nil, fmt.Errorf("giving up after %d attempts without progress (%d bytes kept: pull again to resume): %w",
				failures, pb.offset, err)
		}
		wait := min(d.s.retry.backoff<<(failures-1), d.s.retry.maxBackoff)
		slog.Warn("model download interrupted, resuming", "url", d.url, "offset", pb.offset, "retry_in", wait, "err", err)
		if err := sleep(ctx, wait); err != nil {
			d.drop(pb, err)
			return nil, err
		}
	}
	if d.found {
		pb.Discard()
		return nil, nil
	}
	return pb, nil
}

// drop ends a failed download: bad bytes and empty files go, the rest stays for a resume.
func (d *download) drop(pb *PartialBlob, err error) {
	if pb.offset == 0 || errors.Is(err, ErrNotGGUF) || errors.Is(err, ErrDigestMismatch) {
		pb.Discard()
		return
	}
	pb.Abort()
}

// fetch makes one request and appends its body to pb.
func (d *download) fetch(ctx context.Context, pb *PartialBlob) error {
	reqCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	idle := time.AfterFunc(d.s.retry.idle, cancel)
	defer idle.Stop()

	req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, d.url, nil)
	if err != nil {
		return permanent(err)
	}
	req.Header.Set("User-Agent", "syn4pse")
	if auth := authorization(d.url); auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if pb.offset > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", pb.offset))
		if d.note.Validator != "" {
			req.Header.Set("If-Range", d.note.Validator)
		}
	}
	resp, err := d.s.client.Do(req)
	if err != nil {
		return d.explain(ctx, err)
	}
	defer resp.Body.Close()

	total, complete, err := d.position(resp, pb)
	if err != nil {
		return err
	}
	if sum := sourceDigest(resp); d.expect == "" && sum != "" {
		d.expect, pb.expect = sum, sum
		if _, ok := d.s.blobFile(sum); ok {
			d.found = true
			return nil
		}
	}
	if d.expect != "" {
		d.rep.set(total, "sha256:"+d.expect)
	} else {
		d.rep.set(total, "")
	}
	if v := validator(resp); v != d.note.Validator {
		d.note.Validator = v
		if err := pb.writeNote(d.note); err != nil {
			return permanent(err)
		}
	}
	if complete {
		return nil
	}
	d.rep.emit(StatusDownloading)
	if d.gguf && pb.offset == 0 {
		if err := d.checkGGUF(ctx, resp, pb); err != nil {
			return err
		}
	}
	err = copyInto(reqCtx, pb, resp.Body, func(n int) {
		d.rep.add(n)
		idle.Reset(d.s.retry.idle)
	})
	if err != nil {
		return d.explain(ctx, err)
	}
	if total > 0 && pb.offset < total {
		return fmt.Errorf("%s: body ended at byte %d of %d: %w", d.url, pb.offset, total, io.ErrUnexpectedEOF)
	}
	return nil
}

// position checks that the response continues pb where it stops, restarting pb when the
// source sends the whole file, and returns the file's total size (-1 if unknown) and whether
// pb already holds all of it.
func (d *download) position(resp *http.Response, pb *PartialBlob) (total int64, complete bool, err error) {
	offset := pb.offset
	switch resp.StatusCode {
	case http.StatusOK:
		if offset > 0 {
			slog.Info("source ignores range requests or the file changed: downloading from the start", "url", d.url)
			if err := d.restart(pb); err != nil {
				return 0, false, err
			}
		}
		return resp.ContentLength, false, nil
	case http.StatusPartialContent:
		start, total, ok := parseContentRange(resp.Header.Get("Content-Range"))
		if !ok || start != offset {
			if err := d.restart(pb); err != nil {
				return 0, false, err
			}
			return 0, false, fmt.Errorf("%s: asked for bytes from %d, got Content-Range %q: starting over",
				d.url, offset, resp.Header.Get("Content-Range"))
		}
		return total, false, nil
	case http.StatusRequestedRangeNotSatisfiable:
		if _, total, ok := parseContentRange(resp.Header.Get("Content-Range")); ok && offset > 0 && total == offset {
			return total, true, nil
		}
		if err := d.restart(pb); err != nil {
			return 0, false, err
		}
		return 0, false, fmt.Errorf("%s: the source cannot continue at byte %d: starting over", d.url, offset)
	default:
		return 0, false, statusError(resp, d.url)
	}
}

func (d *download) restart(pb *PartialBlob) error {
	if err := pb.reset(); err != nil {
		return permanent(err)
	}
	d.rep.setCompleted(0)
	return nil
}

// checkGGUF reads the first bytes of the body and refuses anything but a GGUF file, such as
// the HTML page a wrong URL or a login wall returns with status 200.
func (d *download) checkGGUF(ctx context.Context, resp *http.Response, pb *PartialBlob) error {
	head := make([]byte, headSize)
	n, err := io.ReadFull(resp.Body, head)
	head = head[:n]
	wholeBody := errors.Is(err, io.EOF) || resp.ContentLength == int64(n)
	if err != nil && n < 4 && !wholeBody {
		return d.explain(ctx, err)
	}
	if !bytes.HasPrefix(head, []byte("GGUF")) {
		return permanent(fmt.Errorf("%s: %w (got %q, content-type %q): is the URL the file itself rather than its web page?",
			d.url, ErrNotGGUF, head, resp.Header.Get("Content-Type")))
	}
	if _, err := pb.Write(head); err != nil {
		return permanent(err)
	}
	d.rep.add(n)
	return nil
}

// explain says why a request failed when the idle timer, not the caller, cancelled it.
func (d *download) explain(ctx context.Context, err error) error {
	if ctx.Err() == nil && errors.Is(err, context.Canceled) {
		return fmt.Errorf("%s: no data for %s", d.url, d.s.retry.idle)
	}
	return err
}

// sleep waits for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
