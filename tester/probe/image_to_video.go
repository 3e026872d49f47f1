package probe

import (
	"context"
	"fmt"
	"math"
	"strconv"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/media/mp4"
	"github.com/lpgauge/lpgauge/media/pngfile"
)

// ImageToVideo probes POST /image-to-video: a PNG in, a video URL out (the
// orchestrator turns the runner's frames into an MP4). The output must be
// what a viewer would accept: an MP4 whose video track has the requested
// size, the model's clip length in frames (capability.VideoFrames), and lasts frames/fps
// seconds.
type ImageToVideo struct{}

// videoExpect is what Build asked for, for Validate.
type videoExpect struct {
	W, H, FPS, Frames int
}

// Info implements Pipeline.
func (ImageToVideo) Info() capability.Pipeline { return mustPipeline(capability.ImageToVideo) }

// Build implements Pipeline.
func (ImageToVideo) Build(model string, seed int64) (*Request, error) {
	// Both sides divisible by 8, or the runner answers 400.
	d := newDraw(seed)
	sz := [][2]int{{512, 288}, {576, 320}, {448, 256}, {512, 384}, {384, 512}, {448, 448}}[d.rng.IntN(6)]
	fps := []int{6, 7, 8}[d.rng.IntN(3)]
	// go-livepeer's field order (ai/worker/multipart.go:116-159).
	body, ct, err := multipartBody(formFile{"image", d.filename("png"), pngfile.Pattern(sz[0], sz[1], d.raw)},
		[][2]string{{"model_id", model}, {"height", strconv.Itoa(sz[1])}, {"width", strconv.Itoa(sz[0])},
			{"fps", strconv.Itoa(fps)}, {"seed", strconv.FormatInt(d.genSeed(), 10)}, {"safety_check", "false"}, {"num_inference_steps", "10"}})
	if err != nil {
		return nil, fmt.Errorf("image-to-video request: %w", err)
	}
	// Paid for as go-livepeer bills it, a fixed 25-frame clip whatever
	// the model; judged by the clip the model makes.
	return &Request{Body: body, ContentType: ct, Units: float64(sz[0] * sz[1] * videoFrames),
		Expect: videoExpect{W: sz[0], H: sz[1], FPS: fps, Frames: capability.VideoFrames(model)},
		Params: map[string]any{"model_id": model, "width": sz[0], "height": sz[1], "fps": fps, "num_inference_steps": 10},
		// The video comes as a URL (the Livepeer-AI-Worker-1.0 marker);
		// its frames bound the file.
		MaxResponseBytes: 4 * jsonSlack, MaxMediaBytes: videoFrames*videoBytesPerPixel*int64(sz[0]*sz[1]) + pngMetadata}, nil
}

// Validate implements Pipeline.
func (ImageToVideo) Validate(ctx context.Context, req *Request, resp *Response, m *Media) (float64, error) {
	want := req.Expect.(videoExpect)
	var ir imageResponse
	if err := decodeJSON(resp, &ir); err != nil {
		return 0, err
	}
	if len(ir.Images) == 0 {
		return 0, invalid("video_count", "no video in the response")
	}
	var total float64
	for i, v := range ir.Images {
		if v.URL == "" {
			return 0, invalid("media_missing", "video %d has no url", i)
		}
		b, err := m.Get(ctx, v.URL)
		if err != nil {
			return 0, err
		}
		got, err := mp4.Parse(b)
		if err != nil {
			return 0, invalid("video_format", "video %d is not a playable MP4: %v", i, err)
		}
		if got.Width != want.W || got.Height != want.H {
			return 0, invalid("video_size", "video %d is %dx%d, asked for %dx%d", i, got.Width, got.Height, want.W, want.H)
		}
		if got.Frames != uint64(want.Frames) {
			return 0, invalid("video_frames", "video %d has %d frames, the model makes %d", i, got.Frames, want.Frames)
		}
		// Within a frame either way: muxers differ on the last frame's
		// duration, and a player shows the difference as nothing.
		if secs := float64(want.Frames) / float64(want.FPS); math.Abs(got.Seconds-secs) > 1/float64(want.FPS) {
			return 0, invalid("video_duration", "video %d lasts %.3f s, %d frames at %d fps last %.3f s", i, got.Seconds, want.Frames, want.FPS, secs)
		}
		total += float64(len(b))
	}
	return total, nil
}
