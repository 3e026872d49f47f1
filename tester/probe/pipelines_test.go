package probe

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/lpgauge/lpgauge/internal/results"
	"github.com/lpgauge/lpgauge/media/pngfile"
)

// pipelineCase is one orchestrator answer to one pipeline's request.
type pipelineCase struct {
	slug, name  string
	contentType string
	body        string // "%s" is replaced by the media URL
	media       []byte
	code        string // "" = valid
}

func sse(events ...string) string {
	var b strings.Builder
	for _, e := range events {
		b.WriteString("data: " + e + "\n\n")
	}
	return b.String()
}

func pipelineCases() []pipelineCase {
	js := "application/json"
	v := requestedVideo(0) // what the probe asks for with seed 0
	t2i := asked(TextToImage{}).(imageExpect)
	i2i := asked(ImageToImage{}).(imageExpect)
	up := asked(Upscale{}).(upscaleExpect)
	mp4 := muxVideo(v.W, v.H, v.FPS, v.Frames, 1000)
	img := `{"images":[{"url":"%s","seed":1,"nsfw":false}]}`
	stop := `{"choices":[{"index":0,"finish_reason":"stop","delta":{"content":""}}],"usage":{"completion_tokens":3}}`
	return []pipelineCase{
		{"text-to-image", "ok", js, img, pngfile.Gradient(t2i.W, t2i.H, 1), ""},
		{"text-to-image", "no images", js, `{"images":[]}`, nil, "image_count"},
		{"image-to-image", "ok", js, img, pngfile.Gradient(i2i.W, i2i.H, 1), ""},
		{"image-to-image", "wrong size", js, img, pngfile.Gradient(i2i.W/2, i2i.H, 1), "image_size"},
		{"upscale", "ok", js, img, pngfile.Gradient(4*up.W, 4*up.H, 1), ""},
		{"upscale", "not larger", js, img, pngfile.Gradient(up.W, up.H, 1), "image_size"},
		{"image-to-video", "ok", js, img, mp4, ""},
		{"image-to-video", "png instead of mp4", js, img, pngfile.Gradient(64, 64, 1), "video_format"},
		{"image-to-video", "truncated", js, img, mp4[:len(mp4)/2], "video_format"},
		{"image-to-video", "wrong size", js, img, muxVideo(v.W/2, v.H, v.FPS, v.Frames, 1000), "video_size"},
		{"image-to-video", "14 frames", js, img, muxVideo(v.W, v.H, v.FPS, 14, 1000), "video_frames"},
		{"audio-to-text", "ok", js, `{"text":" hmm","chunks":[{"timestamp":[0,2.5],"text":" hmm"}]}`, nil, ""},
		{"audio-to-text", "timestamps past the audio", js, `{"text":"x","chunks":[{"timestamp":[0,42],"text":"x"}]}`, nil, "timestamps"},
		{"audio-to-text", "no text", js, `{"chunks":[]}`, nil, "text_missing"},
		{"segment-anything-2", "ok", js, `{"masks":"[[[0,1]],[[1,0]]]","scores":"[0.91, 0.4]","logits":"[[[0.1]]]"}`, nil, ""},
		{"segment-anything-2", "score not a probability", js, `{"masks":"[[[0,1]]]","scores":"[7.5]","logits":"[]"}`, nil, "scores"},
		{"llm", "ok stream", "text/event-stream", sse(`{"choices":[{"index":0,"delta":{"content":"Hello"}}]}`,
			`{"choices":[{"index":0,"delta":{"content":" there"}}]}`, stop, "[DONE]"), nil, ""},
		{"llm", "ok without streaming", js, `{"choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":"Hi"}}],"usage":{"completion_tokens":1}}`, nil, ""},
		{"llm", "error mid-stream", "text/event-stream", sse(`{"choices":[{"index":0,"delta":{"content":"Hel"}}]}`, `{"error":"CUDA out of memory"}`), nil, "llm_stream_error"},
		{"llm", "truncated stream", "text/event-stream", sse(`{"choices":[{"index":0,"delta":{"content":"Hel"}}]}`), nil, "llm_truncated"},
		{"image-to-text", "ok", js, `{"text":"a gradient of red and green"}`, nil, ""},
		{"image-to-text", "empty caption", js, `{"text":"  "}`, nil, "text_empty"},
		{"text-to-speech", "ok", js, `{"audio":{"url":"%s"}}`, speechWAV(3, 1), ""},
		{"text-to-speech", "too short", js, `{"audio":{"url":"%s"}}`, speechWAV(0.2, 1), "audio_short"},
		{"text-to-speech", "not a wav", js, `{"audio":{"url":"%s"}}`, []byte("ID3\x03mp3"), "wav_decode"},
	}
}

