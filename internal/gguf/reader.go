package gguf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// reader reads a GGUF header front to back, knowing how many bytes are left, so that every
// length is checked against them before anything is allocated or skipped.
type reader struct {
	br   *bufio.Reader
	pos  int64
	size int64
	buf  [8]byte
}

func newReader(r io.ReaderAt, size int64) *reader {
	return &reader{br: bufio.NewReaderSize(io.NewSectionReader(r, 0, size), 64<<10), size: size}
}

// left is the number of bytes after the read position.
func (rd *reader) left() int64 { return rd.size - rd.pos }

// full reads len(p) bytes; what names the value, for the error of a file that ends first.
func (rd *reader) full(p []byte, what string) error {
	if int64(len(p)) > rd.left() {
		return invalid("the file ends (%d bytes) inside %s at byte %d: it is truncated", rd.size, what, rd.pos)
	}
	n, err := io.ReadFull(rd.br, p)
	rd.pos += int64(n)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return invalid("the file ends inside %s at byte %d: it is truncated", what, rd.pos)
		}
		return fmt.Errorf("read %s: %w", what, err)
	}
	return nil
}

func (rd *reader) u32(what string) (uint32, error) {
	if err := rd.full(rd.buf[:4], what); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint32(rd.buf[:4]), nil
}

func (rd *reader) u64(what string) (uint64, error) {
	if err := rd.full(rd.buf[:8], what); err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint64(rd.buf[:8]), nil
}

// integer reads an integer value of type typ, sign-extended; a uint64 above the int64 range
// comes back negative (the caller knows its type).
func (rd *reader) integer(typ uint32, what string) (int64, error) {
	size := scalarSize(typ)
	if err := rd.full(rd.buf[:size], what); err != nil {
		return 0, err
	}
	b := rd.buf[:size]
	switch typ {
	case typeUint8:
		return int64(b[0]), nil
	case typeInt8:
		return int64(int8(b[0])), nil
	case typeUint16:
		return int64(binary.LittleEndian.Uint16(b)), nil
	case typeInt16:
		return int64(int16(binary.LittleEndian.Uint16(b))), nil
	case typeUint32:
		return int64(binary.LittleEndian.Uint32(b)), nil
	case typeInt32:
		return int64(int32(binary.LittleEndian.Uint32(b))), nil
	}
	return int64(binary.LittleEndian.Uint64(b)), nil
}

// strLen reads a string's length and checks it against max and the bytes left.
func (rd *reader) strLen(max uint64, what string) (uint64, error) {
	n, err := rd.u64("the length of " + what)
	if err != nil {
		return 0, err
	}
	if left := uint64(rd.left()); n > left {
		return 0, invalid("%s: string length %d passes the end of the file (%d bytes left)", what, n, left)
	}
	if n > max {
		return 0, invalid("%s: string length %d, longer than the %d bytes allowed", what, n, max)
	}
	return n, nil
}

// str reads a string of at most max bytes.
func (rd *reader) str(max uint64, what string) (string, error) {
	n, err := rd.strLen(max, what)
	if err != nil {
		return "", err
	}
	b := make([]byte, n)
	if err := rd.full(b, what); err != nil {
		return "", err
	}
	return string(b), nil
}

// keptStr reads a string value of any length the file holds; one longer than keptString is
// read over and reported long, not returned.
func (rd *reader) keptStr(what string) (string, bool, error) {
	n, err := rd.strLen(uint64(rd.left()), what)
	if err != nil {
		return "", false, err
	}
	if n > keptString {
		return "", true, rd.skip(n, what)
	}
	b := make([]byte, n)
	if err := rd.full(b, what); err != nil {
		return "", false, err
	}
	return string(b), false, nil
}

// skip reads over n bytes.
func (rd *reader) skip(n uint64, what string) error {
	if n > uint64(rd.left()) {
		return invalid("%s: %d bytes pass the end of the file (%d bytes left)", what, n, rd.left())
	}
	d, err := rd.br.Discard(int(n))
	rd.pos += int64(d)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return invalid("the file ends inside %s at byte %d: it is truncated", what, rd.pos)
		}
		return fmt.Errorf("read %s: %w", what, err)
	}
	return nil
}
