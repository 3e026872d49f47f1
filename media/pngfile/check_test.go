package pngfile

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"image"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// agree fails t when check and png.Decode disagree on b: a PNG the
// tester rejects but any Go client would decode would blame an orchestrator
// for nothing; one it accepts that png.Decode refuses would pass a broken
// image.
func agree(t testing.TB, name string, b []byte) {
	t.Helper()
	if cfg, err := png.DecodeConfig(bytes.NewReader(b)); err == nil && int64(cfg.Width)*int64(cfg.Height) > 1<<20 {
		// png.Decode would allocate the image it declares before finding
		// the data short (Check caps the size first).
		return
	}
	w, h, err := check(b)
	img, derr := png.Decode(bytes.NewReader(b))
	switch {
	case (err == nil) != (derr == nil):
		t.Fatalf("%s: check says %v, png.Decode says %v", name, err, derr)
	case err == nil && (img.Bounds().Dx() != w || img.Bounds().Dy() != h):
		t.Fatalf("%s: check says %dx%d, png.Decode %v", name, w, h, img.Bounds())
	}
}

// goPNGSuite is the PngSuite copy shipped with Go's source (every colour
// type, bit depth and interlacing, with tRNS, PLTE and ancillary chunks).
func goPNGSuite(t *testing.T) []string {
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Fatalf("go env GOROOT: %v", err)
	}
	files, _ := filepath.Glob(filepath.Join(strings.TrimSpace(string(out)), "src", "image", "png", "testdata", "pngsuite", "*.png"))
	if len(files) < 20 {
		t.Fatalf("found %d PngSuite files under GOROOT: the Go source tree is needed for this test", len(files))
	}
	return files
}

// encoded are PNGs from Go's encoder in every form it writes: grey 8/16,
// truecolour, truecolour with alpha 8/16, and paletted at bit depths 1, 2, 4
// and 8 with a transparent entry (tRNS).
func encoded(t testing.TB) map[string][]byte {
	out := map[string][]byte{}
	add := func(name string, img image.Image) {
		var b bytes.Buffer
		if err := png.Encode(&b, img); err != nil {
			t.Fatal(err)
		}
		out[name] = b.Bytes()
	}
	for _, sz := range [][2]int{{1, 1}, {7, 3}, {33, 17}} {
		r := image.Rect(0, 0, sz[0], sz[1])
		gray, gray16, rgba, nrgba, nrgba64 := image.NewGray(r), image.NewGray16(r), image.NewRGBA(r), image.NewNRGBA(r), image.NewNRGBA64(r)
		for y := 0; y < sz[1]; y++ {
			for x := 0; x < sz[0]; x++ {
				v := uint8(x*31 + y*17)
				gray.SetGray(x, y, color.Gray{v})
				gray16.SetGray16(x, y, color.Gray16{uint16(v) * 257})
				rgba.SetRGBA(x, y, color.RGBA{v, 255 - v, v / 2, 255})
				nrgba.SetNRGBA(x, y, color.NRGBA{v, 255 - v, v / 2, v | 1})
				nrgba64.SetNRGBA64(x, y, color.NRGBA64{uint16(v) << 8, 7, 9, 40000})
			}
		}
		tag := func(s string) string { return s + "-" + string(rune('a'+sz[0]%26)) }
		add(tag("gray"), gray)
		add(tag("gray16"), gray16)
		add(tag("rgb"), rgba)
		add(tag("rgba"), nrgba)
		add(tag("rgba16"), nrgba64)
		for _, n := range []int{2, 4, 16, 256} {
			pal := make(color.Palette, n)
			for i := range pal {
				pal[i] = color.NRGBA{uint8(i), uint8(3 * i), 0, 255}
			}
			pal[0] = color.NRGBA{0, 0, 0, 0}
			p := image.NewPaletted(r, pal)
			for i := range p.Pix {
				p.Pix[i] = uint8(i % n)
			}
			add(tag("pal")+string(rune('0'+len(pal)%10)), p)
		}
	}
	out["probe-asset"] = Gradient(64, 48, 3)
	return out
}

