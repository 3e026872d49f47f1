package probe

import (
	"bytes"
	"context"
	"fmt"
	"image/png"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/media/pngfile"
)

// Upscale probes POST /upscale: a small PNG in, one larger PNG out with the
// same aspect ratio, at most 4× each side (the x4 upscaler's factor).
type Upscale struct{}

type upscaleExpect struct{ W, H int }

// Info implements Pipeline.
func (Upscale) Info() capability.Pipeline { return mustPipeline(capability.Upscale) }

// Build implements Pipeline.
func (Upscale) Build(model string, seed int64) (*Request, error) {
	d := newDraw(seed)
	// Small inputs (a 4× upscaler's output grows 16-fold): 128–192 a side.
	sz := [2]int{d.step(128, 192, 32), d.step(128, 192, 32)}
	prompt := d.prompt()
	// go-livepeer's field order (ai/worker/multipart.go:187-209).
	body, ct, err := multipartBody(formFile{"image", d.filename("png"), pngfile.Pattern(sz[0], sz[1], d.raw)},
		[][2]string{{"prompt", prompt}, {"model_id", model}, {"safety_check", "false"}, {"num_inference_steps", "10"}})
	if err != nil {
		return nil, fmt.Errorf("upscale request: %w", err)
	}
	png := pngMaxBytes(maxUpscale*sz[0], maxUpscale*sz[1])
	return &Request{Body: body, ContentType: ct, Units: float64(sz[0] * sz[1]),
		Params: map[string]any{"model_id": model, "prompt": prompt, "width": sz[0], "height": sz[1]},
		Expect: upscaleExpect{W: sz[0], H: sz[1]}, MaxResponseBytes: inlineBody(1, png), MaxMediaBytes: png}, nil
}

// Validate implements Pipeline.
func (Upscale) Validate(ctx context.Context, req *Request, resp *Response, m *Media) (float64, error) {
	in := req.Expect.(upscaleExpect)
	var ir imageResponse
	if err := decodeJSON(resp, &ir); err != nil {
		return 0, err
	}
	if len(ir.Images) != 1 {
		return 0, invalid("image_count", "got %d images, want 1", len(ir.Images))
	}
	b, err := m.Get(ctx, ir.Images[0].URL)
	if err != nil {
		return 0, err
	}
	// The header first: decoding a small PNG that declares 4096×4096
	// costs 64 MiB.
	if cfg, err := png.DecodeConfig(bytes.NewReader(b)); err == nil && (cfg.Width > maxUpscale*in.W || cfg.Height > maxUpscale*in.H) {
		return 0, invalid("image_size", "upscaled %dx%d to %dx%d: more than %d× each side", in.W, in.H, cfg.Width, cfg.Height, maxUpscale)
	}
	w, h, err := pngfile.Check(b)
	if err != nil {
		return 0, invalid("png_decode", "upscaled image is not a PNG: %v", err)
	}
	if w <= in.W || h <= in.H || w*in.H != h*in.W {
		return 0, invalid("image_size", "upscaled %dx%d to %dx%d: not larger with the same aspect", in.W, in.H, w, h)
	}
	return float64(w * h), nil
}
