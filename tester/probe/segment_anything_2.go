package probe

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/media/pngfile"
)

// SegmentAnything2 probes POST /segment-anything-2: a PNG and a point in,
// masks, scores and logits out (each a list printed as text). Scores must
// parse, be probabilities, and match the number of masks asked for.
//
// SAM2 resizes every input to 1024×1024 before its encoder, so a small
// input costs the GPU as much as a large one; it only shrinks the masks,
// which come back at the input's size printed as text. With small inputs and
// 0/1 masks (return_logits=false; logits come back anyway, at 256×256) an
// honest answer is a few MiB; 640×640 with logit masks ran past 16 MiB.
type SegmentAnything2 struct{}

// Info implements Pipeline.
func (SegmentAnything2) Info() capability.Pipeline { return mustPipeline(capability.SegmentAnything2) }

// Build implements Pipeline.
func (SegmentAnything2) Build(model string, seed int64) (*Request, error) {
	d := newDraw(seed)
	sz := [2]int{d.step(256, 320, 32), d.step(256, 320, 32)}
	x, y := sz[0]/4+d.rng.IntN(sz[0]/2), sz[1]/4+d.rng.IntN(sz[1]/2)
	point := fmt.Sprintf("[[%d,%d]]", x, y)
	// go-livepeer's field order (ai/worker/multipart.go:283-321).
	body, ct, err := multipartBody(formFile{"image", d.filename("png"), pngfile.Pattern(sz[0], sz[1], d.raw)},
		[][2]string{{"model_id", model}, {"point_coords", point}, {"point_labels", "[1]"},
			{"multimask_output", "true"}, {"return_logits", "false"}, {"normalize_coords", "true"}})
	if err != nil {
		return nil, fmt.Errorf("segment-anything-2 request: %w", err)
	}
	// Masks are input-sized, logits 256×256, each mask printed as text;
	// a row costs its brackets and separator.
	perMask := int64(sz[1])*(int64(sz[0])*samMaskValueBytes+4) + samLogitSide*(samLogitSide*samLogitBytes+4)
	return &Request{Body: body, ContentType: ct, Units: float64(sz[0] * sz[1]),
		Params: map[string]any{"model_id": model, "point_coords": point, "point_labels": "[1]", "multimask_output": true, "return_logits": false,
			"width": sz[0], "height": sz[1]},
		MaxResponseBytes: samMasks*perMask + jsonSlack, MaxMediaBytes: mediaSlack}, nil
}

// Validate implements Pipeline.
func (SegmentAnything2) Validate(_ context.Context, req *Request, resp *Response, _ *Media) (float64, error) {
	var mr struct{ Masks, Scores, Logits string }
	if err := decodeJSON(resp, &mr); err != nil {
		return 0, err
	}
	var scores []float64
	if err := json.Unmarshal([]byte(mr.Scores), &scores); err != nil {
		return 0, invalid("scores", "scores %q are not a list of numbers", bounded([]byte(mr.Scores), 60))
	}
	if len(scores) == 0 {
		return 0, invalid("scores", "no mask scores")
	}
	for _, s := range scores {
		if s < 0 || s > 1 {
			return 0, invalid("scores", "score %g is not a probability", s)
		}
	}
	// Raw elements: checked as JSON without a boxed float per pixel.
	var masks []json.RawMessage
	if err := json.Unmarshal([]byte(mr.Masks), &masks); err != nil || len(masks) != len(scores) {
		return 0, invalid("masks", "%d masks for %d scores", len(masks), len(scores))
	}
	return req.Units, nil
}
