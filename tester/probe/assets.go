package probe

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"image"
	"image/png"
	"math"
	"net/url"
	"strings"
)

// PNG renders a w×h test image: a gradient keyed by seed, so different
// probes upload different bytes (no cache on the orchestrator can help).
func PNG(w, h int, seed int64) []byte {
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

// WAV renders seconds of 16 kHz mono 16-bit PCM: a tone whose pitch depends
// on seed (speech models return little or nothing for it, which is fine:
// the probe measures that a transcription comes back).
func WAV(seconds float64, seed int64) []byte {
	const rate = 16000
	n := int(seconds * rate)
	var b bytes.Buffer
	b.WriteString("RIFF")
	_ = binary.Write(&b, binary.LittleEndian, uint32(36+2*n))
	b.WriteString("WAVEfmt ")
	for _, v := range []any{uint32(16), uint16(1), uint16(1), uint32(rate), uint32(rate * 2), uint16(2), uint16(16)} {
		_ = binary.Write(&b, binary.LittleEndian, v) // to memory: cannot fail
	}
	b.WriteString("data")
	_ = binary.Write(&b, binary.LittleEndian, uint32(2*n))
	freq := 220 + float64(seed%8)*55
	for i := 0; i < n; i++ {
		v := int16(8000 * math.Sin(2*math.Pi*freq*float64(i)/rate))
		_ = binary.Write(&b, binary.LittleEndian, v)
	}
	return b.Bytes()
}

// WAVDuration parses a PCM WAV header and returns its length in seconds.
func WAVDuration(b []byte) (float64, error) {
	if len(b) < 12 || string(b[0:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		return 0, fmt.Errorf("not a RIFF/WAVE file")
	}
	var byteRate uint32
	for off := 12; off+8 <= len(b); {
		id := string(b[off : off+4])
		size := int(binary.LittleEndian.Uint32(b[off+4 : off+8]))
		body := off + 8
		switch id {
		case "fmt ":
			if size < 16 || body+16 > len(b) {
				return 0, fmt.Errorf("short fmt chunk")
			}
			byteRate = binary.LittleEndian.Uint32(b[body+8 : body+12])
		case "data":
			if byteRate == 0 {
				return 0, fmt.Errorf("data chunk before fmt chunk")
			}
			if size > len(b)-body {
				size = len(b) - body // streaming writers leave the size unset
			}
			return float64(size) / float64(byteRate), nil
		}
		off = body + size + size%2
	}
	return 0, fmt.Errorf("no data chunk")
}

// decodeDataURL decodes data:[<mediatype>][;base64],<data>.
func decodeDataURL(raw string) ([]byte, error) {
	meta, data, ok := strings.Cut(strings.TrimPrefix(raw, "data:"), ",")
	if !ok {
		return nil, invalid("media_url", "data URL without a comma")
	}
	if strings.HasSuffix(meta, ";base64") {
		// Strict: non-zero padding bits are not a valid encoding of any image.
		b, err := base64.StdEncoding.Strict().DecodeString(data)
		if err != nil {
			return nil, invalid("media_decode", "data URL base64: %v", err)
		}
		return b, nil
	}
	s, err := url.PathUnescape(data)
	if err != nil {
		return nil, invalid("media_decode", "data URL: %v", err)
	}
	return []byte(s), nil
}

// MaxPNGPixels bounds the size of a result image the tester decodes. The
// header is read first: a 65-byte PNG can declare 2^29×2^29 pixels, and
// decoding it would allocate that much (a runtime panic, or the tester
// killed for memory) before finding the data missing.
const MaxPNGPixels = 4096 * 4096

// decodePNG checks that b is a whole PNG that image/png would decode and
// returns its size (checkPNG: everything png.Decode checks, without building
// the image).
func decodePNG(b []byte) (w, h int, err error) {
	cfg, err := png.DecodeConfig(bytes.NewReader(b))
	if err != nil {
		return 0, 0, err
	}
	if int64(cfg.Width)*int64(cfg.Height) > MaxPNGPixels {
		return 0, 0, fmt.Errorf("declares %dx%d pixels, more than the %d a result image may have", cfg.Width, cfg.Height, MaxPNGPixels)
	}
	return checkPNG(b)
}
