package pocketsphinx

import (
	"encoding/binary"
	"os"
	"testing"
	"time"
)

func TestTmpRaw(t *testing.T) {
	d := newDecoder(t)
	data, _ := os.ReadFile("/tmp/all.wav")
	data = data[44:]
	pcm := make([]int16, len(data)/2)
	for i := range pcm {
		pcm[i] = int16(binary.LittleEndian.Uint16(data[2*i:]))
	}
	s := time.Now()
	d.StartStream()
	d.StartUtt()
	in := false
	for i := 0; i < len(pcm); i += 2048 {
		d.ProcessRaw(pcm[i:min(i+2048, len(pcm))])
		sp := d.InSpeech()
		if sp && !in {
			in = true
		}
		if !sp && in {
			d.EndUtt()
			d.Hypothesis()
			d.StartUtt()
			in = false
		}
	}
	d.EndUtt()
	t.Logf("raw loop %v", time.Since(s))
}
