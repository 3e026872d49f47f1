// Package pngfile renders PNG test images and checks result images strictly:
// everything image/png's decoder checks, at a bounded size, without building
// the image (see check).
package pngfile

import (
	"bytes"
	"fmt"
	"image"
	"image/png"
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
