package audio

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"encoding/binary"
	"hash"
	"io"

	"github.com/mewkiz/flac"
	"github.com/mewkiz/flac/frame"
	"github.com/mewkiz/flac/meta"
)

// flacBlockSize is the samples per FLAC frame: the reference encoder's default, a quarter of a
// second at 16 kHz before a client hears anything.
const flacBlockSize = 4096

// flacSink writes 16-bit mono FLAC frame by frame with mewkiz/flac, whose encoder picks a fixed
// predictor (order 0-4) with Rice-coded residuals per frame. The STREAMINFO block states an
// unknown length and no MD5 unless the writer can seek, in which case close fills them in.
type flacSink struct {
	out     *bufio.Writer
	info    meta.StreamInfo
	enc     *flac.Encoder // nil until the first write
	pending []int32       // samples of the frame being filled
	pcm     []byte        // the samples of one write as s16le, reused
	md5     hash.Hash
	seeker  io.WriteSeeker // the writer, when it can seek; the stream starts at headAt
	headAt  int64
}

// newFLACSink returns a sink writing FLAC to w.
func newFLACSink(w io.Writer, rate int) (sink, error) {
	s := &flacSink{
		out: bufio.NewWriter(w),
		info: meta.StreamInfo{
			BlockSizeMin: flacBlockSize, BlockSizeMax: flacBlockSize,
			SampleRate: uint32(rate), NChannels: 1, BitsPerSample: 16,
		},
		md5: md5.New(),
	}
	if ws, ok := w.(io.WriteSeeker); ok {
		if pos, err := ws.Seek(0, io.SeekCurrent); err == nil {
			s.seeker, s.headAt = ws, pos
		}
	}
	return s, nil
}

func (s *flacSink) write(samples []float32) error {
	if err := s.start(); err != nil {
		return err
	}
	s.pcm = appendS16LE(s.pcm[:0], samples)
	s.md5.Write(s.pcm) // FLAC's MD5 is of the samples as little-endian PCM
	for i := 0; i < len(s.pcm); i += 2 {
		s.pending = append(s.pending, int32(int16(binary.LittleEndian.Uint16(s.pcm[i:]))))
		if len(s.pending) == flacBlockSize {
			if err := s.writeFrame(); err != nil {
				return err
			}
		}
	}
	return s.out.Flush()
}

// start writes the stream header before the first samples.
func (s *flacSink) start() error {
	if s.enc != nil {
		return nil
	}
	info := s.info
	enc, err := flac.NewEncoder(s.out, &info)
	s.enc = enc
	return err
}

// writeFrame encodes the pending samples as one frame.
func (s *flacSink) writeFrame() error {
	f := &frame.Frame{
		Header: frame.Header{
			HasFixedBlockSize: true,
			BlockSize:         uint16(len(s.pending)),
			SampleRate:        s.info.SampleRate,
			Channels:          frame.ChannelsMono,
			BitsPerSample:     16,
		},
		Subframes: []*frame.Subframe{{
			SubHeader: frame.SubHeader{Pred: frame.PredVerbatim}, // the encoder analyses it
			Samples:   s.pending,
			NSamples:  len(s.pending),
		}},
	}
	s.info.NSamples += uint64(len(s.pending))
	err := s.enc.WriteFrame(f)
	s.pending = s.pending[:0]
	return err
}

// close writes the last, shorter frame and, when the writer can seek, the final STREAMINFO.
func (s *flacSink) close() error {
	if err := s.start(); err != nil {
		return err
	}
	if len(s.pending) > 0 {
		if err := s.writeFrame(); err != nil {
			return err
		}
	}
	if err := s.out.Flush(); err != nil || s.seeker == nil {
		return err
	}
	return s.rewriteHeader()
}

// rewriteHeader replaces the stream header with one stating the length and MD5, then returns
// the writer to the end.
func (s *flacSink) rewriteHeader() error {
	info := s.info
	copy(info.MD5sum[:], s.md5.Sum(nil))
	var head bytes.Buffer
	if _, err := flac.NewEncoder(&head, &info); err != nil {
		return err
	}
	if _, err := s.seeker.Seek(s.headAt, io.SeekStart); err != nil {
		return err
	}
	if _, err := s.seeker.Write(head.Bytes()); err != nil {
		return err
	}
	_, err := s.seeker.Seek(0, io.SeekEnd)
	return err
}

func (s *flacSink) abort() {}
