package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/ekisa-team/syn4pse/internal/durable"
)

// headSize is how many leading bytes a partial blob keeps for content checks and messages.
const headSize = 16

// sidecarSuffix names the note beside a partial download: where it comes from and the
// validator (ETag) that says whether the source still holds the same bytes.
const sidecarSuffix = ".json"

// PartialBlob is a blob being written into partial/: it may start where an interrupted writer
// stopped (Offset), and reaches blobs/ only through Commit, once its sha256 verified. It holds
// the blob's partial file for itself until Commit, Abort or Discard; it is not safe for
// concurrent use.
type PartialBlob struct {
	s      *Store
	path   string
	f      *os.File // nil once finished
	hash   hash.Hash
	offset int64
	size   int64  // expected size, -1 when unknown
	expect string // expected hex sha256, "" when unknown
	head   []byte
	unlock func()
	// pipe hashes what Write wrote on its own goroutine, so a transfer into the blob does not
	// wait for sha256; nil until the first Write and after drainHash.
	pipe *hashPipe
}

// BlobWriter opens the partial file of the blob with that digest ("sha256:<hex>") and size
// (-1 if unknown) for writing, continuing after the bytes an earlier writer left; other
// transports (a peer transfer) fill the store through it the way a pull does. It fails with
// ErrBusy while another writer holds the same blob.
func (s *Store) BlobWriter(digest string, size int64) (*PartialBlob, error) {
	sum, err := parseDigest(digest)
	if err != nil {
		return nil, err
	}
	unlock, ok := s.tryLockKey(blobName(sum))
	if !ok {
		return nil, fmt.Errorf("blob %s: %w", digest, ErrBusy)
	}
	p, err := s.openPartial(blobName(sum), sum, size)
	if err != nil {
		unlock()
		return nil, fmt.Errorf("blob %s: %w", digest, err)
	}
	p.unlock = unlock
	return p, nil
}

