package store

import (
	"io"
	"net/http"
	"testing"
	"time"
)

// BenchmarkPull pulls a 64 MB file from a loopback server into the store (hash, write, fsync,
// rename, manifest) and, in the same run, copies the same HTTP body to io.Discard: the
// baseline. It reports the pull's MB/s (from SetBytes), the baseline's, and their ratio.
func BenchmarkPull(b *testing.B) {
	const size = 64 << 20
	data := gguf(size)
	src := &fakeSource{data: data, etag: true}
	url := src.serve(b)
	s := openStore(b)
	client := newHTTPClient()

	var pullTime, copyTime time.Duration
	b.SetBytes(size)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if _, err := s.Pull(b.Context(), PullRequest{Name: "bench", Source: url}, nil); err != nil {
			b.Fatal(err)
		}
		pullTime += time.Since(start)

		b.StopTimer()
		if _, err := s.Delete("bench"); err != nil {
			b.Fatal(err)
		}
		start = time.Now()
		resp, err := client.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || n != size || resp.StatusCode != http.StatusOK {
			b.Fatalf("baseline copy: %d bytes, %v, %s", n, err, resp.Status)
		}
		copyTime += time.Since(start)
		b.StartTimer()
	}
	pullMBps := float64(size) * float64(b.N) / 1e6 / pullTime.Seconds()
	copyMBps := float64(size) * float64(b.N) / 1e6 / copyTime.Seconds()
	b.ReportMetric(copyMBps, "copy-MB/s")
	b.ReportMetric(pullMBps/copyMBps, "pull/copy")
}
