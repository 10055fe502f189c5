// Package gguf checks GGUF model files before llama.cpp reads them. A model file may come from
// anywhere (a pull, a peer, a user's download folder), and llama.cpp trusts much of what a file
// says: a crafted count, length, shape or offset, or a tensor an architecture needs left out,
// can make it allocate without bound, read past its mapping or dereference NULL, killing the
// whole node. Check reads the header (metadata and tensor descriptions, never the weights) and
// refuses such a file with the first reason it finds.
//
// Invariants of the reader: nothing is allocated from a count or length the file gives before
// that count is checked against the bytes left in the file, so a crafted header costs at most
// the file's own size; every value read is bounded (strings, arrays, names, dimensions), and
// every tensor must lie, aligned and without overlapping another, inside the file.
package gguf

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// ErrInvalid is wrapped by every refusal of a file.
var ErrInvalid = errors.New("malformed GGUF file")

// The format's fixed numbers (ggml's gguf.h and ggml.h).
const (
	magic            = "GGUF"
	defaultAlignment = 32
	// maxDims is GGML_MAX_DIMS.
	maxDims = 4
	// maxNameLen is GGML_MAX_NAME less the terminating NUL.
	maxNameLen = 63
	// maxKeyLen bounds a metadata key; real keys are tens of bytes.
	maxKeyLen = 1 << 16
	// maxTensors and maxKeys bound the counts whatever the file's size: the largest models
	// have tens of thousands of tensors and a few hundred metadata pairs.
	maxTensors = 1 << 20
	maxKeys    = 1 << 16
	// keptString is the longest string value kept for the checks (architecture names,
	// projector types); longer ones (chat templates, token lists) are read over.
	keptString = 256
)

// Value types of the metadata (gguf_type).
const (
	typeUint8 uint32 = iota
	typeInt8
	typeUint16
	typeInt16
	typeUint32
	typeInt32
	typeFloat32
	typeBool
	typeString
	typeArray
	typeUint64
	typeInt64
	typeFloat64
	typeCount
)

// File is what Read learned of a GGUF file's header.
type File struct {
	// Version is the format version (2 or 3).
	Version uint32
	// Size is the file's size in bytes.
	Size int64
	// Alignment is the data section's alignment (general.alignment, 32 by default).
	Alignment uint64
	// DataOffset is where the data section starts: tensor offsets count from it.
	DataOffset int64
	// Tensors are the tensor descriptions in file order.
	Tensors []Tensor
	// KeyCount is the number of metadata pairs.
	KeyCount int
	nTensors int
	// strings and uints hold the scalar metadata the architecture checks read.
	strings map[string]string
	uints   map[string]uint64
	bools   map[string]bool
	// alignmentType is the value type of general.alignment, when present.
	alignmentType uint32
	// names is the set of tensor names, made on first use.
	names map[string]bool
}

// Tensor is one tensor's description.
type Tensor struct {
	Name string
	// Dims are the dimensions, ggml order (ne0 first); 1 to 4 of them, each at least 1.
	Dims []uint64
	// Type is the ggml type (GGML_TYPE_*).
	Type uint32
	// Offset is where the data starts, from the data section's start.
	Offset uint64
	// Bytes is the data's size.
	Bytes uint64
}

// String returns the value of the string metadata key, when the file holds one.
func (f *File) String(key string) (string, bool) { v, ok := f.strings[key]; return v, ok }

// Uint returns the value of the unsigned or non-negative integer metadata key.
func (f *File) Uint(key string) (uint64, bool) { v, ok := f.uints[key]; return v, ok }

// Architecture is general.architecture ("" when missing).
func (f *File) Architecture() string { return f.strings["general.architecture"] }

// Check refuses the GGUF file at path when its header is malformed (Read) or it lacks what its
// architecture needs (CheckArchitecture). The error wraps ErrInvalid and says why; it does not
// repeat path, which callers name.
func Check(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: not a regular file", ErrInvalid)
	}
	g, err := Read(f, fi.Size())
	if err != nil {
		return err
	}
	return CheckArchitecture(g)
}

// invalid is the refusal of a file for the reason format says.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// Read reads and checks the header of the size-byte GGUF file r. It fails, wrapping
// ErrInvalid, for anything llama.cpp would misread: a bad magic or version, counts or lengths
// the file's bytes cannot hold, unknown value or tensor types, nested arrays, duplicate or
// over-long names, more than 4 or zero-length dimensions, element counts that overflow, an
// alignment that is not a power of two, tensors unaligned, overlapping or past the file's end.
func Read(r io.ReaderAt, size int64) (*File, error) {
	rd := newReader(r, size)
	f := &File{Size: size, Alignment: defaultAlignment, strings: map[string]string{}, uints: map[string]uint64{}, bools: map[string]bool{}}
	if err := f.readHeader(rd); err != nil {
		return nil, err
	}
	if err := f.readMetadata(rd); err != nil {
		return nil, err
	}
	if err := f.readTensors(rd); err != nil {
		return nil, err
	}
	f.DataOffset = int64(alignUp(uint64(rd.pos), f.Alignment))
	if f.DataOffset > size && len(f.Tensors) > 0 {
		return nil, invalid("the data section starts at byte %d, past the end of the file (%d bytes): the file is truncated", f.DataOffset, size)
	}
	if err := f.checkLayout(); err != nil {
		return nil, err
	}
	return f, nil
}

