package audio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
)

// outputFormat is one format NewEncoder can write.
type outputFormat struct {
	name, contentType string
	// program and pkg name the external encoder, and the Debian/Ubuntu package that installs it;
	// empty for formats encoded in Go.
	program, pkg string
	open         func(w io.Writer, rate int) (sink, error)
}

// outputFormats lists the formats in the order Formats reports them.
var outputFormats = []outputFormat{
	{name: "wav", contentType: "audio/wav", open: newWAVSink},
	{name: "pcm", contentType: "audio/pcm", open: newPCMSink},
	{name: "flac", contentType: "audio/flac", open: newFLACSink},
	{name: "mp3", contentType: "audio/mpeg", program: "lame", pkg: "lame", open: newLAMESink},
	{name: "opus", contentType: "audio/ogg", program: "opusenc", pkg: "opus-tools", open: newOpusSink},
}

// Formats lists the output formats this machine can encode: wav, pcm and flac always, mp3 and
// opus when their encoder programs are installed.
func Formats() []string {
	var names []string
	for _, f := range outputFormats {
		if f.program == "" || installed(f.program) {
			names = append(names, f.name)
		}
	}
	return names
}

// ContentType returns the MIME type of an output format, application/octet-stream for one it
// does not know.
func ContentType(format string) string {
	if f, ok := lookupFormat(format); ok {
		return f.contentType
	}
	return "application/octet-stream"
}

// lookupFormat finds an output format by name, ignoring case.
func lookupFormat(name string) (outputFormat, bool) {
	for _, f := range outputFormats {
		if strings.EqualFold(f.name, name) {
			return f, true
		}
	}
	return outputFormat{}, false
}

// installed reports whether program is on PATH.
func installed(program string) bool {
	_, err := exec.LookPath(program)
	return err == nil
}

// sink is one format's encoder behind Encoder.
type sink interface {
	// write encodes samples and hands the result to the writer.
	write(samples []float32) error
	// close finishes the stream.
	close() error
	// abort releases what the sink holds after a failure, without finishing the stream.
	abort()
}

// Encoder encodes mono float32 samples, chunk by chunk, into an output format. Every Write
// hands what it encoded to the writer, so a client can start playing before the end (buffering
// in the writer, such as an http.ResponseWriter's, is the caller's to flush). Nothing is
// written before the first Write or Close. It is not safe for concurrent use, and the writer
// is its own until Close returns (mp3 and opus write to it from a goroutine).
type Encoder struct {
	sink   sink
	err    error // the first failure; later calls return it
	closed bool
}

// NewEncoder returns an Encoder writing samples at rate to w in format: "wav" (16-bit PCM
// mono), "pcm" (raw s16le), "flac" (16-bit mono), "mp3" (through lame) or "opus" (Ogg Opus,
// through opusenc). WAV and FLAC headers state an unknown length (0xFFFFFFFF sizes for WAV, as
// OpenAI's streaming speech does) unless w is an io.WriteSeeker, whose header Close fixes. An
// unknown format fails with ErrUnsupported, a missing encoder program with ErrEncoderMissing.
func NewEncoder(w io.Writer, format string, rate int) (*Encoder, error) {
	f, ok := lookupFormat(format)
	if !ok {
		return nil, fmt.Errorf("%w: output format %q; choose wav, pcm, flac, mp3 or opus", ErrUnsupported, format)
	}
	if rate < MinRate || rate > MaxRate {
		return nil, fmt.Errorf("encode %s: rate %d Hz is outside %d..%d", f.name, rate, MinRate, MaxRate)
	}
	if f.program != "" && !installed(f.program) {
		return nil, fmt.Errorf("%w: %s output needs the %s program; install the %s package (apt-get install %s)", ErrEncoderMissing, f.name, f.program, f.pkg, f.pkg)
	}
	s, err := f.open(w, rate)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", f.name, err)
	}
	return &Encoder{sink: s}, nil
}

// errClosed is returned by Write after Close.
var errClosed = errors.New("audio: write to a closed encoder")

