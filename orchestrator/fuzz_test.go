package orchestrator

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/png"
	"math/big"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/orchestrator/mediastore"
)

func pngOf(w, h int) []byte {
	var b bytes.Buffer
	_ = png.Encode(&b, image.NewGray(image.Rect(0, 0, w, h)))
	return b.Bytes()
}

func dataURL(mime string, b []byte) string {
	return "data:" + mime + ";base64," + base64.StdEncoding.EncodeToString(b)
}

// FuzzShapeResult feeds runner answers to the code that rewrites them for
// the gateway. It must never panic; inline mode changes nothing; URL mode
// replaces every data URL with a /stream/ URL that serves exactly its bytes.
func FuzzShapeResult(f *testing.F) {
	img := dataURL("image/png", pngOf(4, 3))
	for _, s := range []string{
		`{"images":[{"url":"` + img + `","seed":42,"nsfw":false}]}`,
		`{"images":[{"url":"` + img + `","seed":1},{"url":"` + dataURL("image/jpeg", []byte("jpg")) + `","seed":2}]}`,
		`{"audio":{"url":"` + dataURL("audio/wav", []byte("RIFF....WAVE")) + `"}}`,
		`{"frames":[[{"url":"` + img + `","seed":7,"nsfw":false},{"url":"` + img + `","seed":7}]]}`,
		`{"frames":[[{"url":"data:image/png;base64,AAAA"}]]}`,
		`{"text":"hello","chunks":[{"timestamp":[0,1.5],"text":"hello"}]}`,
		`{"masks":"[[0]]","scores":"[0.9]","logits":"[[1]]"}`,
		`{"url":"data:text/html;base64,PHNjcmlwdD4="}`,
		`{"url":"data:,plain"}`, `{"url":"data:image/png;base64,!!"}`,
		`{"n":123456789012345678901234567890}`, `[1,"x",null]`, `"x"`, `{`, ``,
	} {
		for p := uint8(0); p < 3; p++ {
			f.Add(p, true, s)
			f.Add(p, false, s)
		}
	}
	pipes := []capability.Pipeline{mustPipe(capability.TextToImage), mustPipe(capability.ImageToVideo), mustPipe(capability.AudioToText)}
	f.Fuzz(func(t *testing.T, which uint8, urlMode bool, raw string) {
		p := pipes[int(which)%len(pipes)]
		s := &Server{cfg: Config{ServiceURI: "https://o.test:8935"}, store: mediastore.New(time.Minute, 64<<20)}
		r := httptest.NewRequest(http.MethodPost, "/"+p.Slug, nil)
		if urlMode {
			r.Header.Set("Authorization", aiWorkerProtocol)
		}
		out, err := s.shapeResult(r, p, aiRequest{fps: 6}, []byte(raw))
		if err != nil {
			return
		}
		var got any
		if err := decodeNumbers(out, &got); err != nil {
			t.Fatalf("%q: answer is not JSON: %v: %s", raw, err, out)
		}
		if !urlMode && p.ID != capability.ImageToVideo {
			var in any
			if err := decodeNumbers([]byte(raw), &in); err != nil {
				t.Fatalf("%q: accepted but not JSON: %v", raw, err)
			}
			if !reflect.DeepEqual(in, got) {
				t.Fatalf("%q: inline answer changed: %s", raw, out)
			}
			return
		}
		if !urlMode {
			return
		}
		walkURLs(got, func(u string) {
			if strings.HasPrefix(u, "data:") {
				t.Fatalf("%q: data URL left in a URL-mode answer: %s", raw, out)
			}
			rest, ok := strings.CutPrefix(u, "https://o.test:8935/stream/")
			if !ok {
				return
			}
			id, name, _ := strings.Cut(rest, "/")
			if _, ok := s.store.Get(id, name); !ok {
				t.Fatalf("%q: %s is not served", raw, u)
			}
		})
	})
}

func mustPipe(id capability.ID) capability.Pipeline {
	p, ok := capability.ByID(id)
	if !ok {
		panic(fmt.Sprint("no capability ", id))
	}
	return p
}

func decodeNumbers(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	return dec.Decode(v)
}

func walkURLs(v any, fn func(string)) {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			if s, ok := e.(string); ok && k == "url" {
				fn(s)
			}
			walkURLs(e, fn)
		}
	case []any:
		for _, e := range t {
			walkURLs(e, fn)
		}
	}
}

func formBody(fields map[string]string, files map[string][]byte) (string, []byte) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range fields {
		_ = mw.WriteField(k, v)
	}
	for k, v := range files {
		w, _ := mw.CreateFormFile(k, k+".bin")
		_, _ = w.Write(v)
	}
	_ = mw.Close()
	return mw.FormDataContentType(), buf.Bytes()
}

