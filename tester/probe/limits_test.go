package probe

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"

	"github.com/lpgauge/lpgauge/internal/results"
	"github.com/lpgauge/lpgauge/orchestrator/runner"
)

// limitSeeds cover every size, length and prompt each pipeline picks.
var limitSeeds = []int64{0, 1, 2, 3, 4, 5, 6, 7, 11, 12}

// Every pipeline bounds the answer to the request it builds, and every
// bound is a few MiB: that, not the general 16/64 MiB caps, is what a
// hostile orchestrator can make a probe hold.
func TestEveryPipelineBoundsItsAnswer(t *testing.T) {
	for _, slug := range Slugs() {
		pl, _ := Lookup(slug)
		var maxBody, maxMedia int64
		for _, seed := range limitSeeds {
			req, err := pl.Build("m", seed)
			if err != nil {
				t.Fatal(err)
			}
			if req.MaxResponseBytes <= 0 || req.MaxMediaBytes <= 0 {
				t.Errorf("%s: Build sets no answer bounds (body %d, media %d)", slug, req.MaxResponseBytes, req.MaxMediaBytes)
			}
			maxBody, maxMedia = max(maxBody, req.MaxResponseBytes), max(maxMedia, req.MaxMediaBytes)
		}
		t.Logf("%-19s body ≤ %5.2f MiB, media ≤ %5.2f MiB", slug, float64(maxBody)/(1<<20), float64(maxMedia)/(1<<20))
		if maxBody > 8<<20 || maxMedia > 10<<20 {
			t.Errorf("%s: bounds of %.1f MiB body / %.1f MiB media are not a few MiB", slug, float64(maxBody)/(1<<20), float64(maxMedia)/(1<<20))
		}
	}
}

// serveOnce serves one pipeline answer: answer(req, base) gives the body (and
// content type) for the probe's POST, media is served at /stream/x/out.
func serveOnce(t *testing.T, slug string, answer func(r *http.Request, base string) (string, []byte), media func(w http.ResponseWriter, r *http.Request)) string {
	t.Helper()
	var base string
	mux := http.NewServeMux()
	mux.HandleFunc("POST /"+slug, func(w http.ResponseWriter, r *http.Request) {
		ct, body := answer(r, base)
		w.Header().Set("Content-Type", ct)
		_, _ = w.Write(body)
	})
	if media != nil {
		mux.HandleFunc("GET /stream/x/out", media)
	}
	s := httptest.NewUnstartedServer(mux)
	base = "http://" + s.Listener.Addr().String()
	s.Start()
	t.Cleanup(s.Close)
	return s.URL
}

// noisyPNG is an incompressible w×h RGBA PNG stored without compression:
// the largest PNG an honest runner could send for that size.
func noisyPNG(w, h int) []byte {
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	_, _ = rand.Read(img.Pix)
	var b bytes.Buffer
	_ = (&png.Encoder{CompressionLevel: png.NoCompression}).Encode(&b, img)
	return b.Bytes()
}

func dataURL(mime string, b []byte) string {
	return "data:" + mime + ";base64," + base64.StdEncoding.EncodeToString(b)
}

// pyRows prints a rows×cols list of value as Python prints nested lists.
func pyRows(rows, cols int, value string) string {
	row := "[" + strings.TrimSuffix(strings.Repeat(value+", ", cols), ", ") + "]"
	return "[" + strings.TrimSuffix(strings.Repeat(row+", ", rows), ", ") + "]"
}

