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
	d := newDraw(seed)
	// Captioning models (BLIP) resize to 384 px: users' thumbnails and
	// photos alike, 256–512 a side here.
	sz := [2]int{d.step(256, 512, 64), d.step(256, 512, 64)}
	prompt := captionPrompts[d.rng.IntN(len(captionPrompts))]
	// go-livepeer's field order (ai/worker/multipart.go:350-358).
	body, ct, err := multipartBody(formFile{"image", d.filename("png"), pngfile.Pattern(sz[0], sz[1], d.raw)},
		[][2]string{{"prompt", prompt}, {"model_id", model}})
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