// chunks splits a PNG into its chunks' offsets (length field) and sizes.
func chunks(b []byte) (offs, sizes []int) {
	for off := 8; off+12 <= len(b); {
		n := int(binary.BigEndian.Uint32(b[off:]))
		if n < 0 || off+12+n > len(b) {
			break
		}
		offs, sizes = append(offs, off), append(sizes, n)
		off += 12 + n
	}
	return offs, sizes
}

// recrc rewrites the CRC of the chunk at off, so a mutation inside it reaches
// the check behind the CRC (IHDR rules, inflate, filter bytes).
func recrc(b []byte, off, n int) {
	binary.BigEndian.PutUint32(b[off+8+n:], crc32.ChecksumIEEE(b[off+4:off+8+n]))
}

func TestCheckPNGAgreesWithDecode(t *testing.T) {
	for _, f := range goPNGSuite(t) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		agree(t, filepath.Base(f), b)
	}
	for name, b := range encoded(t) {
		if _, _, err := check(b); err != nil {
			t.Fatalf("%s: a PNG from Go's encoder: %v", name, err)
		}
		// Every truncation (the usual broken download).
		for n := 0; n < len(b); n++ {
			agree(t, name+" truncated", b[:n])
		}
		// Every byte of every chunk changed, CRC kept right so the
		// change is judged on its meaning, and left wrong.
		offs, sizes := chunks(b)
		for i, off := range offs {
			for p := off; p < off+8+sizes[i]; p++ {
				for _, x := range []byte{0x01, 0xff} {
					m := bytes.Clone(b)
					m[p] ^= x
					if x == 0xff {
						agree(t, name+" flipped", m)
					}
					recrc(m, off, sizes[i])
					agree(t, name+" flipped, CRC fixed", m)
				}
			}
		}
		// Trailing garbage after IEND and an extra chunk before it.
		agree(t, name+" trailing", append(bytes.Clone(b), "garbage"...))
		last := offs[len(offs)-1]
		extra := append(bytes.Clone(b[:last]), 0, 0, 0, 0, 'I', 'D', 'A', 'T', 0x35, 0xaf, 0x06, 0x1e)
		agree(t, name+" empty IDAT after data", append(extra, b[last:]...))
	}
}

// TestCheckPNGRejectsBrokenImages: what a user would see as a broken image
// is refused.
func TestCheckPNGRejectsBrokenImages(t *testing.T) {
	b := Gradient(64, 48, 1)
	if w, h, err := check(b); err != nil || w != 64 || h != 48 {
		t.Fatalf("a good 64x48 PNG: %dx%d, %v", w, h, err)
	}
	offs, sizes := chunks(b)
	idat := -1
	for i, off := range offs {
		if string(b[off+4:off+8]) == "IDAT" {
			idat = i
		}
	}
	cut := bytes.Clone(b[:offs[idat]+8+sizes[idat]/2])
	if _, _, err := check(cut); err == nil {
		t.Fatal("a PNG cut in the middle of its pixel data was accepted")
	}
	// Pixel data corrupted with a correct chunk CRC: only inflating the
	// whole stream (Adler-32) or the scanline checks can catch it.
	m := bytes.Clone(b)
	m[offs[idat]+8+sizes[idat]-3] ^= 0x55
	recrc(m, offs[idat], sizes[idat])
	if _, _, err := check(m); err == nil {
		t.Fatal("a PNG with corrupted pixel data (chunk CRC fixed) was accepted")
	}
	if _, _, err := check(pngHeaderOnly(4096, 4096)); err == nil {
		t.Fatal("a PNG that declares 4096x4096 pixels and carries none was accepted")
	}
}

func FuzzCheckPNG(f *testing.F) {
	for _, b := range encoded(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		agree(t, "fuzzed", b)
	})
}

// BenchmarkPNGValidation compares the result-image check with a full
// png.Decode on a 512x512 image like a text-to-image result.
//
//	go test -run '^$' -bench PNGValidation -benchmem ./media/pngfile/
func BenchmarkPNGValidation(b *testing.B) {
	img := Gradient(512, 512, 5)
	b.Run("checkPNG", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, _, err := check(img); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("png.Decode", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := png.Decode(bytes.NewReader(img)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

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