// honestMaximum is, for each pipeline, the biggest answer a well-behaved
// orchestrator may give the request: incompressible images inline, a video
// as long as the clip allows, full-size masks with the longest logits,
// verbose token events, long speech. Each must pass.
func honestMaximum(t *testing.T, slug string, req *Request) (ct, body string, media []byte) {
	t.Helper()
	var p map[string]any
	_ = json.Unmarshal(req.Body, &p) // JSON requests; multipart ones use Params
	for k, v := range req.Params {
		p = initMap(p)
		p[k] = v
	}
	js := "application/json"
	images := func(w, h, n int) (string, string, []byte) {
		var out []string
		for range n {
			out = append(out, fmt.Sprintf(`{"url":%q,"seed":1234567890,"nsfw":false}`, dataURL("image/png", noisyPNG(w, h))))
		}
		return js, `{"images":[` + strings.Join(out, ",") + `]}`, nil
	}
	num := func(k string) int { f, _ := p[k].(float64); i, _ := p[k].(int); return max(int(f), i) }
	switch slug {
	case "text-to-image":
		return images(num("width"), num("height"), max(num("num_images_per_prompt"), 1))
	case "image-to-image":
		return images(num("width"), num("height"), 1)
	case "upscale":
		return images(maxUpscale*num("width"), maxUpscale*num("height"), 1)
	case "image-to-video":
		// Frames filling the bound, less room for the boxes around them.
		w, h := num("width"), num("height")
		frame := (videoFrames*videoBytesPerPixel*w*h - 4096) / videoFrames
		return js, `{"images":[{"url":"%s","seed":1,"nsfw":false}]}`, muxVideo(w, h, num("fps"), videoFrames, frame)
	case "segment-anything-2":
		w, h := num("width"), num("height")
		masks := "[" + strings.TrimSuffix(strings.Repeat(pyRows(h, w, "0.0")+", ", samMasks), ", ") + "]"
		logits := "[" + strings.TrimSuffix(strings.Repeat(pyRows(samLogitSide, samLogitSide, "-1.2345678901234567e-05")+", ", samMasks), ", ") + "]"
		b, _ := json.Marshal(map[string]string{"masks": masks, "scores": "[0.9876543210987654, 0.5, 0.1234567890123456]", "logits": logits})
		return js, string(b), nil
	case "audio-to-text":
		secs := req.Expect.(float64)
		var chunks []string
		for i := range int(secs * 10) { // ten words a second, one chunk each
			chunks = append(chunks, fmt.Sprintf(`{"timestamp":[%.2f,%.2f],"text":" wonderful"}`, float64(i)/10, float64(i+1)/10))
		}
		return js, `{"text":"` + strings.Repeat(" wonderful", len(chunks)) + `","chunks":[` + strings.Join(chunks, ",") + `]}`, nil
	case "image-to-text":
		return js, `{"text":"` + strings.Repeat("a wonderfully detailed ", 2000) + `"}`, nil
	case "llm":
		var b strings.Builder
		ev := `{"id":"chatcmpl-0123456789abcdef0123456789abcdef","object":"chat.completion.chunk","created":1730000000,"model":"meta-llama/Meta-Llama-3.1-8B-Instruct","system_fingerprint":"fp_0123456789","choices":[{"index":0,"delta":{"role":"assistant","content":" word"},"logprobs":null,"finish_reason":null}],"usage":null}`
		for range req.Expect.(int) {
			b.WriteString("data: " + ev + "\n\n")
		}
		b.WriteString(`data: {"choices":[{"index":0,"delta":{},"finish_reason":"length"}],"usage":{"completion_tokens":` + fmt.Sprint(req.Expect.(int)) + "}}\n\ndata: [DONE]\n\n")
		return "text/event-stream", b.String(), nil
	case "text-to-speech":
		// 48 kHz 32-bit float mono for as long as the bound allows.
		secs := 5 + 0.2*float64(len(req.Expect.(string)))
		return js, `{"audio":{"url":"%s"}}`, silentWAV(secs, 48000, 4)
	}
	t.Fatalf("no honest maximum for %s", slug)
	return
}

func initMap(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}