// Write encodes the next samples and writes them to the writer.
func (e *Encoder) Write(samples []float32) error {
	switch {
	case e.closed:
		return errClosed
	case e.err != nil:
		return e.err
	}
	if err := e.sink.write(samples); err != nil {
		e.err = err
		e.sink.abort()
	}
	return e.err
}

// Close finishes the stream (the last frame, the trailer, the header of a seekable writer)
// and releases what the Encoder holds; an encoder process is always waited for, so every
// Encoder must be closed, even after a failed Write (then Close returns that failure). It does
// not close the writer.
func (e *Encoder) Close() error {
	if e.closed {
		return e.err
	}
	e.closed = true
	if e.err != nil {
		return e.err
	}
	e.err = e.sink.close()
	return e.err
}

// appendS16LE appends samples to buf as 16-bit little-endian PCM.
func appendS16LE(buf []byte, samples []float32) []byte {
	for _, s := range samples {
		buf = binary.LittleEndian.AppendUint16(buf, uint16(toInt16(s)))
	}
	return buf
}

// pcmSink writes raw s16le.
type pcmSink struct {
	w   io.Writer
	buf []byte
}

// newPCMSink returns a sink writing raw s16le to w.
func newPCMSink(w io.Writer, _ int) (sink, error) {
	return &pcmSink{w: w}, nil
}

func (s *pcmSink) write(samples []float32) error {
	s.buf = appendS16LE(s.buf[:0], samples)
	_, err := s.w.Write(s.buf)
	return err
}

func (s *pcmSink) close() error { return nil }
func (s *pcmSink) abort()       {}

// wavSink writes a 16-bit mono WAV file: a header stating unknown sizes, then PCM.
type wavSink struct {
	pcmSink
	rate    int
	started bool
	seeker  io.WriteSeeker // w, when it can seek; the header is at headerAt
	headAt  int64
	written int64 // data bytes
}

// newWAVSink returns a sink writing WAV to w.
func newWAVSink(w io.Writer, rate int) (sink, error) {
	s := &wavSink{pcmSink: pcmSink{w: w}, rate: rate}
	if ws, ok := w.(io.WriteSeeker); ok {
		if pos, err := ws.Seek(0, io.SeekCurrent); err == nil { // a pipe is a WriteSeeker that cannot
			s.seeker, s.headAt = ws, pos
		}
	}
	return s, nil
}

func (s *wavSink) write(samples []float32) error {
	if err := s.start(); err != nil {
		return err
	}
	s.written += 2 * int64(len(samples))
	return s.pcmSink.write(samples)
}

// start writes the header before the first samples.
func (s *wavSink) start() error {
	if s.started {
		return nil
	}
	s.started = true
	_, err := s.w.Write(wavHeader(s.rate, unknownSize))
	return err
}

// close writes the header of an empty stream, or fixes the sizes when w can seek.
func (s *wavSink) close() error {
	if err := s.start(); err != nil {
		return err
	}
	if s.seeker == nil || s.written > unknownSize-36 {
		return nil
	}
	if _, err := s.seeker.Seek(s.headAt, io.SeekStart); err != nil {
		return err
	}
	if _, err := s.w.Write(wavHeader(s.rate, uint32(s.written))); err != nil {
		return err
	}
	_, err := s.seeker.Seek(0, io.SeekEnd)
	return err
}

// wavHeader is the 44-byte header of a 16-bit mono WAV file with dataSize bytes of samples
// (unknownSize for a stream, which makes the RIFF size unknown too).
func wavHeader(rate int, dataSize uint32) []byte {
	riffSize := uint32(unknownSize)
	if dataSize != unknownSize {
		riffSize = 36 + dataSize
	}
	le := binary.LittleEndian
	h := make([]byte, 0, 44)
	h = le.AppendUint32(append(h, "RIFF"...), riffSize)
	h = le.AppendUint32(append(h, "WAVEfmt "...), 16)
	h = le.AppendUint16(h, wavePCM)
	h = le.AppendUint16(h, 1) // channels
	h = le.AppendUint32(h, uint32(rate))
	h = le.AppendUint32(h, uint32(2*rate)) // bytes per second
	h = le.AppendUint16(h, 2)              // block align
	h = le.AppendUint16(h, 16)             // bits per sample
	return le.AppendUint32(append(h, "data"...), dataSize)
}
