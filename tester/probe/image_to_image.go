package probe

import (
	"context"
	"fmt"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/media/pngfile"
)

// ImageToImage probes POST /image-to-image: a generated PNG and a prompt in
// (multipart), images out; each must be a PNG of the input's size.
type ImageToImage struct{}

// Info implements Pipeline.
func (ImageToImage) Info() capability.Pipeline { return mustPipeline(capability.ImageToImage) }

// Build implements Pipeline.
func (ImageToImage) Build(model string, seed int64) (*Request, error) {
	d := newDraw(seed)
	w, h := d.imageSize()
	sz := [2]int{w, h}
	prompt := d.prompt()
	strength := 0.4 + 0.05*float64(d.rng.IntN(9))
	params := map[string]any{"model_id": model, "prompt": prompt, "strength": strength, "num_inference_steps": 4,
		"num_images_per_prompt": 1, "width": sz[0], "height": sz[1]}
	// go-livepeer's field order (ai/worker/multipart.go:35-87).
	body, ct, err := multipartBody(formFile{"image", d.filename("png"), pngfile.Pattern(sz[0], sz[1], d.raw)},
		[][2]string{{"prompt", prompt}, {"model_id", model}, {"strength", goFloat(strength)},
			{"safety_check", "false"}, {"num_images_per_prompt", "1"}, {"num_inference_steps", "4"}})
	if err != nil {
		return nil, fmt.Errorf("image-to-image request: %w", err)
	}
	png := pngMaxBytes(sz[0], sz[1])
	return &Request{Body: body, ContentType: ct, Params: params, Units: float64(sz[0] * sz[1]),
		Expect: imageExpect{W: sz[0], H: sz[1], N: 1}, MaxResponseBytes: inlineBody(1, png), MaxMediaBytes: png}, nil
}

// Validate implements Pipeline.
func (ImageToImage) Validate(ctx context.Context, req *Request, resp *Response, m *Media) (float64, error) {
	return validateImages(ctx, req.Expect.(imageExpect), resp, m)
}
