package probe

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/lpgauge/lpgauge/media/pngfile"
	"github.com/lpgauge/lpgauge/media/wav"
)

// pngHeaderOnly is a PNG that declares w×h RGBA pixels and carries none: 65
// bytes a hostile orchestrator can send to make a decoder allocate w×h×4.
func pngHeaderOnly(w, h uint32) []byte {
	chunk := func(b *bytes.Buffer, typ string, data []byte) {
		_ = binary.Write(b, binary.BigEndian, uint32(len(data)))
		b.WriteString(typ)
		b.Write(data)
		_ = binary.Write(b, binary.BigEndian, crc32.ChecksumIEEE(append([]byte(typ), data...)))
	}
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 6
	chunk(&b, "IHDR", ihdr)
	chunk(&b, "IDAT", []byte{0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01})
	chunk(&b, "IEND", nil)
	return b.Bytes()
}

func dataPNG(b []byte) string { return "data:image/png;base64," + base64.StdEncoding.EncodeToString(b) }

// deadMedia fetches http(s) media from a loopback port nobody listens on, so
// a fuzzed same-host URL fails fast instead of reaching the network.
func deadMedia() *Media {
	base, _ := url.Parse("http://127.0.0.1:1")
	return &Media{client: &http.Client{}, base: base, max: 1 << 20}
}

// FuzzValidateImages feeds orchestrator answers to the text-to-image
// validator: it never panics, every refusal is a classified *Error, and a
// pass means exactly the asked-for images.
func FuzzValidateImages(f *testing.F) {
	good := dataPNG(pngfile.Gradient(8, 4, 1))
	for _, s := range []string{
		`{"images":[{"url":"` + good + `","seed":1,"nsfw":false}]}`,
		`{"images":[{"url":"` + good + `"},{"url":"` + good + `"}]}`,
		`{"images":[{"url":"` + dataPNG(pngHeaderOnly(1<<29, 1<<29)) + `"}]}`,
		`{"images":[{"url":"` + dataPNG(pngHeaderOnly(60000, 60000)) + `"}]}`,
		`{"images":[{"url":"` + dataPNG(pngfile.Gradient(4, 8, 1)) + `"}]}`,
		`{"images":[{"url":"data:,%ZZ"}]}`, `{"images":[{"url":"data:image/png;base64,@@"}]}`,
		`{"images":[{"url":"/stream/abc/0.png"}]}`, `{"images":[{"url":"http://evil.example/x.png"}]}`,
		`{"images":[{"url":""}]}`, `{"images":[]}`, `{"images":null}`, `{"images":[{"seed":"x"}]}`,
		`[]`, `null`, `{`, ``,
	} {
		f.Add(s, "application/json")
		f.Add(s, "")
	}
	f.Add(`{"images":[]}`, "text/html")
	f.Fuzz(func(t *testing.T, body, contentType string) {
		resp := &Response{Status: 200, Header: http.Header{}, Body: []byte(body)}
		if contentType != "" {
			resp.Header.Set("Content-Type", contentType)
		}
		want := imageExpect{W: 8, H: 4, N: 1}
		if strings.Count(body, `"url"`) == 2 {
			want.N = 2
		}
		units, err := validateImages(t.Context(), want, resp, deadMedia())
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Code == "" {
				t.Fatalf("%q: unclassified error %T %v", body, err, err)
			}
			if e.Class != ClassInvalid && e.Class != ClassNetwork && e.Class != ClassTimeout {
				t.Fatalf("%q: class %s for an output check", body, e.Class)
			}
			return
		}
		if units != float64(want.W*want.H*want.N) {
			t.Fatalf("%q: passed with %v units, want %d", body, units, want.W*want.H*want.N)
		}
	})
}

// FuzzDecodeMedia feeds media bytes and data URLs to the decoders the
// validators use: no panic, and no decode larger than pngfile.MaxPixels.
func FuzzDecodeMedia(f *testing.F) {
	for _, b := range [][]byte{pngfile.Gradient(3, 2, 0), pngHeaderOnly(1<<29, 1<<29), pngHeaderOnly(5000, 5000), speechWAV(0.1, 1),
		[]byte("RIFF\x00\x00\x00\x00WAVEdata\xff\xff\xff\xff"), []byte("RIFF\x00\x00\x00\x00WAVEfmt \x10\x00\x00\x00"), {}} {
		f.Add(b, "data:image/png;base64,"+base64.StdEncoding.EncodeToString(b))
	}
	f.Add([]byte{}, "data:text/plain,hello%20world")
	f.Add([]byte{}, "data:")
	f.Fuzz(func(t *testing.T, b []byte, raw string) {
		if w, h, err := pngfile.Check(b); err == nil && (w*h > pngfile.MaxPixels || w <= 0 || h <= 0) {
			t.Fatalf("decoded a %dx%d PNG", w, h)
		}
		if secs, err := wav.Duration(b, int64(len(b))); err == nil && (secs < 0 || secs != secs) {
			t.Fatalf("WAV of %v seconds", secs)
		}
		got, err := decodeDataURL(raw)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Class != ClassInvalid {
				t.Fatalf("%q: error %v is not invalid_output", raw, err)
			}
			return
		}
		if meta, _, _ := strings.Cut(strings.TrimPrefix(raw, "data:"), ","); strings.HasSuffix(meta, ";base64") {
			// Decoding is lenient (non-zero padding bits pass), so compare
			// what the bytes re-encode to, decoded again.
			again, err := decodeDataURL("data:" + meta + "," + base64.StdEncoding.EncodeToString(got))
			if err != nil || !bytes.Equal(again, got) {
				t.Fatalf("%q: base64 round trip gave %q, %v", raw, again, err)
			}
		}
	})
}

// Found by reading what FuzzValidateImages feeds decodePNG: a 65-byte PNG
// declaring 2^29×2^29 pixels panicked the tester (makeslice out of range)
// and one declaring 60000×60000 made it allocate 13 GiB. Both are now an
// invalid_output refusal read from the header.
func TestHugePNGHeaderRefusedWithoutDecoding(t *testing.T) {
	for _, dim := range []uint32{1 << 29, 60000, 4097} {
		body := `{"images":[{"url":"` + dataPNG(pngHeaderOnly(dim, dim)) + `"}]}`
		resp := &Response{Status: 200, Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(body)}
		_, err := validateImages(t.Context(), imageExpect{W: 512, H: 512, N: 1}, resp, deadMedia())
		var e *Error
		if !errors.As(err, &e) || e.Class != ClassInvalid || e.Code != "png_decode" || !strings.Contains(e.Message, "pixels") {
			t.Errorf("%dx%d: %v, want invalid_output/png_decode naming the pixel count", dim, dim, err)
		}
	}
}
