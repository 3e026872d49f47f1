package probe

import (
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
)

// Each composed text space (prompts, LLM messages, sentences) holds at
// least CorpusSize distinct inputs, so the draw index is a bijection and no
// two indexes give the same text.
func TestCorpusSpaces(t *testing.T) {
	for name, n := range corpusSpaces() {
		if n < CorpusSize {
			t.Errorf("%s space holds %d inputs, fewer than CorpusSize %d: indexes would repeat", name, n, CorpusSize)
		}
	}
	// Spot check the bijection: 5000 consecutive indexes, 5000 texts.
	seen := map[string]bool{}
	for i := range int64(5000) {
		d := newDraw(i)
		s, _ := d.sentence()
		seen[d.prompt()+"|"+d.question()+"|"+s] = true
		seen["p"+d.prompt()] = true
	}
	if len(seen) != 10000 {
		t.Errorf("5000 indexes gave %d distinct (prompt, question, sentence) and prompts together, want 10000", len(seen))
	}
}

// goLivepeerFields is the order in which go-livepeer's gateway writes each
// multipart request's fields, after the file part (ai/worker/multipart.go).
var goLivepeerFields = map[string][]string{
	"image-to-image": {"prompt", "model_id", "loras", "strength", "guidance_scale", "image_guidance_scale", // :35-87
		"negative_prompt", "safety_check", "seed", "num_images_per_prompt", "num_inference_steps"},
	"image-to-video": {"model_id", "height", "width", "fps", "motion_bucket_id", "noise_aug_strength", "seed", // :116-159
		"safety_check", "num_inference_steps"},
	"upscale":       {"prompt", "model_id", "safety_check", "seed", "num_inference_steps"}, // :187-209
	"audio-to-text": {"model_id", "return_timestamps", "metadata"},                         // :238-253
	"segment-anything-2": {"model_id", "point_coords", "point_labels", "box", "mask_input", "multimask_output", // :283-321
		"return_logits", "normalize_coords"},
	"image-to-text": {"prompt", "model_id"}, // :350-358
}

// A multipart job is laid out as go-livepeer's gateway lays it out: the
// file part first, as CreateFormFile writes it (application/octet-stream,
// the user's file name), then the fields in go-livepeer's order.
func TestMultipartFollowsGoLivepeer(t *testing.T) {
	for slug, order := range goLivepeerFields {
		pl, _ := Lookup(slug)
		names := map[string]bool{}
		for seed := range int64(20) {
			req, err := pl.Build("some/model", seed*7919)
			if err != nil {
				t.Fatal(err)
			}
			ct, params, err := mime.ParseMediaType(req.ContentType)
			if err != nil || ct != "multipart/form-data" {
				t.Fatalf("%s: content type %q", slug, req.ContentType)
			}
			mr := multipart.NewReader(strings.NewReader(string(req.Body)), params["boundary"])
			var fields []string
			for i := 0; ; i++ {
				p, err := mr.NextPart()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("%s: %v", slug, err)
				}
				if i == 0 {
					if p.FileName() == "" || (p.FormName() != "image" && p.FormName() != "audio") {
						t.Errorf("%s: first part is %q (file %q), go-livepeer writes the file first", slug, p.FormName(), p.FileName())
					}
					if got := p.Header.Get("Content-Type"); got != "application/octet-stream" {
						t.Errorf("%s: file part Content-Type %q, CreateFormFile writes application/octet-stream", slug, got)
					}
					names[p.FileName()] = true
					continue
				}
				fields = append(fields, p.FormName())
			}
			// Ours must be go-livepeer's order with the unset ones left out.
			at := 0
			for _, f := range fields {
				i := slices.Index(order[at:], f)
				if i < 0 {
					t.Fatalf("%s: fields %v are not in go-livepeer's order %v", slug, fields, order)
				}
				at += i + 1
			}
		}
		if len(names) < 10 {
			t.Errorf("%s: 20 probes uploaded %d distinct file names; a fixed name marks a probe", slug, len(names))
		}
	}
}

// The job request goes out as go-livepeer's gateway client sends it
// (server/segment_rpc.go:51-66): HTTP/2 when the orchestrator's TLS offers
// it, gzip accepted, Go's own User-Agent, and no header of ours.
func TestJobRequestLooksLikeGoLivepeer(t *testing.T) {
	var (
		mu    sync.Mutex
		proto string
		hdr   http.Header
	)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		proto, hdr = r.Proto, r.Header.Clone()
		mu.Unlock()
		http.Error(w, "no", http.StatusInternalServerError)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	New(Config{}).Run(t.Context(), Job{Orchestrator: "0xab", ServiceURI: srv.URL, Pipeline: TextToImage{}, Model: "m", Seed: 5})
	mu.Lock()
	defer mu.Unlock()
	if proto != "HTTP/2.0" {
		t.Errorf("job sent over %s; go-livepeer's client negotiates HTTP/2 with a TLS orchestrator", proto)
	}
	want := map[string]string{"Content-Type": "application/json", "Authorization": WorkerAuth,
		"User-Agent": "Go-http-client/2.0", "Accept-Encoding": "gzip"}
	for k, v := range want {
		if got := hdr.Get(k); got != v {
			t.Errorf("header %s: %q, go-livepeer's gateway sends %q", k, got, v)
		}
	}
	for k := range hdr {
		if _, ok := want[k]; !ok && k != "Content-Length" && k != "Livepeer-Segment" && k != "Livepeer-Payment" {
			t.Errorf("job request carries header %s, which a go-livepeer gateway's does not", k)
		}
	}
}
