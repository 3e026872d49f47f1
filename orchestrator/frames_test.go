package orchestrator

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"image"
	"image/jpeg"
	"image/png"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/lpgauge/lpgauge/orchestrator/runner"
	"time"
)

// pngHeaderOnly is a PNG that declares w×h RGBA pixels and carries none: a
// few bytes a hostile runner can answer to make a decoder allocate w×h×4.
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

func framesAnswer(frames ...[]byte) []byte {
	var list []map[string]any
	for _, f := range frames {
		list = append(list, map[string]any{"url": "data:image/png;base64," + base64.StdEncoding.EncodeToString(f), "seed": 1, "nsfw": false})
	}
	b, _ := json.Marshal(map[string]any{"frames": [][]map[string]any{list}})
	return b
}

// A runner's image-to-video frames are decoded into the video only after
// their PNG headers say they are of a sane size: a frame that declares
// billions of pixels is refused as an invalid result before any pixel is
// allocated, and the orchestrator keeps serving.
func TestImageToVideoRefusesOversizedFrames(t *testing.T) {
	var small, wide bytes.Buffer
	_ = png.Encode(&small, image.NewGray(image.Rect(0, 0, 8, 8)))
	_ = png.Encode(&wide, image.NewGray(image.Rect(0, 0, 16, 8)))
	tests := []struct {
		name   string
		answer []byte
		status int
		want   string
	}{
		{"huge declared frame", framesAnswer(pngHeaderOnly(1<<15, 1<<15)), http.StatusInternalServerError, "declares 32768x32768 pixels"},
		{"frame just over the bound", framesAnswer(small.Bytes(), pngHeaderOnly(4097, 4096)), http.StatusInternalServerError, "more than the 16777216 a frame may have"},
		{"too many pixels in all", framesAnswer(repeat(pngHeaderOnly(4096, 4096), 17)...), http.StatusInternalServerError, "frames total more than"},
		{"frames of two sizes", framesAnswer(small.Bytes(), wide.Bytes()), http.StatusInternalServerError, "frame 1 is 16x8, the clip's first 8x8"},
		{"sane frames", framesAnswer(small.Bytes(), small.Bytes()), http.StatusOK, `"images"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			real, err := runner.New(runner.Config{Pipeline: "image-to-video", ModelID: "ext/i2v"})
			if err != nil {
				t.Fatal(err)
			}
			defer real.Close()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodPost && r.URL.Path == "/image-to-video" {
					w.Header().Set("Content-Type", "application/json")
					_, _ = w.Write(tt.answer)
					return
				}
				real.Handler().ServeHTTP(w, r)
			}))
			defer srv.Close()
			// The external runner is used once its health answers; under a
			// loaded make test that can take longer than the rig's 1 s queue
			// timeout, which is not what this test is about.
			r := newRig(t, `[{"pipeline":"image-to-video","model_id":"ext/i2v","url":"`+srv.URL+`","capacity":1}]`, runner.Latency{},
				func(c *Config) { c.QueueTimeout = 15 * time.Second })
			body, ct := pngPart(t, 16, 16)
			body = bytes.Replace(body, []byte("stabilityai/stable-video-diffusion-img2vid-xt"), []byte("ext/i2v"), 1)
			resp, out := post(t, r.url+"/image-to-video", ct, body)
			if resp.StatusCode != tt.status || !strings.Contains(string(out), tt.want) {
				t.Fatalf("got %d %.300s, want %d containing %q", resp.StatusCode, out, tt.status, tt.want)
			}
		})
	}
}

func repeat(b []byte, n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = b
	}
	return out
}

// mp4Frames decodes the header of every JPEG sample of an MP4's first
// track, found the way a player finds them: stsz sizes, stsc chunks of
// samples, stco chunk offsets.
func mp4Frames(t *testing.T, f []byte) []image.Config {
	t.Helper()
	be := binary.BigEndian
	var find func(b []byte, path ...string) []byte
	find = func(b []byte, path ...string) []byte {
		for len(b) >= 8 {
			size := be.Uint32(b)
			if size < 8 || int(size) > len(b) {
				t.Fatalf("box %q: size %d with %d bytes left", b[4:8], size, len(b))
			}
			if string(b[4:8]) == path[0] {
				if len(path) == 1 {
					return b[8:size]
				}
				return find(b[8:size], path[1:]...)
			}
			b = b[size:]
		}
		t.Fatalf("no box %v", path)
		return nil
	}
	if len(f) < 8 || string(f[4:8]) != "ftyp" {
		t.Fatalf("not an MP4: %q", f[:min(len(f), 8)])
	}
	stbl := []string{"moov", "trak", "mdia", "minf", "stbl"}
	if entry := find(f, append(stbl, "stsd")...); string(entry[12:16]) != "jpeg" {
		t.Fatalf("sample entry %q, want jpeg", entry[12:16])
	}
	stsz := find(f, append(stbl, "stsz")...)
	stsc := find(f, append(stbl, "stsc")...)
	stco := find(f, append(stbl, "stco")...)
	if be.Uint32(stsc[4:]) != 1 || be.Uint32(stco[4:]) != 1 {
		t.Fatalf("%d stsc entries and %d chunks, want one chunk", be.Uint32(stsc[4:]), be.Uint32(stco[4:]))
	}
	off := be.Uint32(stco[8:])
	var out []image.Config
	for i := range be.Uint32(stsz[8:]) {
		size := be.Uint32(stsz[12+4*i:])
		cfg, err := jpeg.DecodeConfig(bytes.NewReader(f[off : off+size]))
		if err != nil {
			t.Fatalf("sample %d: %v", i, err)
		}
		out = append(out, cfg)
		off += size
	}
	return out
}
