package probe

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/media/pngfile"
)

// imageSize draws a diffusion model's usual request size: each side a
// multiple of 64 from 512 to 768 (SD 1.5 and SDXL-turbo sizes a user asks
// for; bigger ones cost CPU reference runners in tests too much).
func (d draw) imageSize() (w, h int) { return d.step(512, 768, 64), d.step(512, 768, 64) }

// TextToImage probes POST /text-to-image: JSON in, image URLs out. The output
// must be num_images_per_prompt PNGs of exactly the requested size.
type TextToImage struct {
	// Steps is num_inference_steps (default 4: a timing probe, not art).
	Steps int
	// Images is num_images_per_prompt (default 1).
	Images int
}

type imageExpect struct{ W, H, N int }

// Info implements Pipeline.
func (TextToImage) Info() capability.Pipeline { return mustPipeline(capability.TextToImage) }

// Build implements Pipeline.
func (p TextToImage) Build(model string, seed int64) (*Request, error) {
	steps, n := p.Steps, p.Images
	if steps <= 0 {
		steps = 4
	}
	if n <= 0 {
		n = 1
	}
	d := newDraw(seed)
	w, h := d.imageSize()
	sz := [2]int{w, h}
	// JSON keys sorted, as go-livepeer marshals its generated
	// TextToImageParams (ai/worker/runner.gen.go, fields in key order).
	params := map[string]any{
		"model_id":              model,
		"prompt":                d.prompt(),
		"width":                 sz[0],
		"height":                sz[1],
		"num_inference_steps":   steps,
		"num_images_per_prompt": n,
		"seed":                  d.genSeed(),
		"safety_check":          false,
	}
	body, err := json.Marshal(params)
	if err != nil {
		return nil, err
	}
	png := pngMaxBytes(sz[0], sz[1])
	return &Request{
		Body: body, ContentType: "application/json", Params: params,
		Units: float64(sz[0] * sz[1] * n), Expect: imageExpect{W: sz[0], H: sz[1], N: n},
		MaxResponseBytes: inlineBody(n, png), MaxMediaBytes: png,
	}, nil
}

// imageResponse is ai-runner's ImageResponse (also the orchestrator's).
type imageResponse struct {
	Images []struct {
		URL  string `json:"url"`
		Seed int64  `json:"seed"`
		NSFW bool   `json:"nsfw"`
	} `json:"images"`
}

// Validate implements Pipeline.
func (TextToImage) Validate(ctx context.Context, req *Request, resp *Response, m *Media) (float64, error) {
	return validateImages(ctx, req.Expect.(imageExpect), resp, m)
}

// validateImages checks an ImageResponse: count, PNG decoding, dimensions.
func validateImages(ctx context.Context, want imageExpect, resp *Response, m *Media) (float64, error) {
	var ir imageResponse
	if err := decodeJSON(resp, &ir); err != nil {
		return 0, err
	}
	if len(ir.Images) != want.N {
		return 0, invalid("image_count", "got %d images, asked for %d", len(ir.Images), want.N)
	}
	var units float64
	for i, img := range ir.Images {
		if img.URL == "" {
			return 0, invalid("media_missing", "image %d has no url", i)
		}
		b, err := m.Get(ctx, img.URL)
		if err != nil {
			return 0, err
		}
		// A header that already says the size is wrong is enough: decoding a
		// small PNG that declares 4096×4096 costs 16–64 MiB, and several at
		// once blew the tester's memory (faults.TestHostileZoo).
		if cfg, err := png.DecodeConfig(bytes.NewReader(b)); err == nil && want.W > 0 &&
			int64(cfg.Width)*int64(cfg.Height) <= pngfile.MaxPixels && (cfg.Width != want.W || cfg.Height != want.H) {
			return 0, invalid("image_size", "image %d is %dx%d, asked for %dx%d", i, cfg.Width, cfg.Height, want.W, want.H)
		}
		w, h, err := pngfile.Check(b)
		if err != nil {
			return 0, invalid("png_decode", "image %d is not a PNG: %v", i, err)
		}
		if want.W > 0 && (w != want.W || h != want.H) {
			return 0, invalid("image_size", "image %d is %dx%d, asked for %dx%d", i, w, h, want.W, want.H)
		}
		units += float64(w * h)
	}
	return units, nil
}

// decodeJSON checks the content type and decodes a JSON body.
func decodeJSON(resp *Response, v any) error {
	if ct := resp.Header.Get("Content-Type"); ct != "" && !isJSON(ct) {
		return invalid("content_type", "content type %q, want application/json", ct)
	}
	if err := json.Unmarshal(resp.Body, v); err != nil {
		return invalid("json", "response is not the expected JSON: %v", err)
	}
	return nil
}

func isJSON(ct string) bool {
	return len(ct) >= 16 && ct[:16] == "application/json"
}

func mustPipeline(id capability.ID) capability.Pipeline {
	p, ok := capability.ByID(id)
	if !ok {
		panic(fmt.Sprintf("capability %d missing from capability", id))
	}
	return p
}
