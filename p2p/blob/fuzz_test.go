package blob

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// FuzzReadBlobRequest reads fuzzed request lines as a server does: it never panics, never reads
// more than blobMaxRequest bytes (a longer line is refused unread), gives the same answer
// however the stream splits its bytes, and accepts only a well-formed digest and offset, which
// written out again read back the same.
func FuzzReadBlobRequest(f *testing.F) {
	digest := "sha256:" + strings.Repeat("0123456789abcdef", 4)
	f.Add([]byte(digest + " 0\n"))
	f.Add([]byte(digest + " 9223372036854775807\n"))
	f.Add([]byte(digest + " +17\n"))
	f.Add([]byte(digest + " -1\n"))
	f.Add([]byte(strings.ToUpper(digest) + " 0\n"))
	f.Add([]byte(digest + " 0"))
	f.Add([]byte(digest + " 00000000000000000000000000000000000000000000000000000000000000000000\n"))
	f.Add([]byte(strings.Repeat("a", 200) + "\n"))
	f.Add([]byte("\n"))

	f.Fuzz(func(t *testing.T, data []byte) {
		counted := &countingReader{r: bytes.NewReader(data)}
		digest, offset, err := readBlobRequest(counted)
		if counted.n > blobMaxRequest {
			t.Fatalf("read %d bytes, more than the %d-byte limit", counted.n, blobMaxRequest)
		}
		oneByte, oneOffset, oneErr := readBlobRequest(iotest.OneByteReader(bytes.NewReader(data)))
		if oneByte != digest || oneOffset != offset || (oneErr == nil) != (err == nil) {
			t.Fatalf("byte by byte: %q %d %v, all at once: %q %d %v", oneByte, oneOffset, oneErr, digest, offset, err)
		}
		line, _, found := bytes.Cut(data, []byte("\n"))
		if err != nil {
			return
		}
		if !found || len(line)+1 > blobMaxRequest {
			t.Fatalf("accepted %q: not a line of at most %d bytes", data, blobMaxRequest)
		}
		if !validBlobDigest(digest) || offset < 0 {
			t.Fatalf("accepted digest %q offset %d", digest, offset)
		}
		again, againOffset, err := readBlobRequest(strings.NewReader(fmt.Sprintf("%s %d\n", digest, offset)))
		if err != nil || again != digest || againOffset != offset {
			t.Fatalf("%q written out again reads as %q %d %v", data, again, againOffset, err)
		}
	})
}

// FuzzBlobResponse reads fuzzed server answers as a fetcher does: it never panics, the sink
// never gets more than the bytes it lacks (size - offset) nor anything the peer did not send,
// a refusal's message is bounded, and success means the sink holds the whole blob.
func FuzzBlobResponse(f *testing.F) {
	response := func(status byte, value uint64, body string) []byte {
		b := binary.BigEndian.AppendUint64([]byte{status}, value)
		return append(b, body...)
	}
	f.Add(response(blobStatusOK, 5, "hello"), uint32(5), uint32(0))
	f.Add(response(blobStatusOK, 5, "llo"), uint32(5), uint32(2))
	f.Add(response(blobStatusOK, 5, "hello, and more"), uint32(5), uint32(0))
	f.Add(response(blobStatusOK, 5, "he"), uint32(5), uint32(0))
	f.Add(response(blobStatusOK, 1<<63, "x"), uint32(1), uint32(0))
	f.Add(response(blobStatusNotFound, 14, "blob not held"), uint32(5), uint32(0))
	f.Add(response(blobStatusBadRange, ^uint64(0), "huge"), uint32(5), uint32(0))
	f.Add(response(blobStatusBadRequest, 3000, strings.Repeat("\xff", 3000)), uint32(0), uint32(0))
	f.Add(response(200, 0, ""), uint32(0), uint32(0))
	f.Add([]byte{0, 0, 0}, uint32(9), uint32(0))

	f.Fuzz(func(t *testing.T, data []byte, size32, offset32 uint32) {
		size := int64(size32 % (1 << 20))
		offset := int64(offset32) % (size + 1)
		sink := &blobTestSink{data: make([]byte, offset)}
		tr := blobTransfer{sink: sink}
		err := tr.readResponse(bytes.NewReader(data), offset, size)
		got := sink.data[offset:]
		if int64(len(got)) > size-offset {
			t.Fatalf("sink got %d bytes, it lacked %d", len(got), size-offset)
		}
		if len(data) < 9 && len(got) > 0 || len(data) >= 9 && !bytes.HasPrefix(data[9:], got) {
			t.Fatalf("sink got bytes the peer did not send")
		}
		if err != nil {
			if len(err.Error()) > 4*blobMaxMessage+200 {
				t.Fatalf("refusal of %d bytes", len(err.Error()))
			}
			return
		}
		if int64(len(got)) != size-offset || data[0] != blobStatusOK || binary.BigEndian.Uint64(data[1:9]) != uint64(size) {
			t.Fatalf("success with %d of %d bytes (status %d)", len(got), size-offset, data[0])
		}
	})
}
