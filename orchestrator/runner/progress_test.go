package runner

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/media/wav"
)

// TestProgressPerPipeline: a job named with JobHeader is reported by GET
// /progress while it runs, counting the pipeline's own unit — diffusion
// steps, video frames, 30 s audio chunks, LLM tokens — from 0 towards its
// total as its inference time passes; a pipeline without a count reports
// total 0, and an unknown job "unknown".
func TestProgressPerPipeline(t *testing.T) {
	img := pngOf(t, 64, 64)
	cases := []struct {
		pipeline  string
		json      map[string]any
		form      []part
		unit      string
		total     int // -1: any positive
		wantCount bool
	}{
		{"text-to-image", map[string]any{"prompt": "x", "width": 8, "height": 8, "num_inference_steps": 10}, nil, "steps", 10, true},
		{"image-to-image", nil, []part{img, field("prompt", "x"), field("num_inference_steps", "12")}, "steps", 12, true},
		{"upscale", nil, []part{img, field("prompt", "x")}, "steps", 75, true},
		{"image-to-video", nil, []part{img, field("width", "64"), field("height", "64")}, "frames", 25, true},
		{"audio-to-text", nil, []part{{name: "audio", filename: "a.wav", data: wav.Tone(65, 16000, 440)}}, "chunks", 3, true},
		{"llm", map[string]any{"model": "test/model", "max_tokens": 64, "messages": []map[string]string{{"role": "user", "content": "rivers"}}}, nil, "tokens", -1, true},
		{"text-to-speech", map[string]any{"text": "hello there"}, nil, "", 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.pipeline, func(t *testing.T) {
			srv := start(t, Config{Pipeline: tc.pipeline, Latency: Latency{Mean: 400 * time.Millisecond}})
			var body bytes.Buffer
			ct := "application/json"
			if tc.json != nil {
				_ = json.NewEncoder(&body).Encode(tc.json)
			} else {
				mw := multipart.NewWriter(&body)
				for _, p := range tc.form {
					if p.filename != "" {
						w, _ := mw.CreateFormFile(p.name, p.filename)
						_, _ = w.Write(p.data)
					} else {
						_ = mw.WriteField(p.name, string(p.data))
					}
				}
				_ = mw.Close()
				ct = mw.FormDataContentType()
			}
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/"+tc.pipeline, &body)
			req.Header.Set("Content-Type", ct)
			req.Header.Set(JobHeader, "job-1")
			done := make(chan int, 1)
			go func() {
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					done <- 0
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				done <- resp.StatusCode
			}()
			var seen []Progress
			for {
				select {
				case status := <-done:
					if status != 200 {
						t.Fatalf("job answered %d", status)
					}
					check(t, seen, tc.unit, tc.total, tc.wantCount)
					return
				case <-time.After(10 * time.Millisecond):
				}
				resp, err := http.Get(srv.URL + "/progress?job=job-1")
				if err != nil {
					t.Fatal(err)
				}
				var p Progress
				_ = json.NewDecoder(resp.Body).Decode(&p)
				resp.Body.Close()
				if p.State == "running" {
					seen = append(seen, p)
				}
			}
		})
	}
	srv := start(t, Config{Pipeline: "text-to-image"})
	resp, err := http.Get(srv.URL + "/progress?job=nope")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p Progress
	if json.NewDecoder(resp.Body).Decode(&p); p.State != "unknown" {
		t.Errorf("unknown job: %+v", p)
	}
}

func check(t *testing.T, seen []Progress, unit string, total int, counted bool) {
	t.Helper()
	if len(seen) < 5 {
		t.Fatalf("saw the job running %d times, want it polled while it ran: %+v", len(seen), seen)
	}
	last, middle := -1, false
	for _, p := range seen {
		if p.Unit != unit || (total >= 0 && p.Total != total) || (total < 0 && p.Total <= 0) {
			t.Fatalf("progress %+v, want unit %q total %d", p, unit, total)
		}
		if p.Done < last {
			t.Fatalf("done went back: %+v", seen)
		}
		last = p.Done
		middle = middle || (p.Done > 0 && p.Done < p.Total)
	}
	if counted && !middle {
		t.Errorf("never saw the count between 0 and the total: %+v", seen)
	}
}
