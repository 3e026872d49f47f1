package runner

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"image"
	_ "image/gif" // inputs may be GIF, as PIL accepts
	_ "image/jpeg"
	"image/png"
	"math"
)

// MaxImagePixels caps one generated image. A real runner would run out of
// GPU memory far below this; the cap keeps the CPU runner from burning a core
// (and memory) on absurd sizes.
const MaxImagePixels = 4096 * 4096

// MaxAudioBytes is ai-runner's audio upload limit (50 MB → 413).
const MaxAudioBytes = 50 * 1024 * 1024

func dataURL(mime string, b []byte) string {
	return "data:" + mime + ";base64," + base64.StdEncoding.EncodeToString(b)
}

// renderPNG draws a seeded pattern of exactly w×h pixels. The pattern is a
// pair of gradients with seed-derived colours: cheap per pixel, deterministic,
// and distinct across seeds, which is all a tester needs to check outputs.
func renderPNG(w, h int, seed uint64) ([]byte, error) {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	s := splitmix(seed)
	r0, g0, b0 := byte(s), byte(s>>8), byte(s>>16)
	r1, g1, b1 := byte(s>>24), byte(s>>32), byte(s>>40)
	for y := 0; y < h; y++ {
		fy := 0
		if h > 1 {
			fy = y * 255 / (h - 1)
		}
		row := img.Pix[y*img.Stride : y*img.Stride+4*w]
		for x := 0; x < w; x++ {
			fx := 0
			if w > 1 {
				fx = x * 255 / (w - 1)
			}
			row[4*x] = r0 + byte(fx) ^ r1&byte(fy)
			row[4*x+1] = g0 + byte(fy) ^ g1&byte(fx)
			row[4*x+2] = b0 + byte((fx+fy)/2) ^ b1
			row[4*x+3] = 255
		}
	}
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	if err := enc.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("encode png: %w", err)
	}
	return buf.Bytes(), nil
}

// splitmix is SplitMix64's finaliser: a seed → well-mixed bits.
func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// ImageSize reads the dimensions of a PNG, JPEG or GIF without decoding its
// pixels; the orchestrator bills image inputs by width×height.
func ImageSize(b []byte) (w, h int, err error) {
	cfg, _, err := image.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		return 0, 0, fmt.Errorf("read image header: %w", err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return 0, 0, errors.New("read image header: empty image")
	}
	return cfg.Width, cfg.Height, nil
}

// ErrAudioFormat means the audio could not be read (415 on the runner).
var ErrAudioFormat = errors.New("unsupported audio format or malformed file")

// AudioDuration returns the length of a WAV file from its header. Other
// containers need a decoder this program does not carry; callers fall back to
// the request's metadata duration for those.
func AudioDuration(b []byte) (float64, error) { return AudioDurationOf(b, int64(len(b))) }

// AudioDurationOf is AudioDuration for a file of size bytes of which b is the
// start: the orchestrator reads only an upload's head into memory, and the
// header's data chunk is cut to what the file holds.
func AudioDurationOf(b []byte, total int64) (float64, error) {
	if len(b) < 12 || string(b[0:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		return 0, ErrAudioFormat
	}
	var byteRate uint32
	for off := 12; off+8 <= len(b); {
		id := string(b[off : off+4])
		size := int(binary.LittleEndian.Uint32(b[off+4 : off+8]))
		body := off + 8
		switch id {
		case "fmt ":
			if size < 16 || body+16 > len(b) {
				return 0, ErrAudioFormat
			}
			byteRate = binary.LittleEndian.Uint32(b[body+8 : body+12])
		case "data":
			if byteRate == 0 {
				return 0, ErrAudioFormat
			}
			if int64(body)+int64(size) > total {
				size = int(total - int64(body)) // truncated stream: count what is there
			}
			return float64(size) / float64(byteRate), nil
		}
		off = body + size + size%2
	}
	return 0, ErrAudioFormat
}

// ttsSampleRate is Parler-TTS's output rate.
const ttsSampleRate = 44100

// renderWAV writes a 16-bit mono PCM WAV of the given length: a seeded tone
// whose pitch follows the text, so output is deterministic and non-silent.
func renderWAV(seconds float64, seed uint64) []byte {
	n := int(seconds * ttsSampleRate)
	var buf bytes.Buffer
	buf.Grow(44 + 2*n)
	le := binary.LittleEndian
	buf.WriteString("RIFF")
	_ = binary.Write(&buf, le, uint32(36+2*n))
	buf.WriteString("WAVEfmt ")
	_ = binary.Write(&buf, le, uint32(16))
	_ = binary.Write(&buf, le, uint16(1)) // PCM
	_ = binary.Write(&buf, le, uint16(1)) // mono
	_ = binary.Write(&buf, le, uint32(ttsSampleRate))
	_ = binary.Write(&buf, le, uint32(2*ttsSampleRate))
	_ = binary.Write(&buf, le, uint16(2))
	_ = binary.Write(&buf, le, uint16(16))
	buf.WriteString("data")
	_ = binary.Write(&buf, le, uint32(2*n))
	freq := 180 + float64(splitmix(seed)%220)
	sample := make([]byte, 2)
	for i := 0; i < n; i++ {
		v := int16(8000 * math.Sin(2*math.Pi*freq*float64(i)/ttsSampleRate))
		le.PutUint16(sample, uint16(v))
		buf.Write(sample)
	}
	return buf.Bytes()
}