// Sizes of the smallest encodings, for bounding counts by the bytes left: a string is its
// 8-byte length and at least 0 bytes; a metadata pair is a key of at least one byte, a type and
// a value of at least one byte; a tensor description a name of at least one byte, a dimension
// count, one dimension, a type and an offset.
const (
	minString = 8
	minPair   = minString + 1 + 4 + 1
	minTensor = minString + 1 + 4 + 8 + 4 + 8
)

func (f *File) readHeader(rd *reader) error {
	var head [4]byte
	if err := rd.full(head[:], "the magic"); err != nil {
		return err
	}
	if string(head[:]) != magic {
		return invalid("bad magic %q, want %q: not a GGUF file", head[:], magic)
	}
	version, err := rd.u32("the version")
	if err != nil {
		return err
	}
	if version != 2 && version != 3 {
		return invalid("version %d: llama.cpp reads GGUF versions 2 and 3", version)
	}
	f.Version = version
	return nil
}

func (f *File) readMetadata(rd *reader) error {
	nTensors, err := rd.u64("the tensor count")
	if err != nil {
		return err
	}
	nKV, err := rd.u64("the metadata count")
	if err != nil {
		return err
	}
	left := uint64(rd.left())
	if nTensors > left/minTensor {
		return invalid("tensor count %d: the %d bytes after the header hold at most %d tensor descriptions", nTensors, left, left/minTensor)
	}
	if nKV > left/minPair {
		return invalid("metadata count %d: the %d bytes after the header hold at most %d pairs", nKV, left, left/minPair)
	}
	if nTensors > maxTensors || nKV > maxKeys {
		return invalid("%d tensors and %d metadata pairs: more than the %d and %d a model has", nTensors, nKV, maxTensors, maxKeys)
	}
	f.KeyCount, f.nTensors = int(nKV), int(nTensors)
	seen := make(map[string]bool, min(nKV, 256))
	for i := range nKV {
		key, err := rd.str(maxKeyLen, fmt.Sprintf("metadata key %d", i))
		if err != nil {
			return err
		}
		if key == "" {
			return invalid("metadata key %d is empty", i)
		}
		if seen[key] {
			return invalid("duplicate metadata key %q", key)
		}
		seen[key] = true
		if err := f.readValue(rd, key); err != nil {
			return err
		}
	}
	if seen["general.alignment"] {
		// llama.cpp reads it as a uint32 and aborts on any other type.
		t := f.uints["general.alignment"]
		if f.alignmentType != typeUint32 {
			return invalid("general.alignment has type %s, want uint32", typeName(f.alignmentType))
		}
		if t == 0 || t&(t-1) != 0 {
			return invalid("general.alignment %d is not a power of two", t)
		}
		f.Alignment = t
	}
	return nil
}

func (f *File) readValue(rd *reader, key string) error {
	typ, err := rd.u32("the type of " + key)
	if err != nil {
		return err
	}
	if key == "general.alignment" {
		f.alignmentType = typ
	}
	if typ == typeArray {
		return f.readArray(rd, key)
	}
	if typ >= typeCount {
		return invalid("metadata %q has unknown value type %d", key, typ)
	}
	switch typ {
	case typeString:
		s, long, err := rd.keptStr(key)
		if err != nil {
			return err
		}
		if !long {
			f.strings[key] = s
		}
		return nil
	case typeFloat32, typeFloat64:
		return rd.skip(scalarSize(typ), key)
	case typeBool:
		v, err := rd.integer(typeUint8, key)
		f.bools[key] = v != 0
		return err
	}
	v, err := rd.integer(typ, key)
	if err != nil {
		return err
	}
	if v >= 0 || typ == typeUint64 {
		f.uints[key] = uint64(v)
	}
	return nil
}

func (f *File) readArray(rd *reader, key string) error {
	elem, err := rd.u32("the element type of " + key)
	if err != nil {
		return err
	}
	n, err := rd.u64("the length of " + key)
	if err != nil {
		return err
	}
	switch {
	case elem == typeArray:
		return invalid("metadata %q is an array of arrays, which llama.cpp does not read", key)
	case elem >= typeCount:
		return invalid("metadata %q is an array of unknown value type %d", key, elem)
	case elem == typeString:
		left := uint64(rd.left())
		if n > left/minString {
			return invalid("metadata %q: %d strings cannot fit in the %d bytes left", key, n, left)
		}
		for i := range n {
			if _, _, err := rd.keptStr(fmt.Sprintf("%s[%d]", key, i)); err != nil {
				return err
			}
		}
		return nil
	}
	size := scalarSize(elem)
	if left := uint64(rd.left()); n > left/size {
		return invalid("metadata %q: %d elements of %d bytes cannot fit in the %d bytes left", key, n, size, left)
	}
	return rd.skip(n*size, key)
}

