package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	ggufcheck "github.com/ekisa-team/syn4pse/internal/gguf"
)

// openStore opens a store in a temp dir, with retries short enough for tests.
func openStore(t testing.TB) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "models"))
	if err != nil {
		t.Fatal(err)
	}
	s.retry.backoff, s.retry.maxBackoff = 10*time.Millisecond, 50*time.Millisecond
	return s
}

// progressLog records the progress events of a pull.
type progressLog struct {
	mu     sync.Mutex
	events []Progress
}

func (l *progressLog) record(p Progress) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, p)
}

func (l *progressLog) all() []Progress {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Progress(nil), l.events...)
}

// checkBlob fails unless the store holds data under its digest.
func checkBlob(t *testing.T, s *Store, data []byte) {
	t.Helper()
	path, ok := s.BlobPath("sha256:" + sha(data))
	if !ok {
		t.Fatalf("blob sha256:%s missing", sha(data))
	}
	got, err := os.ReadFile(path)
	if err != nil || sha(got) != sha(data) {
		t.Fatalf("blob at %s: %d bytes, sha256 %s, err %v; want %d bytes, %s", path, len(got), sha(got), err, len(data), sha(data))
	}
}

func TestPull(t *testing.T) {
	data := gguf(3<<20 + 123)
	half := len(data) / 2
	tests := []struct {
		name      string
		src       *fakeSource
		sha256    string
		wantRange string // Range of the second request; "" when one request must do
		restarts  bool   // the count of bytes may go back to 0
	}{
		{name: "digest from the ETag", src: &fakeSource{etag: true}},
		{name: "digest given", src: &fakeSource{}, sha256: sha(data)},
		{name: "digest given as sha256:HEX", src: &fakeSource{etag: true}, sha256: "sha256:" + strings.ToUpper(sha(data))},
		{name: "digest computed", src: &fakeSource{}},
		{name: "cut half-way resumes with Range", src: &fakeSource{etag: true, cutAfter: half}, wantRange: fmt.Sprintf("bytes=%d-", half)},
		{name: "cut with digest given resumes", src: &fakeSource{cutAfter: 1 << 20}, sha256: sha(data), wantRange: "bytes=1048576-"},
		{name: "cut and Range ignored starts over", src: &fakeSource{etag: true, cutAfter: half, ignoreRange: true},
			wantRange: fmt.Sprintf("bytes=%d-", half), restarts: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t)
			tt.src.data = data
			url := tt.src.serve(t)
			var log progressLog
			m, err := s.Pull(t.Context(), PullRequest{Name: "tiny:q8", Source: url, SHA256: tt.sha256}, log.record)
			if err != nil {
				t.Fatal(err)
			}
			want := File{Digest: "sha256:" + sha(data), Size: int64(len(data)), Role: RoleModel}
			if len(m.Files) != 1 || m.Files[0] != want || m.Name != "tiny:q8" || m.Modality != "llm" || m.Engine != "llama_cpp" || m.Source != url {
				t.Fatalf("manifest = %+v, want one file %+v", m, want)
			}
			checkBlob(t, s, data)
			if got, err := s.Manifest("tiny:q8"); err != nil || got.Files[0] != want {
				t.Fatalf("Manifest = %+v, %v", got, err)
			}
			if files := storeFiles(t, filepath.Join(s.root, partialDir)); len(files) != 0 {
				t.Fatalf("partial files left: %v", files)
			}

			reqs := tt.src.requestLog()
			if tt.wantRange == "" {
				if len(reqs) != 1 {
					t.Fatalf("%d requests, want 1", len(reqs))
				}
			} else if len(reqs) != 2 || reqs[1].Get("Range") != tt.wantRange {
				t.Fatalf("requests %v, want a second one with Range %q", reqs, tt.wantRange)
			}
			checkEvents(t, log.all(), int64(len(data)), !tt.restarts)
		})
	}
}