// Every pipeline accepts a right answer and rejects a wrong one with a
// precise invalid_output code, over real HTTP.
func TestPipelinesValidateOutputs(t *testing.T) {
	for _, c := range pipelineCases() {
		t.Run(c.slug+"/"+c.name, func(t *testing.T) {
			pl, ok := Lookup(c.slug)
			if !ok {
				t.Fatalf("pipeline %s not registered", c.slug)
			}
			var base string
			mux := http.NewServeMux()
			mux.HandleFunc("POST /"+c.slug, func(w http.ResponseWriter, r *http.Request) {
				if err := r.ParseMultipartForm(64 << 20); err != nil && !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
					http.Error(w, "bad form: "+err.Error(), 400)
					return
				}
				w.Header().Set("Content-Type", c.contentType)
				body := c.body
				if strings.Contains(body, "%s") {
					body = fmt.Sprintf(body, base+"/stream/x/out")
				}
				_, _ = w.Write([]byte(body))
			})
			mux.HandleFunc("GET /stream/x/out", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(c.media) })
			s := httptest.NewUnstartedServer(mux)
			base = "http://" + s.Listener.Addr().String()
			s.Start()
			defer s.Close()
			r := New(Config{}).Run(context.Background(), Job{Orchestrator: "0xab", ServiceURI: s.URL, Pipeline: pl, Model: "m", Seed: 0})
			if c.code == "" {
				if r.Outcome != results.Success {
					t.Fatalf("valid output rejected: %s/%s %s", r.ErrorClass, r.ErrorCode, r.ErrorMessage)
				}
				if r.OutputUnits <= 0 {
					t.Errorf("no output units for a valid output")
				}
				return
			}
			if r.ErrorClass != string(ClassInvalid) || r.ErrorCode != c.code {
				t.Errorf("got %s/%s (%s), want invalid_output/%s", r.ErrorClass, r.ErrorCode, r.ErrorMessage, c.code)
			}
		})
	}
}

// The LLM probe times the first token separately from the whole stream.
func TestLLMTimeToFirstToken(t *testing.T) {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fl := w.(http.Flusher)
		for i := 0; i < 5; i++ {
			fmt.Fprintf(w, "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"t%d \"}}]}\n\n", i)
			fl.Flush()
			sleepMS(40)
		}
		fmt.Fprint(w, "data: {\"choices\":[{\"index\":0,\"finish_reason\":\"stop\",\"delta\":{}}]}\n\ndata: [DONE]\n\n")
	}))
	defer s.Close()
	r := New(Config{}).Run(context.Background(), Job{Orchestrator: "0xab", ServiceURI: s.URL, Pipeline: LLM{}, Model: "m"})
	if r.Outcome != results.Success {
		t.Fatalf("%s/%s %s", r.ErrorClass, r.ErrorCode, r.ErrorMessage)
	}
	if r.TTFT <= 0 || r.TTFT >= r.Server+r.Download || r.Download < 150*1e6 {
		t.Errorf("ttft %v, server %v, download %v: first token must come well before the stream ends", r.TTFT, r.Server, r.Download)
	}
	if r.OutputUnits != 5 {
		t.Errorf("%v tokens counted, 5 streamed", r.OutputUnits)
	}
}

// asked is what pipeline pl's probe with seed 0 expects (the sizes the
// corpus drew), for fakes that answer it right or wrong on purpose.
func asked(pl Pipeline) any {
	req, err := pl.Build("m", 0)
	if err != nil {
		panic(err)
	}
	return req.Expect
}
