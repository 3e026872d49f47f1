package probe

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/lpgauge/lpgauge/gateway/capability"
)

// SegmentAnything2 probes POST /segment-anything-2: a PNG and a point in,
// masks, scores and logits out (each a list printed as text). Scores must
// parse, be probabilities, and match the number of masks asked for.
type SegmentAnything2 struct{}

// Info implements Pipeline.
func (SegmentAnything2) Info() capability.Pipeline { return mustPipeline(capability.SegmentAnything2) }

// Build implements Pipeline.
func (SegmentAnything2) Build(model string, seed int64) (*Request, error) {
	sz := pick(sizes, seed)
	x, y := sz[0]/2+int(seed%17), sz[1]/2
	point := fmt.Sprintf("[[%d,%d]]", x, y)
	body, ct, err := multipartBody([][2]string{{"model_id", model}, {"point_coords", point}, {"point_labels", "[1]"},
		{"multimask_output", "true"}, {"return_logits", "true"}, {"normalize_coords", "true"}},
		formFile{"image", "input.png", "image/png", PNG(sz[0], sz[1], seed)})
	if err != nil {
		return nil, fmt.Errorf("segment-anything-2 request: %w", err)
	}
	return &Request{Body: body, ContentType: ct, Units: float64(sz[0] * sz[1]),
		Params: map[string]any{"model_id": model, "point_coords": point, "point_labels": "[1]", "multimask_output": true}}, nil
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
	var masks []any
	if err := json.Unmarshal([]byte(mr.Masks), &masks); err != nil || len(masks) != len(scores) {
		return 0, invalid("masks", "%d masks for %d scores", len(masks), len(scores))
	}
	return req.Units, nil
}