// checkEvents checks a successful pull's progress: it starts resolving, downloads with a
// known total, and ends done with every byte, the count never going back when monotonic.
func checkEvents(t *testing.T, events []Progress, size int64, monotonic bool) {
	t.Helper()
	if len(events) < 3 || events[0].Status != StatusResolving {
		t.Fatalf("events = %+v, want resolving first", events)
	}
	last := events[len(events)-1]
	if last.Status != StatusDone || last.Completed != size || last.Total != size || last.Digest == "" {
		t.Fatalf("last event = %+v, want done with %d of %d bytes and a digest", last, size, size)
	}
	sawDownloading := false
	for i, e := range events {
		if e.Status == StatusDownloading {
			sawDownloading = true
			if e.Total != size {
				t.Errorf("event %d = %+v: total %d, want %d", i, e, e.Total, size)
			}
		}
		if monotonic && i > 0 && e.Completed < events[i-1].Completed {
			t.Errorf("event %d: completed went back from %d to %d", i, events[i-1].Completed, e.Completed)
		}
		if e.From == "" {
			t.Errorf("event %d has no From", i)
		}
	}
	if !sawDownloading {
		t.Errorf("no downloading event in %+v", events)
	}
}

func TestPullFails(t *testing.T) {
	data := gguf(1 << 20)
	other := sha([]byte("another model"))
	tests := []struct {
		name     string
		src      *fakeSource
		req      PullRequest
		wantErr  error
		wantText []string
	}{
		{name: "wrong expected digest", src: &fakeSource{}, req: PullRequest{SHA256: other},
			wantErr: ErrDigestMismatch, wantText: []string{"sha256:" + other, "sha256:" + sha(data)}},
		{name: "ETag that is not the body's digest", src: &fakeSource{etagValue: `"` + other + `"`},
			wantErr: ErrDigestMismatch, wantText: []string{"sha256:" + other, "sha256:" + sha(data), "ETag"}},
		{name: "404", src: &fakeSource{status: http.StatusNotFound, body: "Entry not found"},
			wantErr: ErrNotFound, wantText: []string{"/repo/model.gguf: not found (HTTP 404 Not Found)"}},
		{name: "403", src: &fakeSource{status: http.StatusForbidden},
			wantErr: ErrAccessDenied, wantText: []string{"HTTP 403 Forbidden", "refused access"}},
		{name: "HTML page instead of the file", src: &fakeSource{body: "<!DOCTYPE html><html>Sign in</html>", contentType: "text/html; charset=utf-8"},
			wantErr: ErrNotGGUF, wantText: []string{"not a GGUF file", `got "<!DOCTYPE html><"`, "text/html"}},
		{name: "empty body", src: &fakeSource{body: " "}, wantErr: ErrNotGGUF},
		{name: "crafted GGUF", src: &fakeSource{body: "GGUF\x03\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00" + strings.Repeat("\x00", 64)},
			wantErr: ggufcheck.ErrInvalid, wantText: []string{"tensor count 1099511627776"}},
		{name: "server errors until giving up", src: &fakeSource{status: http.StatusServiceUnavailable},
			wantText: []string{"giving up after 5 attempts", "HTTP 503"}},
		{name: "bad name", req: PullRequest{Name: "../etc/passwd"}, wantText: []string{"invalid model name"}},
		{name: "bad digest", req: PullRequest{SHA256: "abc"}, wantText: []string{"invalid digest"}},
		{name: "bad source", req: PullRequest{Source: "s3://bucket/m.gguf"}, wantText: []string{"unsupported source"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openStore(t)
			src := cmp.Or(tt.src, &fakeSource{})
			src.data = data
			url := src.serve(t)
			req := tt.req
			req.Name = cmp.Or(req.Name, "m")
			req.Source = cmp.Or(req.Source, url)
			_, err := s.Pull(t.Context(), req, nil)
			if err == nil {
				t.Fatal("pull succeeded")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %q does not wrap %q", err, tt.wantErr)
			}
			for _, text := range tt.wantText {
				if !strings.Contains(err.Error(), text) {
					t.Errorf("error %q does not say %q", err, text)
				}
			}
			if files := storeFiles(t, s.root); len(files) != 0 {
				t.Errorf("files left behind: %v", files)
			}
			if list, err := s.List(); err != nil || len(list) != 0 {
				t.Errorf("List = %v, %v; want nothing", list, err)
			}
		})
	}
}

