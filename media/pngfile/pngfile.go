// Package pngfile renders PNG test images and checks result images strictly:
// everything image/png's decoder checks, at a bounded size, without building
// the image (see check).
package pngfile

import (
	"bytes"
	"fmt"
	"image"
	"image/png"
	"math"
	"math/rand/v2"
)

// MaxPixels bounds the size of an image Check accepts. The header is read
// first: a 65-byte PNG can declare 2^29×2^29 pixels, and decoding it would
// allocate that much (a runtime panic, or the process killed for memory)
// before finding the data missing.
const MaxPixels = 4096 * 4096

// Check says whether b is a whole PNG that image/png would decode, of at most
// MaxPixels, and returns its size.
func Check(b []byte) (w, h int, err error) {
	cfg, err := png.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		return 0, 0, err
	}
	if int64(cfg.Width)*int64(cfg.Height) > MaxPixels {
		return 0, 0, fmt.Errorf("declares %dx%d pixels, more than the %d a result image may have", cfg.Width, cfg.Height, MaxPixels)
	}
	return check(b)
}

// Gradient renders a w×h test image: a gradient keyed by seed, so different
// probes upload different bytes (no cache on the orchestrator can help).
func Gradient(w, h int, seed int64) []byte {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	s := uint8(seed)
	for y := 0; y < h; y++ {
		row := img.Pix[y*img.Stride:]
		g := uint8(y * 255 / max(h, 1))
		for x := 0; x < w; x++ {
			row[4*x], row[4*x+1], row[4*x+2], row[4*x+3] = uint8(x*255/max(w, 1))^s, g, s*7, 255
		}
	}
	var b bytes.Buffer
	// Speed over size: tests and probes make many of these.
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	_ = enc.Encode(&b, img) // encoding to memory cannot fail
	return b.Bytes()
}

// Pattern renders a w×h procedural picture keyed by all 64 bits of seed: a
// two-colour gradient at a drawn angle, wave bands, a few soft discs of
// drawn colours, sizes and places. Unlike Gradient
// (256 variants) no two seeds give the same image in practice, so no
// upload is ever seen twice by an orchestrator. No per-pixel noise: it
// made the PNG encoder four times slower (probes and tests make many).
func Pattern(w, h int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, seed^0x5851f42d4c957f2d))
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	col := func() [3]float64 { return [3]float64{rng.Float64() * 255, rng.Float64() * 255, rng.Float64() * 255} }
	c0, c1 := col(), col()
	ang := rng.Float64() * 2 * math.Pi
	diag := math.Hypot(float64(w), float64(h))
	dx, dy := math.Cos(ang)/diag, math.Sin(ang)/diag
	// The wave depends on x+y only: one table.
	freq, phase, amp := 2+rng.Float64()*20, rng.Float64()*2*math.Pi, rng.Float64()*40
	wave := make([]float64, w+h)
	for i := range wave {
		wave[i] = amp * math.Sin(freq*2*math.Pi*float64(i)/diag+phase)
	}
	for y := 0; y < h; y++ {
		row := img.Pix[y*img.Stride:]
		for x := 0; x < w; x++ {
			t := float64(x)*dx + float64(y)*dy + 0.5
			for k := 0; k < 3; k++ {
				v := c0[k] + (c1[k]-c0[k])*t + wave[x+y]
				row[4*x+k] = uint8(max(0, min(255, v)))
			}
			row[4*x+3] = 255
		}
	}
	for range 1 + rng.IntN(5) {
		cx, cy := rng.Float64()*float64(w), rng.Float64()*float64(h)
		r := (0.05 + 0.3*rng.Float64()) * float64(min(w, h))
		c := col()
		for y := max(0, int(cy-r)); y < min(h, int(cy+r)+1); y++ {
			row := img.Pix[y*img.Stride:]
			for x := max(0, int(cx-r)); x < min(w, int(cx+r)+1); x++ {
				dist := math.Hypot(float64(x)-cx, float64(y)-cy)
				if dist >= r {
					continue
				}
				a := 1 - dist/r
				for k := 0; k < 3; k++ {
					row[4*x+k] = uint8(float64(row[4*x+k])*(1-a) + c[k]*a)
				}
			}
		}
	}
	var b bytes.Buffer
	b.Grow(w * h / 2) // smooth pictures compress to well under a byte a pixel
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	_ = enc.Encode(&b, img) // encoding to memory cannot fail
	return b.Bytes()
}
