// Package wav writes and measures 16-bit mono PCM WAV files: the tester's
// speech uploads, the CPU runner's text-to-speech output, and the duration
// both the orchestrator (billing) and the tester (output check) read from a
// header.
package wav

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
)

// ErrFormat is wrapped by every error Duration returns: the bytes are not a
// PCM WAV whose length can be read from its header.
var ErrFormat = errors.New("malformed WAV")

// Tone renders seconds of a sine tone at freq Hz as 16-bit mono PCM at rate
// samples a second. Speech models return little or nothing for it, which is
// what a probe needs: a transcription comes back, whatever it says.
func Tone(seconds float64, rate int, freq float64) []byte {
	n := int(seconds * float64(rate))
	var b bytes.Buffer
	b.Grow(44 + 2*n)
	le := binary.LittleEndian
	b.WriteString("RIFF")
	_ = binary.Write(&b, le, uint32(36+2*n)) // to memory: cannot fail
	b.WriteString("WAVEfmt ")
	// fmt chunk: size 16, PCM, mono, rate, byte rate, block align, bits.
	for _, v := range []any{uint32(16), uint16(1), uint16(1), uint32(rate), uint32(rate * 2), uint16(2), uint16(16)} {
		_ = binary.Write(&b, le, v)
	}
	b.WriteString("data")
	_ = binary.Write(&b, le, uint32(2*n))
	sample := make([]byte, 2)
	for i := 0; i < n; i++ {
		v := int16(8000 * math.Sin(2*math.Pi*freq*float64(i)/float64(rate)))
		le.PutUint16(sample, uint16(v))
		b.Write(sample)
	}
	return b.Bytes()
}

// Duration returns the length in seconds of a WAV file of total bytes whose
// first bytes are b (the orchestrator reads only an upload's head into
// memory; pass len(b) for a whole file). A data chunk longer than the file
// counts what the file holds: streaming writers leave its size unset.
func Duration(b []byte, total int64) (float64, error) {
	if len(b) < 12 || string(b[0:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		return 0, fmt.Errorf("%w: not a RIFF/WAVE file", ErrFormat)
	}
	var byteRate uint32
	for off := 12; off+8 <= len(b); {
		id := string(b[off : off+4])
		size := int(binary.LittleEndian.Uint32(b[off+4 : off+8]))
		body := off + 8
		switch id {
		case "fmt ":
			if size < 16 || body+16 > len(b) {
				return 0, fmt.Errorf("%w: short fmt chunk", ErrFormat)
			}
			byteRate = binary.LittleEndian.Uint32(b[body+8 : body+12])
		case "data":
			if byteRate == 0 {
				return 0, fmt.Errorf("%w: data chunk before fmt chunk", ErrFormat)
			}
			if int64(body)+int64(size) > total {
				size = int(total - int64(body))
			}
			return float64(size) / float64(byteRate), nil
		}
		off = body + size + size%2
	}
	return 0, fmt.Errorf("%w: no data chunk", ErrFormat)
}

// Voice renders seconds of 16-bit mono PCM at rate keyed by seed: a few
// syllable-like bursts of a drawn pitch with harmonics and vibrato, pauses
// between them and a drawn level of background noise. No two seeds give the
// same bytes in practice, so no upload is ever seen twice by an orchestrator.
func Voice(seconds float64, rate int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, seed^0x2545f4914f6cdd1d))
	n := int(seconds * float64(rate))
	pitch := 90 + rng.Float64()*220
	vib, vibRate := rng.Float64()*0.04, 3+rng.Float64()*4
	noise := 200 + rng.Float64()*1500
	h2, h3 := 0.2+rng.Float64()*0.5, rng.Float64()*0.3
	var b bytes.Buffer
	b.Grow(44 + 2*n)
	le := binary.LittleEndian
	b.WriteString("RIFF")
	_ = binary.Write(&b, le, uint32(36+2*n)) // to memory: cannot fail
	b.WriteString("WAVEfmt ")
	for _, v := range []any{uint32(16), uint16(1), uint16(1), uint32(rate), uint32(rate * 2), uint16(2), uint16(16)} {
		_ = binary.Write(&b, le, v)
	}
	b.WriteString("data")
	_ = binary.Write(&b, le, uint32(2*n))
	sample := make([]byte, 2)
	var phase float64
	on, left := false, 0
	amp := 0.0
	for i := 0; i < n; i++ {
		if left <= 0 {
			on = !on
			if on {
				left = rate/10 + rng.IntN(rate/3+1) // a syllable: 100–430 ms
			} else {
				left = rate/20 + rng.IntN(rate/5+1) // a pause: 50–250 ms
			}
		}
		left--
		target := 0.0
		if on {
			target = 1
		}
		amp += (target - amp) * 0.002 // soft on and off
		t := float64(i) / float64(rate)
		f := pitch * (1 + vib*math.Sin(2*math.Pi*vibRate*t))
		phase += 2 * math.Pi * f / float64(rate)
		v := amp*7000*(math.Sin(phase)+h2*math.Sin(2*phase)+h3*math.Sin(3*phase))/(1+h2+h3) + noise*(rng.Float64()*2-1)
		le.PutUint16(sample, uint16(int16(max(-32768, min(32767, v)))))
		b.Write(sample)
	}
	return b.Bytes()
}
