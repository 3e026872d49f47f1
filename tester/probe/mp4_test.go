package probe

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/internal/results"
	"github.com/lpgauge/lpgauge/media/mp4"
	"github.com/lpgauge/lpgauge/media/pngfile"
	"github.com/lpgauge/lpgauge/orchestrator"
	"github.com/lpgauge/lpgauge/orchestrator/aimodels"
	"github.com/lpgauge/lpgauge/orchestrator/cpurunner"
)

// muxVideo is a w×h MP4 of n frames of frameBytes each at fps, from the
// reference orchestrator's muxer (the parser here is written separately,
// so each checks the other).
func muxVideo(w, h, fps, n, frameBytes int) []byte {
	frames := make([][]byte, n)
	for i := range frames {
		frames[i] = bytes.Repeat([]byte{0xff, 0xd8, byte(i)}, frameBytes/3+1)[:frameBytes]
	}
	var b bytes.Buffer
	if err := mp4.Write(&b, mp4.Video{Width: w, Height: h, FPS: fps, Frames: frames}); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// requestedVideo is what ImageToVideo asks for with seed: a right answer
// is muxVideo(want.W, want.H, want.FPS, want.Frames, …).
func requestedVideo(seed int64) videoExpect {
	req, err := ImageToVideo{}.Build("m", seed)
	if err != nil {
		panic(err)
	}
	return req.Expect.(videoExpect)
}

// The validator turns each way a video can be wrong into the code a
// dashboard shows.
func TestImageToVideoValidate(t *testing.T) {
	want := requestedVideo(1)
	req := &Request{Expect: want}
	tests := []struct {
		name  string
		video []byte
		code  string
	}{
		{"right", muxVideo(want.W, want.H, want.FPS, want.Frames, 500), ""},
		{"a PNG", pngfile.Gradient(want.W, want.H, 1), "video_format"},
		{"truncated", muxVideo(want.W, want.H, want.FPS, want.Frames, 500)[:5000], "video_format"},
		{"wrong size", muxVideo(want.H, want.W, want.FPS, want.Frames, 500), "video_size"},
		{"14 frames", muxVideo(want.W, want.H, want.FPS, 14, 500), "video_frames"},
		{"30 fps instead", muxVideo(want.W, want.H, 30, want.Frames, 500), "video_duration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := `{"images":[{"url":"data:video/mp4;base64,` + base64.StdEncoding.EncodeToString(tt.video) + `","seed":1,"nsfw":false}]}`
			resp := &Response{Status: 200, Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(body)}
			units, err := ImageToVideo{}.Validate(t.Context(), req, resp, &Media{max: 64 << 20})
			if tt.code == "" {
				if err != nil || units != float64(len(tt.video)) {
					t.Fatalf("right video refused: %v (units %v)", err, units)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || e.Class != ClassInvalid || e.Code != tt.code {
				t.Fatalf("got %v, want invalid_output/%s", err, tt.code)
			}
		})
	}
}

// Each Stable Video Diffusion checkpoint is held to its own clip length:
// ai-runner passes no num_frames, so img2vid makes 14 frames and the -xt
// checkpoints 25. A 14-frame answer from img2vid is right; from an -xt
// model, and 25 frames from img2vid, it is video_frames.
func TestImageToVideoFramesPerModel(t *testing.T) {
	for _, tt := range []struct {
		model  string
		frames int
		code   string
	}{
		{"stabilityai/stable-video-diffusion-img2vid", 14, ""},
		{"stabilityai/stable-video-diffusion-img2vid", 25, "video_frames"},
		{"stabilityai/stable-video-diffusion-img2vid-xt", 25, ""},
		{"stabilityai/stable-video-diffusion-img2vid-xt", 14, "video_frames"},
		{"stabilityai/stable-video-diffusion-img2vid-xt-1-1", 25, ""},
	} {
		req, err := ImageToVideo{}.Build(tt.model, 2)
		if err != nil {
			t.Fatal(err)
		}
		want := req.Expect.(videoExpect)
		video := muxVideo(want.W, want.H, want.FPS, tt.frames, 500)
		body := `{"images":[{"url":"data:video/mp4;base64,` + base64.StdEncoding.EncodeToString(video) + `","seed":1,"nsfw":false}]}`
		resp := &Response{Status: 200, Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(body)}
		_, err = ImageToVideo{}.Validate(t.Context(), req, resp, &Media{max: req.MaxMediaBytes})
		var e *Error
		switch {
		case tt.code == "" && err != nil:
			t.Errorf("%s, %d frames: refused: %v", tt.model, tt.frames, err)
		case tt.code != "" && (!errors.As(err, &e) || e.Code != tt.code):
			t.Errorf("%s, %d frames: got %v, want invalid_output/%s", tt.model, tt.frames, err, tt.code)
		}
	}
}

// The tester probing the reference orchestrator's image-to-video (CPU
// runners in process, the video stored and fetched by URL as a gateway
// does) succeeds for every size and fps the probe asks for.
func TestImageToVideoAgainstReferenceOrchestrator(t *testing.T) {
	const model = "stabilityai/stable-video-diffusion-img2vid-xt"
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	models, err := aimodels.Parse("image-to-video:" + model + ":true")
	if err != nil {
		t.Fatal(err)
	}
	cpu, err := cpurunner.New(models, cpurunner.Config{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cpu.Close)
	srv, err := orchestrator.New(orchestrator.Config{MaxBodyBytes: 16 << 20, MaxResponseBytes: 64 << 20, MaxQueue: 4,
		QueueTimeout: 5 * time.Second, RunnerTimeout: 30 * time.Second, ResultTTL: time.Minute, Logger: quiet}, cpu, orchestrator.OffChain{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	var mu sync.Mutex
	var fetched []string
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			mu.Lock()
			fetched = append(fetched, r.URL.Path)
			mu.Unlock()
		}
		srv.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	for seed := range int64(3) { // three sizes, both fps
		want := requestedVideo(seed)
		r := New(Config{}).Run(t.Context(), Job{Orchestrator: "0xab", ServiceURI: hs.URL, Pipeline: ImageToVideo{}, Model: model, Seed: seed})
		if r.Outcome != results.Success {
			t.Fatalf("%dx%d at %d fps: %s/%s %s", want.W, want.H, want.FPS, r.ErrorClass, r.ErrorCode, r.ErrorMessage)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(fetched) != 3 || !strings.HasSuffix(fetched[0], ".mp4") {
		t.Errorf("fetched %q, want the three videos as stored .mp4 URLs", fetched)
	}
}