// FuzzDecodeRequest feeds gateway request bodies to the decoder that runs
// before payment. Errors are 400 request errors; billing units are never
// negative and, for text-to-image, exactly height × width × images: a body
// whose product overflows must be refused, not billed as a wrapped number.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{
		`{"prompt":"a cat","model_id":"ByteDance/SDXL-Lightning","width":512,"height":512}`,
		`{"prompt":"a cat","model_id":"m","width":4294967296,"height":4294967296,"num_images_per_prompt":1}`,
		`{"prompt":"a cat","model_id":"m","width":3037000500,"height":3037000500}`,
		`{"prompt":null}`, `{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":64}`,
		`{"model_id":"m","text":"hello"}`, `[]`, `{`,
	} {
		for p := uint8(0); p < 3; p++ {
			f.Add(p, "application/json", []byte(s))
		}
	}
	png1 := pngOf(8, 8)
	for _, form := range []map[string]string{
		{"prompt": "x", "model_id": "m", "num_images_per_prompt": "2"},
		{"prompt": "x", "model_id": "m", "num_images_per_prompt": "70368744177664"},
		{"model_id": "m", "height": "4294967296", "width": "4294967296", "fps": "8"},
		{"model_id": "m", "height": "-576", "width": "1024"},
	} {
		ct, body := formBody(form, map[string][]byte{"image": png1})
		for p := uint8(3); p < 8; p++ {
			f.Add(p, ct, body)
		}
	}
	pipes := []capability.ID{capability.TextToImage, capability.LLM, capability.TextToSpeech, capability.ImageToImage,
		capability.ImageToVideo, capability.Upscale, capability.ImageToText, capability.SegmentAnything2, capability.AudioToText}
	f.Fuzz(func(t *testing.T, which uint8, contentType string, body []byte) {
		p := mustPipe(pipes[int(which)%len(pipes)])
		req, err := decodeRequest(p, contentType, body)
		if err != nil {
			var re *requestError
			if !errors.As(err, &re) {
				t.Fatalf("%s %q: error %T %v is not a request error (400)", p.Slug, body, err, err)
			}
			return
		}
		if req.units < 0 {
			t.Fatalf("%s %q: %d billing units", p.Slug, body, req.units)
		}
		if p.ID == capability.TextToImage {
			var b struct {
				H *int64 `json:"height"`
				W *int64 `json:"width"`
				N *int64 `json:"num_images_per_prompt"`
			}
			_ = json.Unmarshal(body, &b)
			want := big.NewInt(1)
			for _, x := range []struct {
				v   *int64
				def int64
			}{{b.H, 512}, {b.W, 512}, {b.N, 1}} {
				v := x.def
				if x.v != nil {
					v = *x.v
				}
				want.Mul(want, big.NewInt(v))
			}
			if want.Cmp(big.NewInt(req.units)) != 0 {
				t.Fatalf("%s %q: billed %d units, the request is %s", p.Slug, body, req.units, want)
			}
		}
	})
}

// Found by FuzzDecodeRequest: sizes whose product passed int64 wrapped to 0
// or a negative number of units, so a huge job was free, or its negative
// charge credited the sender. Now a 400 before payment.
func TestBillingUnitsNeverWrap(t *testing.T) {
	png1 := pngOf(8, 8)
	i2v, i2vBody := formBody(map[string]string{"model_id": "m", "height": "4294967296", "width": "4294967296"}, map[string][]byte{"image": png1})
	i2i, i2iBody := formBody(map[string]string{"prompt": "x", "model_id": "m", "num_images_per_prompt": "144115188075855872"}, map[string][]byte{"image": png1})
	neg, negBody := formBody(map[string]string{"model_id": "m", "height": "-576", "width": "-1024"}, map[string][]byte{"image": png1})
	for _, c := range []struct {
		id   capability.ID
		ct   string
		body []byte
	}{
		{capability.TextToImage, "application/json", []byte(`{"prompt":"x","model_id":"m","width":4294967296,"height":4294967296}`)},
		{capability.TextToImage, "application/json", []byte(`{"prompt":"x","model_id":"m","width":3037000500,"height":3037000500}`)},
		{capability.ImageToVideo, i2v, i2vBody},
		{capability.ImageToVideo, neg, negBody},
		{capability.ImageToImage, i2i, i2iBody},
	} {
		req, err := decodeRequest(mustPipe(c.id), c.ct, c.body)
		var re *requestError
		if !errors.As(err, &re) {
			t.Errorf("%v: billed %d units (err %v), want a 400 request error", c.id, req.units, err)
		}
	}
}
