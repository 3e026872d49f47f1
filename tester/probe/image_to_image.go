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
	sz := pick(sizes, seed)
	prompt := pick(prompts, seed+1)
	params := map[string]any{"model_id": model, "prompt": prompt, "strength": 0.6, "num_inference_steps": 4,
		"num_images_per_prompt": 1, "width": sz[0], "height": sz[1]}
	body, ct, err := multipartBody([][2]string{{"model_id", model}, {"prompt", prompt}, {"strength", "0.6"},
		{"num_inference_steps", "4"}, {"num_images_per_prompt", "1"}, {"safety_check", "false"}},
		formFile{"image", "input.png", "image/png", pngfile.Gradient(sz[0], sz[1], seed)})
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
