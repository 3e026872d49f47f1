package probe

import (
	"context"
	"fmt"
	"strings"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/media/pngfile"
)

// ImageToText probes POST /image-to-text: a PNG in, a caption out, which
// must not be empty.
type ImageToText struct{}

// Info implements Pipeline.
func (ImageToText) Info() capability.Pipeline { return mustPipeline(capability.ImageToText) }

// Build implements Pipeline.
func (ImageToText) Build(model string, seed int64) (*Request, error) {
	sz := pick(sizes, seed)
	prompt := pick([]string{"a picture of", "describe the colors in", "this image shows"}, seed)
	body, ct, err := multipartBody([][2]string{{"model_id", model}, {"prompt", prompt}},
		formFile{"image", "input.png", "image/png", pngfile.Gradient(sz[0], sz[1], seed)})
	if err != nil {
		return nil, fmt.Errorf("image-to-text request: %w", err)
	}
	return &Request{Body: body, ContentType: ct, Units: float64(sz[0] * sz[1]),
		Params:           map[string]any{"model_id": model, "prompt": prompt, "width": sz[0], "height": sz[1]},
		MaxResponseBytes: captionBytes + jsonSlack, MaxMediaBytes: mediaSlack}, nil
}

// Validate implements Pipeline.
func (ImageToText) Validate(_ context.Context, _ *Request, resp *Response, _ *Media) (float64, error) {
	var tr struct{ Text string }
	if err := decodeJSON(resp, &tr); err != nil {
		return 0, err
	}
	words := len(strings.Fields(tr.Text))
	if words == 0 {
		return 0, invalid("text_empty", "empty caption")
	}
	return float64(words), nil
}