// silentWAV is a silent WAV of secs at rate with size-byte samples.
func silentWAV(secs float64, rate, size int) []byte {
	n := int(secs*float64(rate)) * size
	b := make([]byte, 44+n)
	copy(b, "RIFF")
	binary.LittleEndian.PutUint32(b[4:], uint32(36+n))
	copy(b[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(b[16:], 16)
	binary.LittleEndian.PutUint16(b[20:], 1)
	binary.LittleEndian.PutUint16(b[22:], 1)
	binary.LittleEndian.PutUint32(b[24:], uint32(rate))
	binary.LittleEndian.PutUint32(b[28:], uint32(rate*size))
	binary.LittleEndian.PutUint16(b[32:], uint16(size))
	binary.LittleEndian.PutUint16(b[34:], uint16(8*size))
	copy(b[36:], "data")
	binary.LittleEndian.PutUint32(b[40:], uint32(n))
	return b
}

// heapAllocated runs f and returns the bytes it allocated (everything the
// process allocated meanwhile, so loosely).
func heapAllocated(f func()) uint64 {
	var a, b runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&a)
	f()
	runtime.ReadMemStats(&b)
	return b.TotalAlloc - a.TotalAlloc
}

// For every pipeline, over real HTTP: the reference CPU runner's answer
// passes, the biggest answer an honest orchestrator could give passes, and
// a hostile one that streams 256 MiB (as the body, and as the media file
// where there is one) is body_too_large after reading no more than the
// bounds derived from the request, not the general caps.
func TestPipelineAnswerBounds(t *testing.T) {
	const seed = 3
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, slug := range Slugs() {
		pl, _ := Lookup(slug)
		if _, live := pl.(LiveVideoToVideo); live {
			// A live session, not one answer: its start answer and each
			// output segment have their own bounds (TestLiveProbeGarbageOutput,
			// TestLiveStartAnswerBound).
			continue
		}
		req, err := pl.Build("m", seed)
		if err != nil {
			t.Fatal(err)
		}
		run := func(uri string) results.Result {
			return New(Config{}).Run(context.Background(), Job{Orchestrator: "0xab", ServiceURI: uri, Pipeline: pl, Model: "m", Seed: seed})
		}
		// image-to-video: the runner answers frames and the orchestrator
		// makes the video, so its reference answer is checked end to end by
		// TestImageToVideoAgainstReferenceOrchestrator instead.
		if slug != "image-to-video" {
			t.Run(slug+"/reference runner", func(t *testing.T) {
				rn, err := runner.New(runner.Config{Pipeline: slug, ModelID: "m", Logger: quiet})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(rn.Close)
				s := httptest.NewServer(rn.Handler())
				t.Cleanup(s.Close)
				if r := run(s.URL); r.Outcome != results.Success {
					t.Errorf("the reference runner's answer is refused: %s/%s %s", r.ErrorClass, r.ErrorCode, r.ErrorMessage)
				}
			})
		}
		t.Run(slug+"/honest maximum", func(t *testing.T) {
			ct, body, media := honestMaximum(t, slug, req)
			uri := serveOnce(t, slug, func(_ *http.Request, base string) (string, []byte) {
				if media != nil {
					return ct, []byte(fmt.Sprintf(body, base+"/stream/x/out"))
				}
				return ct, []byte(body)
			}, func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(media) })
			r := run(uri)
			if r.Outcome != results.Success {
				t.Errorf("an honest %d-byte answer (media %d bytes) is refused: %s/%s %s", len(body), len(media), r.ErrorClass, r.ErrorCode, r.ErrorMessage)
			}
			t.Logf("honest maximum: body %.2f MiB of %.2f, media %.2f MiB of %.2f", float64(len(body))/(1<<20), float64(req.MaxResponseBytes)/(1<<20),
				float64(len(media))/(1<<20), float64(req.MaxMediaBytes)/(1<<20))
		})
		hostile := []struct {
			name   string
			answer func(r *http.Request, base string) (string, []byte)
			media  func(w http.ResponseWriter, r *http.Request)
			bound  int64
		}{{"huge body", nil, nil, req.MaxResponseBytes}}
		urlAnswer := map[string]string{
			"text-to-image": `{"images":[{"url":"%s","seed":1,"nsfw":false}]}`, "image-to-image": `{"images":[{"url":"%s","seed":1,"nsfw":false}]}`,
			"upscale": `{"images":[{"url":"%s","seed":1,"nsfw":false}]}`, "image-to-video": `{"images":[{"url":"%s","seed":1,"nsfw":false}]}`,
			"text-to-speech": `{"audio":{"url":"%s"}}`,
		}
		if body, ok := urlAnswer[slug]; ok {
			hostile = append(hostile, struct {
				name   string
				answer func(r *http.Request, base string) (string, []byte)
				media  func(w http.ResponseWriter, r *http.Request)
				bound  int64
			}{"huge media", func(_ *http.Request, base string) (string, []byte) {
				return "application/json", []byte(fmt.Sprintf(body, base+"/stream/x/out"))
			}, func(w http.ResponseWriter, r *http.Request) { streamMiB(w, r, 256) }, req.MaxMediaBytes})
		}
		for _, h := range hostile {
			t.Run(slug+"/"+h.name, func(t *testing.T) {
				var uri string
				if h.answer == nil {
					uri = hugeBody(t, slug)
				} else {
					uri = serveOnce(t, slug, h.answer, h.media)
				}
				var r results.Result
				alloc := heapAllocated(func() { r = run(uri) })
				if r.ErrorClass != string(ClassInvalid) || r.ErrorCode != "body_too_large" {
					t.Errorf("classified %s/%s (%s), want invalid_output/body_too_large", r.ErrorClass, r.ErrorCode, r.ErrorMessage)
				}
				// The capped read, once; the request and the transport's
				// buffers; never the 256 MiB.
				if limit := 2*h.bound + int64(len(req.Body)) + 8<<20; int64(alloc) > limit {
					t.Errorf("the probe allocated %.1f MiB against a bound of %.1f MiB", float64(alloc)/(1<<20), float64(h.bound)/(1<<20))
				}
			})
		}
	}
}

func streamMiB(w http.ResponseWriter, r *http.Request, mib int) {
	chunk := bytes.Repeat([]byte("A"), 1<<20)
	for i := 0; i < mib && r.Context().Err() == nil; i++ {
		if _, err := w.Write(chunk); err != nil {
			return
		}
	}
}

// hugeBody answers the pipeline's POST with 256 MiB of a well-typed body.
func hugeBody(t *testing.T, slug string) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if slug == "llm" {
			w.Header().Set("Content-Type", "text/event-stream")
			line := []byte("data: " + strings.Repeat("x", 1000) + "\n\n")
			for i := 0; i < 256<<10 && r.Context().Err() == nil; i++ {
				if _, err := w.Write(line); err != nil {
					return
				}
			}
			return
		}
		w.Header().Set("Content-Type", "application/json")
		streamMiB(w, r, 256)
	}))
	t.Cleanup(s.Close)
	return s.URL
}
