package conformance

import (
	"bytes"
	"encoding/json"
	"image/png"
	"io"
	"mime"
	"mime/multipart"
	"strconv"
	"testing"

	"github.com/lpgauge/lpgauge/media/wav"
	"github.com/lpgauge/lpgauge/tester/probe"
)

// gwForm is a request body as go-livepeer's gateway sees it: JSON fields,
// or multipart fields and files.
type gwForm struct {
	json   map[string]any
	fields map[string]string
	files  map[string][]byte
}

func gwParse(t *testing.T, req *probe.Request) gwForm {
	t.Helper()
	f := gwForm{fields: map[string]string{}, files: map[string][]byte{}}
	mt, params, err := mime.ParseMediaType(req.ContentType)
	if err != nil {
		t.Fatal(err)
	}
	if mt == "application/json" {
		if err := json.Unmarshal(req.Body, &f.json); err != nil {
			t.Fatal(err)
		}
		return f
	}
	mr := multipart.NewReader(bytes.NewReader(req.Body), params["boundary"])
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return f
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(p)
		if p.FileName() != "" {
			f.files[p.FormName()] = b
		} else {
			f.fields[p.FormName()] = string(b)
		}
	}
}

func (f gwForm) num(t *testing.T, key string, def int64) int64 {
	t.Helper()
	if v, ok := f.json[key]; ok {
		return int64(v.(float64))
	}
	if v, ok := f.fields[key]; ok {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q", key, v)
		}
		return n
	}
	return def
}

func (f gwForm) pngPixels(t *testing.T, key string) int64 {
	t.Helper()
	cfg, err := png.DecodeConfig(bytes.NewReader(f.files[key]))
	if err != nil {
		t.Fatalf("%s: %v", key, err)
	}
	return int64(cfg.Width) * int64(cfg.Height)
}

// §8.8: the units each probe pays for are the units go-livepeer's gateway
// computes from the same request body (server/ai_process.go): text-to-image
// height × width × num_images (231), image-to-image input pixels × num_images
// (385), image-to-video height × width × 25 frames (515), upscale and
// segment-anything-2 input pixels (669, 767), image-to-text input pixels
// (inPixels), llm max_tokens (1168), text-to-speech len(text) (874),
// audio-to-text whole seconds × 1000 (986), live-video-to-video's start 60 s
// of 1280×720×30 (1046). The fee is units × price
// (TestGatewayFee).
func TestGatewayUnitsPerPipeline(t *testing.T) {
	golivepeer := map[string]func(t *testing.T, f gwForm) int64{
		"text-to-image": func(t *testing.T, f gwForm) int64 {
			return f.num(t, "height", 512) * f.num(t, "width", 512) * max(f.num(t, "num_images_per_prompt", 1), 1)
		},
		"image-to-image": func(t *testing.T, f gwForm) int64 {
			return f.pngPixels(t, "image") * f.num(t, "num_images_per_prompt", 1)
		},
		"image-to-video": func(t *testing.T, f gwForm) int64 {
			return f.num(t, "height", 576) * f.num(t, "width", 1024) * 25
		},
		"upscale":            func(t *testing.T, f gwForm) int64 { return f.pngPixels(t, "image") },
		"segment-anything-2": func(t *testing.T, f gwForm) int64 { return f.pngPixels(t, "image") },
		"image-to-text":      func(t *testing.T, f gwForm) int64 { return f.pngPixels(t, "image") },
		"llm":                func(t *testing.T, f gwForm) int64 { return f.num(t, "max_tokens", 256) },
		"text-to-speech":     func(t *testing.T, f gwForm) int64 { return int64(len(f.json["text"].(string))) },
		// The live start pays 60 s of 1280×720×30 whatever the body
		// (initPixelsToPay, server/ai_process.go:1046).
		"live-video-to-video": func(*testing.T, gwForm) int64 { return 60 * 30 * 720 * 1280 },
		"audio-to-text": func(t *testing.T, f gwForm) int64 {
			secs, err := wav.Duration(f.files["audio"], int64(len(f.files["audio"])))
			if err != nil {
				t.Fatal(err)
			}
			return int64(secs) * 1000 // common.CalculateAudioDuration truncates to whole seconds
		},
	}
	for _, slug := range probe.Slugs() {
		t.Run(slug, func(t *testing.T) {
			units, ok := golivepeer[slug]
			if !ok {
				t.Fatalf("no go-livepeer fee rule for %s", slug)
			}
			p, _ := probe.Lookup(slug)
			for seed := int64(0); seed < 6; seed++ {
				req, err := p.Build("m", seed)
				if err != nil {
					t.Fatal(err)
				}
				if want := units(t, gwParse(t, req)); req.Units != float64(want) {
					t.Fatalf("seed %d: the tester pays for %g units, go-livepeer %d", seed, req.Units, want)
				}
			}
		})
	}
}