// copyInto copies r into p until EOF, stopping when ctx is done; each chunk is reported to
// onChunk. Hashing runs beside the reading and writing (it costs as much as both on a fast
// link), on buffers it hands back once hashed.
func copyInto(ctx context.Context, p *PartialBlob, r io.Reader, onChunk func(n int)) error {
	if p.f == nil {
		return errors.New("write to a finished blob")
	}
	p.drainHash() // bytes from Write come first
	hasher := startHashing(p.hash)
	defer hasher.close()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		buf := <-hasher.free
		n, err := r.Read(buf)
		if n > 0 {
			written, werr := p.writeFile(buf[:n])
			hasher.in <- buf[:written]
			if werr != nil {
				return werr
			}
			if onChunk != nil {
				onChunk(n)
			}
		} else {
			hasher.free <- buf
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// hashPipe hashes chunks in order on its own goroutine, which close waits for.
type hashPipe struct {
	in   chan []byte // chunks to hash, in file order
	free chan []byte // buffers to fill: all of them fit, so the hasher never blocks on it
	done chan struct{}
}

func startHashing(h hash.Hash) *hashPipe {
	const buffers = 4
	p := &hashPipe{in: make(chan []byte, buffers), free: make(chan []byte, buffers), done: make(chan struct{})}
	for range buffers {
		p.free <- make([]byte, 1<<20)
	}
	go func() {
		defer close(p.done)
		for b := range p.in {
			h.Write(b)
			p.free <- b[:cap(b)]
		}
	}()
	return p
}

// close waits until every chunk sent is hashed.
func (p *hashPipe) close() {
	close(p.in)
	<-p.done
}

// openPartial opens partial/<key>, hashing the bytes already there so the digest covers the
// whole file.
func (s *Store) openPartial(key, expect string, size int64) (*PartialBlob, error) {
	path := filepath.Join(s.root, partialDir, key)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	p := &PartialBlob{s: s, path: path, f: f, hash: sha256.New(), size: size, expect: expect}
	head := make([]byte, headSize)
	n, err := f.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		f.Close()
		return nil, err
	}
	p.head = head[:n]
	if p.offset, err = io.CopyBuffer(p.hash, f, make([]byte, 1<<20)); err != nil {
		f.Close()
		return nil, err
	}
	if size >= 0 && p.offset > size {
		if err := p.reset(); err != nil {
			f.Close()
			return nil, err
		}
	}
	return p, nil
}

// Offset returns how many bytes the partial file holds: where the next Write goes.
func (p *PartialBlob) Offset() int64 { return p.offset }

// Write appends b to the partial file. Writing past the expected size is an error.
func (p *PartialBlob) Write(b []byte) (int, error) {
	if p.f == nil {
		return 0, errors.New("write to a finished blob")
	}
	n, err := p.writeFile(b)
	if p.pipe == nil {
		p.pipe = startHashing(p.hash)
	}
	for rest := b[:n]; len(rest) > 0; {
		buf := <-p.pipe.free
		c := copy(buf, rest)
		p.pipe.in <- buf[:c]
		rest = rest[c:]
	}
	return n, err
}

// drainHash waits until everything Write wrote is hashed.
func (p *PartialBlob) drainHash() {
	if p.pipe != nil {
		p.pipe.close()
		p.pipe = nil
	}
}

// writeFile appends b to the file without hashing it: the caller hashes it, in order.
func (p *PartialBlob) writeFile(b []byte) (int, error) {
	if p.size >= 0 && p.offset+int64(len(b)) > p.size {
		return 0, fmt.Errorf("blob is longer than its expected %d bytes", p.size)
	}
	n, err := p.f.Write(b)
	if len(p.head) < headSize {
		p.head = append(p.head, b[:min(n, headSize-len(p.head))]...)
	}
	p.offset += int64(n)
	return n, err
}

// Commit verifies the sha256 of the bytes written and moves the blob into blobs/. On a
// mismatch the partial file is removed and the error wraps ErrDigestMismatch; a blob shorter
// than its expected size is not committed and may still be written to.
func (p *PartialBlob) Commit() error {
	p.s.mu.Lock()
	defer p.s.mu.Unlock()
	_, err := p.commitLocked()
	return err
}

// commitLocked is Commit with s.mu held; it returns the stored blob.
func (p *PartialBlob) commitLocked() (File, error) {
	if p.f == nil {
		return File{}, errors.New("commit of a finished blob")
	}
	if p.size >= 0 && p.offset < p.size {
		return File{}, fmt.Errorf("blob incomplete: %d of %d bytes", p.offset, p.size)
	}
	p.drainHash()
	sum := hex.EncodeToString(p.hash.Sum(nil))
	if p.expect != "" && sum != p.expect {
		p.Discard()
		return File{}, fmt.Errorf("%w: the downloaded bytes hash to sha256:%s, expected sha256:%s (the partial file was removed)",
			ErrDigestMismatch, sum, p.expect)
	}
	if err := p.f.Sync(); err != nil {
		p.Abort()
		return File{}, err
	}
	if err := p.close(); err != nil {
		return File{}, err
	}
	if err := os.Rename(p.path, p.s.blobPath(sum)); err != nil {
		return File{}, err
	}
	os.Remove(p.path + sidecarSuffix)
	if err := durable.SyncDir(filepath.Join(p.s.root, blobsDir)); err != nil {
		return File{}, err
	}
	return File{Digest: "sha256:" + sum, Size: p.offset, Role: RoleModel}, durable.SyncDir(filepath.Dir(p.path))
}

// Abort closes the partial file and keeps it, so a later writer of the same blob resumes.
func (p *PartialBlob) Abort() error {
	if p.f == nil {
		return nil
	}
	err := p.f.Sync()
	if cerr := p.close(); err == nil {
		err = cerr
	}
	return err
}

// Discard closes and removes the partial file. After Commit or Abort it does nothing.
func (p *PartialBlob) Discard() error {
	if p.f == nil {
		return nil
	}
	p.close()
	os.Remove(p.path + sidecarSuffix)
	if err := os.Remove(p.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// close closes the file and releases the blob for other writers.
func (p *PartialBlob) close() error {
	p.drainHash()
	err := p.f.Close()
	p.f = nil
	if p.unlock != nil {
		p.unlock()
		p.unlock = nil
	}
	return err
}

// reset empties the partial file, for a source that cannot continue where it stopped.
func (p *PartialBlob) reset() error {
	if err := p.f.Truncate(0); err != nil {
		return err
	}
	if _, err := p.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	p.drainHash()
	p.hash.Reset()
	p.offset = 0
	p.head = p.head[:0]
	return nil
}

// partialNote is the sidecar of a download in partial/.
type partialNote struct {
	URL       string `json:"url"`
	Validator string `json:"validator,omitempty"`
}

func (p *PartialBlob) readNote() partialNote {
	var n partialNote
	if b, err := os.ReadFile(p.path + sidecarSuffix); err == nil {
		json.Unmarshal(b, &n) // a damaged note only costs a restart from 0
	}
	return n
}

func (p *PartialBlob) writeNote(n partialNote) error {
	b, err := json.Marshal(n)
	if err != nil {
		return err
	}
	return durable.WriteFile(p.path+sidecarSuffix, b, 0o600)
}

// lockKey takes the partial file named key for this process, waiting while another holds it.
func (s *Store) lockKey(ctx context.Context, key string) (unlock func(), err error) {
	for {
		unlock, ok := s.tryLockKey(key)
		if ok {
			return unlock, nil
		}
		s.keysMu.Lock()
		released := s.busy[key]
		s.keysMu.Unlock()
		if released == nil {
			continue
		}
		select {
		case <-released:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// tryLockKey takes the partial file named key if no one holds it.
func (s *Store) tryLockKey(key string) (unlock func(), ok bool) {
	s.keysMu.Lock()
	defer s.keysMu.Unlock()
	if _, held := s.busy[key]; held {
		return nil, false
	}
	released := make(chan struct{})
	s.busy[key] = released
	return func() {
		s.keysMu.Lock()
		delete(s.busy, key)
		s.keysMu.Unlock()
		close(released)
	}, true
}