func TestAccessHint(t *testing.T) {
	const hf = "https://huggingface.co/org/gated/resolve/main/m.gguf"
	resp := &http.Response{StatusCode: http.StatusUnauthorized, Status: "401 Unauthorized"}
	t.Setenv(hfTokenEnv, "")
	if err := statusError(resp, hf); !errors.Is(err, ErrAccessDenied) || !strings.Contains(err.Error(), "gated") || !strings.Contains(err.Error(), "set HF_TOKEN") {
		t.Errorf("without a token: %v", err)
	}
	t.Setenv(hfTokenEnv, "hf_x")
	if err := statusError(resp, hf); !strings.Contains(err.Error(), "the token in HF_TOKEN cannot read it") {
		t.Errorf("with a token: %v", err)
	}
}

func TestPullSendsNoTokenOffHuggingFace(t *testing.T) {
	t.Setenv(hfTokenEnv, "hf_secret")
	s := openStore(t)
	src := &fakeSource{data: gguf(1 << 16)}
	if _, err := s.Pull(t.Context(), PullRequest{Name: "m", Source: src.serve(t)}, nil); err != nil {
		t.Fatal(err)
	}
	if auth := src.requestLog()[0].Get("Authorization"); auth != "" {
		t.Fatalf("loopback source got Authorization %q", auth)
	}
}

// TestPullResumesAfterCrash leaves what a process killed mid-download leaves, a partial
// file and temp files, and checks that a new Store resumes from the partial file's size.
func TestPullResumesAfterCrash(t *testing.T) {
	data := gguf(4 << 20)
	const stopAt = 1<<20 + 17
	tests := []struct {
		name   string
		etag   bool
		sha256 string
	}{
		{name: "digest from the ETag", etag: true},
		{name: "digest given", sha256: sha(data)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			src := &fakeSource{data: data, etag: tt.etag, stallAfter: stopAt}
			req := PullRequest{Name: "m", Source: src.serve(t), SHA256: tt.sha256}

			crashed, err := Open(root)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			_, err = crashed.Pull(ctx, req, func(p Progress) {
				if p.Completed >= stopAt {
					cancel()
				}
			})
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("interrupted pull: %v, want context.Canceled", err)
			}
			if _, err := crashed.Manifest("m"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("Manifest after the interrupted pull: %v, want ErrNotFound", err)
			}
			leftovers := []string{
				filepath.Join(root, manifestsDir, tempPrefix+"m.json-123"),
				filepath.Join(root, blobsDir, tempPrefix+"sha256-456"),
			}
			for _, path := range leftovers {
				if err := os.WriteFile(path, []byte(`{"name":"m","files":[]}`), 0o644); err != nil {
					t.Fatal(err)
				}
			}

			s, err := Open(root)
			if err != nil {
				t.Fatal(err)
			}
			s.retry = crashed.retry
			for _, path := range leftovers {
				if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("%s survived Open: %v", path, err)
				}
			}
			var listedEarly []Manifest
			m, err := s.Pull(t.Context(), req, func(p Progress) {
				if p.Status != StatusDone {
					list, _ := s.List()
					listedEarly = append(listedEarly, list...)
				}
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(listedEarly) != 0 {
				t.Errorf("List showed %v before the pull completed", listedEarly)
			}
			reqs := src.requestLog()
			if got := reqs[len(reqs)-1].Get("Range"); got != fmt.Sprintf("bytes=%d-", stopAt) {
				t.Errorf("resumed with Range %q, want bytes=%d-", got, stopAt)
			}
			if tt.etag && reqs[len(reqs)-1].Get("If-Range") != `"`+sha(data)+`"` {
				t.Errorf("resumed with If-Range %q, want the ETag", reqs[len(reqs)-1].Get("If-Range"))
			}
			checkBlob(t, s, data)
			if list, err := s.List(); err != nil || len(list) != 1 || list[0].Files[0] != m.Files[0] {
				t.Errorf("List = %+v, %v; want the pulled model", list, err)
			}
			if files := storeFiles(t, filepath.Join(root, partialDir)); len(files) != 0 {
				t.Errorf("partial files left: %v", files)
			}
		})
	}
}

