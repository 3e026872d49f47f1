package probe

import (
	"bytes"
	"context"
	"fmt"
	"strconv"

	"github.com/lpgauge/lpgauge/gateway/capability"
)

// ImageToVideo probes POST /image-to-video: a PNG in, a video URL out (the
// orchestrator turns the runner's frames into an MP4). The output must be an
// MP4 (an ISO BMFF "ftyp" box first).
type ImageToVideo struct{}

// Info implements Pipeline.
func (ImageToVideo) Info() capability.Pipeline { return mustPipeline(capability.ImageToVideo) }

// Build implements Pipeline.
func (ImageToVideo) Build(model string, seed int64) (*Request, error) {
	// Both sides divisible by 8, or the runner answers 400.
	sz := pick([][2]int{{512, 288}, {576, 320}, {448, 256}}, seed)
	fps := pick([]int{6, 8}, seed)
	body, ct, err := multipartBody([][2]string{{"model_id", model}, {"width", strconv.Itoa(sz[0])}, {"height", strconv.Itoa(sz[1])},
		{"fps", strconv.Itoa(fps)}, {"num_inference_steps", "10"}, {"safety_check", "false"}},
		formFile{"image", "input.png", "image/png", PNG(sz[0], sz[1], seed)})
	if err != nil {
		return nil, fmt.Errorf("image-to-video request: %w", err)
	}
	return &Request{Body: body, ContentType: ct, Units: float64(sz[0] * sz[1] * videoFrames),
		Params: map[string]any{"model_id": model, "width": sz[0], "height": sz[1], "fps": fps, "num_inference_steps": 10},
		// The video comes as a URL (the Livepeer-AI-Worker-1.0 marker);
		// its frames bound the file.
		MaxResponseBytes: 4 * jsonSlack, MaxMediaBytes: videoFrames*videoBytesPerPixel*int64(sz[0]*sz[1]) + pngMetadata}, nil
}

// Validate implements Pipeline.
func (ImageToVideo) Validate(ctx context.Context, req *Request, resp *Response, m *Media) (float64, error) {
	var ir imageResponse
	if err := decodeJSON(resp, &ir); err != nil {
		return 0, err
	}
	if len(ir.Images) == 0 {
		return 0, invalid("video_count", "no video in the response")
	}
	var total float64
	for i, v := range ir.Images {
		b, err := m.Get(ctx, v.URL)
		if err != nil {
			return 0, err
		}
		if len(b) < 12 || !bytes.Equal(b[4:8], []byte("ftyp")) {
			return 0, invalid("video_format", "video %d is not an MP4 (no ftyp box)", i)
		}
		total += float64(len(b))
	}
	return total, nil
}
