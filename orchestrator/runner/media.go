package runner

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"image"
	_ "image/gif" // inputs may be GIF, as PIL accepts
	_ "image/jpeg"
	"image/png"

	"github.com/lpgauge/lpgauge/media/wav"
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
var ErrAudioFormat = wav.ErrFormat

// ttsSampleRate is Parler-TTS's output rate.
const ttsSampleRate = 44100

// renderWAV writes a 16-bit mono PCM WAV of the given length: a seeded tone
// whose pitch follows the text, so output is deterministic and non-silent.
func renderWAV(seconds float64, seed uint64) []byte {
	return wav.Tone(seconds, ttsSampleRate, 180+float64(splitmix(seed)%220))
}