func TestPullPresentBlob(t *testing.T) {
	data := gguf(1 << 20)
	src := &fakeSource{data: data, etag: true}
	url := src.serve(t)
	s := openStore(t)
	if _, err := s.Pull(t.Context(), PullRequest{Name: "a", Source: url}, nil); err != nil {
		t.Fatal(err)
	}

	// Digest given: no request at all.
	var log progressLog
	if _, err := s.Pull(t.Context(), PullRequest{Name: "b", Source: url, SHA256: sha(data)}, log.record); err != nil {
		t.Fatal(err)
	}
	if n := len(src.requestLog()); n != 1 {
		t.Fatalf("%d requests, want none after the first pull", n-1)
	}
	// Digest from the ETag: one request, its body left unread.
	if _, err := s.Pull(t.Context(), PullRequest{Name: "c", Source: url}, log.record); err != nil {
		t.Fatal(err)
	}
	for _, e := range log.all() {
		if e.Status == StatusDownloading {
			t.Fatalf("downloaded a present blob: %+v", e)
		}
	}
	if last := log.all()[len(log.all())-1]; last.Status != StatusDone || last.Completed != int64(len(data)) || last.Total != int64(len(data)) {
		t.Fatalf("last event = %+v", last)
	}
	if list, _ := s.List(); len(list) != 3 {
		t.Fatalf("List = %+v, want a, b, c", list)
	}
}

func TestPullConcurrentSameBlob(t *testing.T) {
	data := gguf(1 << 20)
	src := &fakeSource{data: data, chunkDelay: time.Millisecond}
	url := src.serve(t)
	s := openStore(t)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = s.Pull(t.Context(), PullRequest{Name: fmt.Sprintf("m%d", i), Source: url, SHA256: sha(data)}, nil)
		})
	}
	wg.Wait()
	if errors.Join(errs...) != nil {
		t.Fatal(errs)
	}
	if n := len(src.requestLog()); n != 1 {
		t.Fatalf("%d downloads of one blob, want 1", n)
	}
	checkBlob(t, s, data)
}

func TestPullReportsSpeed(t *testing.T) {
	data := gguf(1 << 20)
	src := &fakeSource{data: data, chunkDelay: 40 * time.Millisecond}
	s := openStore(t)
	var log progressLog
	if _, err := s.Pull(t.Context(), PullRequest{Name: "m", Source: src.serve(t)}, log.record); err != nil {
		t.Fatal(err)
	}
	events := log.all()
	ticks := 0
	for _, e := range events {
		if e.Status == StatusDownloading && e.BytesPerSecond > 0 {
			ticks++
		}
	}
	// 16 chunks of 64 KiB at 40 ms take ~640 ms: at least two reports while downloading.
	if ticks < 2 {
		t.Fatalf("%d downloading events with a speed, want at least 2: %+v", ticks, events)
	}
	checkEvents(t, events, int64(len(data)), true)
}

// TestPullCompletesFullPartial covers a crash after the last byte but before the move into
// blobs/: the resumed request asks past the end (416) and the pull just verifies.
func TestPullCompletesFullPartial(t *testing.T) {
	data := gguf(1 << 20)
	s := openStore(t)
	w, err := s.BlobWriter("sha256:"+sha(data), -1)
	if err != nil {
		t.Fatal(err)
	}
	w.Write(data)
	w.Abort()
	src := &fakeSource{data: data}
	if _, err := s.Pull(t.Context(), PullRequest{Name: "m", Source: src.serve(t), SHA256: sha(data)}, nil); err != nil {
		t.Fatal(err)
	}
	if reqs := src.requestLog(); len(reqs) != 1 || reqs[0].Get("Range") != fmt.Sprintf("bytes=%d-", len(data)) {
		t.Fatalf("requests %v, want one from byte %d", reqs, len(data))
	}
	checkBlob(t, s, data)
}
