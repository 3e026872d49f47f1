package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
)

func init() {
	specs["segment-anything-2"] = pipelineSpec{errName: "Segment-anything-2", multipart: true, parse: parseSAM2}
}

// MasksResponse is ai-runner's MasksResponse: Python lists printed as text.
type MasksResponse struct {
	Masks  string `json:"masks"`
	Scores string `json:"scores"`
	Logits string `json:"logits"`
}

// maskSide is the long side of the masks and logits this runner returns.
// SAM2 returns full-resolution masks; printed as text those run to megabytes,
// which costs a CPU runner more than it tells a tester.
const maskSide = 64

func parseSAM2(_ *Runner, p *params) (task, error) {
	w, h, imgErr := inputImage(p)
	var prompts [4]any
	for i, f := range []string{"point_coords", "point_labels", "box", "mask_input"} {
		s := p.str(f, "", false)
		if s == "" {
			continue
		}
		if err := json.Unmarshal([]byte(s), &prompts[i]); err != nil {
			return task{}, badRequest(fmt.Sprintf("%s must be a JSON array.", f))
		}
		if _, ok := prompts[i].([]any); !ok {
			return task{}, badRequest(fmt.Sprintf("%s must be a JSON array.", f))
		}
	}
	multi := p.boolean("multimask_output", true)
	_ = p.boolean("return_logits", true)
	_ = p.boolean("normalize_coords", true)
	if imgErr != nil {
		return task{}, imgErr
	}
	if pc, ok := prompts[0].([]any); ok {
		if pl, ok := prompts[1].([]any); ok && len(pl) != len(pc) {
			return task{}, badRequest("point_labels must have one label per point in point_coords.")
		}
	}
	n := 1
	if multi {
		n = 3
	}
	mw, mh := w, h
	if long := max(w, h); long > maskSide {
		mw, mh = max(1, w*maskSide/long), max(1, h*maskSide/long)
	}
	seed := splitmix(uint64(w)<<32 | uint64(h))
	return task{run: func(ctx context.Context, d time.Duration) (any, error) {
		if err := sleep(ctx, d); err != nil {
			return nil, err
		}
		return segment(n, mw, mh, seed), nil
	}}, nil
}

// segment draws n nested elliptical masks with logits that agree with them
// (positive inside), scores sorted high to low as ai-runner sorts them.
func segment(n, w, h int, seed uint64) MasksResponse {
	scores := make([]float64, n)
	x := seed
	for i := range scores {
		x = splitmix(x)
		scores[i] = 0.5 + float64(x%5000)/10000
	}
	sort.Sort(sort.Reverse(sort.Float64Slice(scores)))
	masks := make([][][]float64, n)
	logits := make([][][]float64, n)
	cx, cy := float64(w)/2, float64(h)/2
	for i := range n {
		r := 0.25 + 0.15*float64(i)
		masks[i] = make([][]float64, h)
		logits[i] = make([][]float64, h)
		for y := range h {
			masks[i][y] = make([]float64, w)
			logits[i][y] = make([]float64, w)
			for xx := range w {
				dx, dy := (float64(xx)+0.5-cx)/float64(w), (float64(y)+0.5-cy)/float64(h)
				l := math.Round((r-math.Sqrt(dx*dx+dy*dy))*40*1000) / 1000
				logits[i][y][xx] = l
				if l > 0 {
					masks[i][y][xx] = 1
				}
			}
		}
	}
	return MasksResponse{Masks: pyList(masks), Scores: pyList(scores), Logits: pyList(logits)}
}

// pyList prints nested float lists the way Python's str(list) does.
func pyList(v any) string {
	var b strings.Builder
	var walk func(any)
	walk = func(v any) {
		switch t := v.(type) {
		case float64:
			b.WriteString(pyFloat(t))
		case []float64:
			b.WriteByte('[')
			for i, f := range t {
				if i > 0 {
					b.WriteString(", ")
				}
				b.WriteString(pyFloat(f))
			}
			b.WriteByte(']')
		case [][]float64:
			b.WriteByte('[')
			for i, e := range t {
				if i > 0 {
					b.WriteString(", ")
				}
				walk(e)
			}
			b.WriteByte(']')
		case [][][]float64:
			b.WriteByte('[')
			for i, e := range t {
				if i > 0 {
					b.WriteString(", ")
				}
				walk(e)
			}
			b.WriteByte(']')
		}
	}
	walk(v)
	return b.String()
}

// pyFloat is Python's repr of a float: shortest round-trip form, always with
// a decimal point.
func pyFloat(f float64) string {
	s := strconv.FormatFloat(f, 'g', -1, 64)
	if s == "-0" {
		return "-0.0"
	}
	if !strings.ContainsAny(s, ".eEn") {
		s += ".0"
	}
	return s
}