func (f *File) readTensors(rd *reader) error {
	f.Tensors = make([]Tensor, 0, min(f.nTensors, 4096))
	names := make(map[string]bool, min(f.nTensors, 4096))
	for i := range f.nTensors {
		name, err := rd.str(maxNameLen, fmt.Sprintf("the name of tensor %d", i))
		if err != nil {
			return err
		}
		if name == "" {
			return invalid("tensor %d has an empty name", i)
		}
		if names[name] {
			return invalid("duplicate tensor name %q", name)
		}
		names[name] = true
		t, err := readTensor(rd, name)
		if err != nil {
			return err
		}
		f.Tensors = append(f.Tensors, t)
	}
	return nil
}

func readTensor(rd *reader, name string) (Tensor, error) {
	nDims, err := rd.u32("the dimension count of tensor " + name)
	if err != nil {
		return Tensor{}, err
	}
	if nDims == 0 || nDims > maxDims {
		return Tensor{}, invalid("tensor %s has %d dimensions, want 1 to %d", name, nDims, maxDims)
	}
	t := Tensor{Name: name, Dims: make([]uint64, nDims)}
	elements := uint64(1)
	for j := range t.Dims {
		d, err := rd.u64("a dimension of tensor " + name)
		if err != nil {
			return Tensor{}, err
		}
		if d == 0 || d > maxInt64 {
			return Tensor{}, invalid("tensor %s: dimension %d is %d, want 1 to %d", name, j, d, uint64(maxInt64))
		}
		if elements > maxInt64/d {
			return Tensor{}, invalid("tensor %s: dimensions %v overflow the element count", name, t.Dims[:j+1])
		}
		t.Dims[j] = d
		elements *= d
	}
	if t.Type, err = rd.u32("the type of tensor " + name); err != nil {
		return Tensor{}, err
	}
	tt, ok := tensorTypes[t.Type]
	if !ok {
		return Tensor{}, invalid("tensor %s has unknown ggml type %d", name, t.Type)
	}
	if t.Dims[0]%tt.block != 0 {
		return Tensor{}, invalid("tensor %s of type %s has %d elements per row, not a multiple of its block of %d", name, tt.name, t.Dims[0], tt.block)
	}
	blocks := elements / tt.block
	if blocks > maxInt64/tt.size {
		return Tensor{}, invalid("tensor %s: %d blocks of %d bytes overflow its size", name, blocks, tt.size)
	}
	t.Bytes = blocks * tt.size
	if t.Offset, err = rd.u64("the offset of tensor " + name); err != nil {
		return Tensor{}, err
	}
	return t, nil
}

const maxInt64 = 1<<63 - 1

// checkLayout checks that every tensor is aligned, inside the file and apart from the others.
func (f *File) checkLayout() error {
	dataBytes := uint64(f.Size - min(f.DataOffset, f.Size))
	var prev *Tensor
	for i := range f.Tensors {
		t := &f.Tensors[i]
		if t.Offset%f.Alignment != 0 {
			return invalid("tensor %s: offset %d is not a multiple of the alignment %d", t.Name, t.Offset, f.Alignment)
		}
		if t.Offset > dataBytes || t.Bytes > dataBytes-t.Offset {
			return invalid("tensor %s extends past end of file: offset %d size %d, file %d bytes (data section from byte %d)",
				t.Name, t.Offset, t.Bytes, f.Size, f.DataOffset)
		}
		// llama.cpp lays tensors out in file order; one starting before the previous ends
		// overlaps it (or is out of order, which llama.cpp refuses too).
		if prev != nil && t.Offset < prev.Offset+prev.Bytes {
			return invalid("tensor %s (offset %d) overlaps tensor %s (offset %d, size %d)", t.Name, t.Offset, prev.Name, prev.Offset, prev.Bytes)
		}
		prev = t
	}
	return nil
}

func alignUp(n, alignment uint64) uint64 { return (n + alignment - 1) / alignment * alignment }

// scalarSize is the encoded size of a value of a fixed-size type.
func scalarSize(typ uint32) uint64 {
	switch typ {
	case typeUint8, typeInt8, typeBool:
		return 1
	case typeUint16, typeInt16:
		return 2
	case typeUint32, typeInt32, typeFloat32:
		return 4
	}
	return 8
}

func typeName(typ uint32) string {
	names := []string{"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool", "string", "array", "uint64", "int64", "float64"}
	if typ < uint32(len(names)) {
		return names[typ]
	}
	return fmt.Sprintf("unknown (%d)", typ)
}
