package runner

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"image"
	"image/png"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/media/wav"
)

func start(t *testing.T, cfg Config) *httptest.Server {
	t.Helper()
	if cfg.ModelID == "" {
		cfg.ModelID = "test/model"
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(r.Handler())
	t.Cleanup(func() { srv.Close(); r.Close() })
	return srv
}

func postJSON(t *testing.T, url string, body any, header ...string) *http.Response {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

type part struct {
	name, filename string
	data           []byte
}

func postForm(t *testing.T, url string, parts ...part) *http.Response {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range parts {
		if p.filename != "" {
			w, _ := mw.CreateFormFile(p.name, p.filename)
			w.Write(p.data)
		} else {
			mw.WriteField(p.name, string(p.data))
		}
	}
	mw.Close()
	resp, err := http.Post(url, mw.FormDataContentType(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func field(name, value string) part { return part{name: name, data: []byte(value)} }

func pngOf(t *testing.T, w, h int) part {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewGray(image.Rect(0, 0, w, h))); err != nil {
		t.Fatal(err)
	}
	return part{name: "image", filename: "in.png", data: buf.Bytes()}
}

func decode[T any](t *testing.T, resp *http.Response, status int) T {
	t.Helper()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d: %s", resp.StatusCode, status, b)
	}
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return v
}

func detailMsg(t *testing.T, resp *http.Response, status int) string {
	t.Helper()
	return decode[httpError](t, resp, status).Detail.Msg
}

func dataBytes(t *testing.T, url, mime string) []byte {
	t.Helper()
	prefix := "data:" + mime + ";base64,"
	if !strings.HasPrefix(url, prefix) {
		t.Fatalf("url %.40q is not a %s data URL", url, mime)
	}
	b, err := base64.StdEncoding.DecodeString(url[len(prefix):])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func pngSize(t *testing.T, url string) (int, int) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(dataBytes(t, url, "image/png")))
	if err != nil {
		t.Fatal(err)
	}
	return img.Bounds().Dx(), img.Bounds().Dy()
}

func TestTextToImageSizeSeedsAndDeterminism(t *testing.T) {
	srv := start(t, Config{Pipeline: "text-to-image"})
	body := map[string]any{"prompt": "a cat", "width": 96, "height": 40, "seed": 7, "num_images_per_prompt": 2}
	out := decode[ImageResponse](t, postJSON(t, srv.URL+"/text-to-image", body), 200)
	if len(out.Images) != 2 {
		t.Fatalf("got %d images, want 2", len(out.Images))
	}
	for i, m := range out.Images {
		if w, h := pngSize(t, m.URL); w != 96 || h != 40 {
			t.Errorf("image %d is %dx%d, want 96x40", i, w, h)
		}
		if m.Seed != 7+i || m.NSFW {
			t.Errorf("image %d seed %d nsfw %v, want seed %d nsfw false", i, m.Seed, m.NSFW, 7+i)
		}
	}
	again := decode[ImageResponse](t, postJSON(t, srv.URL+"/text-to-image/", body), 200)
	if again.Images[0].URL != out.Images[0].URL {
		t.Error("same seed gave a different image")
	}
	if out.Images[0].URL == out.Images[1].URL {
		t.Error("seed and seed+1 gave the same image")
	}
	// ai-runner's defaults: 1024 wide, 576 high.
	def := decode[ImageResponse](t, postJSON(t, srv.URL+"/text-to-image", map[string]any{"prompt": "x"}), 200)
	if w, h := pngSize(t, def.Images[0].URL); w != 1024 || h != 576 {
		t.Errorf("default size %dx%d, want 1024x576", w, h)
	}
}

func TestBadInput(t *testing.T) {
	t2i := start(t, Config{Pipeline: "text-to-image", ModelID: "m/a", AuthToken: "tok"})
	auth := []string{"Authorization", "Bearer tok"}
	cases := []struct {
		name    string
		body    any
		header  []string
		status  int
		msg     string // HTTPError detail.msg
		loc     string // 422 loc[1]
		typ     string // 422 type
		wwwAuth bool
	}{
		{name: "missing prompt field", body: map[string]any{"width": 64}, header: auth, status: 422, loc: "prompt", typ: "missing"},
		{name: "width not an integer", body: map[string]any{"prompt": "x", "width": "wide"}, header: auth, status: 422, loc: "width", typ: "int_parsing"},
		{name: "prompt wrong type", body: map[string]any{"prompt": 5}, header: auth, status: 422, loc: "prompt", typ: "string_type"},
		{name: "body not JSON", body: json.RawMessage(`{"prompt":`), header: auth, status: 422, typ: "json_invalid"},
		{name: "empty prompt", body: map[string]any{"prompt": " "}, header: auth, status: 400, msg: "Prompt must be provided."},
		{name: "no token", body: map[string]any{"prompt": "x"}, status: 401, msg: "Invalid bearer token.", wwwAuth: true},
		{name: "wrong token", body: map[string]any{"prompt": "x"}, header: []string{"Authorization", "Bearer nope"}, status: 401, msg: "Invalid bearer token.", wwwAuth: true},
		{name: "other model", body: map[string]any{"prompt": "x", "model_id": "m/b"}, header: auth, status: 400, msg: "pipeline configured with m/a but called with m/b."},
		{name: "absurd size", body: map[string]any{"prompt": "x", "width": 100000, "height": 100000}, header: auth, status: 400, msg: oomMessage},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var b []byte
			if raw, ok := c.body.(json.RawMessage); ok {
				b = raw
			} else {
				b, _ = json.Marshal(c.body)
			}
			req, _ := http.NewRequest(http.MethodPost, t2i.URL+"/text-to-image", bytes.NewReader(b))
			req.Header.Set("Content-Type", "application/json")
			for i := 0; i+1 < len(c.header); i += 2 {
				req.Header.Set(c.header[i], c.header[i+1])
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if c.status == 422 {
				v := decode[struct{ Detail []validationIssue }](t, resp, 422)
				if len(v.Detail) == 0 || v.Detail[0].Type != c.typ || (c.loc != "" && v.Detail[0].Loc[1] != c.loc) {
					t.Fatalf("422 detail %+v, want type %s at %s", v.Detail, c.typ, c.loc)
				}
				return
			}
			if got := detailMsg(t, resp, c.status); got != c.msg {
				t.Errorf("msg %q, want %q", got, c.msg)
			}
			if c.wwwAuth && resp.Header.Get("WWW-Authenticate") != "Bearer" {
				t.Error("401 without WWW-Authenticate: Bearer")
			}
		})
	}
}

func TestImagePipelines(t *testing.T) {
	t.Run("image-to-image keeps the input size", func(t *testing.T) {
		srv := start(t, Config{Pipeline: "image-to-image"})
		out := decode[ImageResponse](t, postForm(t, srv.URL+"/image-to-image", field("prompt", "p"), pngOf(t, 40, 24), field("seed", "3")), 200)
		if w, h := pngSize(t, out.Images[0].URL); w != 40 || h != 24 || out.Images[0].Seed != 3 {
			t.Errorf("got %dx%d seed %d, want 40x24 seed 3", w, h, out.Images[0].Seed)
		}
		v := decode[struct{ Detail []validationIssue }](t, postForm(t, srv.URL+"/image-to-image", field("prompt", "p")), 422)
		if v.Detail[0].Loc[1] != "image" || v.Detail[0].Type != "missing" {
			t.Errorf("missing image: %+v", v.Detail)
		}
		bad := part{name: "image", filename: "x.png", data: []byte("not an image")}
		if got := detailMsg(t, postForm(t, srv.URL+"/image-to-image", field("prompt", "p"), bad), 400); got == "" {
			t.Error("garbage image: empty message")
		}
		v = decode[struct{ Detail []validationIssue }](t, postForm(t, srv.URL+"/image-to-image", field("prompt", "p"), pngOf(t, 8, 8), field("strength", "lots")), 422)
		if v.Detail[0].Type != "float_parsing" {
			t.Errorf("bad strength: %+v", v.Detail)
		}
	})
	t.Run("upscale is 4x", func(t *testing.T) {
		srv := start(t, Config{Pipeline: "upscale"})
		out := decode[ImageResponse](t, postForm(t, srv.URL+"/upscale", field("prompt", "p"), pngOf(t, 30, 20)), 200)
		if w, h := pngSize(t, out.Images[0].URL); w != 120 || h != 80 {
			t.Errorf("upscaled to %dx%d, want 120x80", w, h)
		}
		if got := detailMsg(t, postForm(t, srv.URL+"/upscale", field("prompt", ""), pngOf(t, 30, 20)), 400); got != "Prompt must be provided." {
			t.Errorf("empty prompt: %q", got)
		}
	})
	t.Run("image-to-video frames", func(t *testing.T) {
		srv := start(t, Config{Pipeline: "image-to-video"})
		out := decode[VideoResponse](t, postForm(t, srv.URL+"/image-to-video", pngOf(t, 8, 8), field("width", "32"), field("height", "16"), field("seed", "9")), 200)
		if len(out.Frames) != 1 || len(out.Frames[0]) != videoFrames {
			t.Fatalf("frames shape %d×?, want 1×%d", len(out.Frames), videoFrames)
		}
		for _, f := range out.Frames[0] {
			if w, h := pngSize(t, f.URL); w != 32 || h != 16 || f.Seed != 9 {
				t.Fatalf("frame %dx%d seed %d, want 32x16 seed 9", w, h, f.Seed)
			}
		}
		if got := detailMsg(t, postForm(t, srv.URL+"/image-to-video", pngOf(t, 8, 8), field("width", "30")), 400); !strings.Contains(got, "divisible by 8") {
			t.Errorf("width 30: %q", got)
		}
		// SVD img2vid (not -xt) makes 14 frames, as ai-runner's does.
		svd := start(t, Config{Pipeline: "image-to-video", ModelID: "stabilityai/stable-video-diffusion-img2vid"})
		out = decode[VideoResponse](t, postForm(t, svd.URL+"/image-to-video", pngOf(t, 8, 8), field("width", "32"), field("height", "16")), 200)
		if len(out.Frames) != 1 || len(out.Frames[0]) != 14 {
			t.Fatalf("img2vid: frames shape %d×?, want 1×14", len(out.Frames))
		}
	})
	t.Run("image-to-text", func(t *testing.T) {
		srv := start(t, Config{Pipeline: "image-to-text"})
		out := decode[ImageToTextResponse](t, postForm(t, srv.URL+"/image-to-text", pngOf(t, 16, 16), field("prompt", "a photo of")), 200)
		if !strings.HasPrefix(out.Text, "a photo of ") || len(out.Text) <= len("a photo of ") {
			t.Errorf("caption %q does not continue the prompt", out.Text)
		}
	})
	t.Run("segment-anything-2", func(t *testing.T) {
		srv := start(t, Config{Pipeline: "segment-anything-2"})
		out := decode[MasksResponse](t, postForm(t, srv.URL+"/segment-anything-2", pngOf(t, 128, 64), field("point_coords", "[[10, 20]]"), field("point_labels", "[1]")), 200)
		var masks [][][]float64
		var scores []float64
		if err := json.Unmarshal([]byte(out.Masks), &masks); err != nil {
			t.Fatalf("masks %.60q is not a nested list: %v", out.Masks, err)
		}
		if err := json.Unmarshal([]byte(out.Scores), &scores); err != nil || len(scores) != 3 || scores[0] < scores[1] {
			t.Fatalf("scores %q: want 3 sorted high to low (%v)", out.Scores, err)
		}
		if len(masks) != 3 || len(masks[0]) != 32 || len(masks[0][0]) != 64 {
			t.Errorf("masks shape %d×%d×%d, want 3×32×64", len(masks), len(masks[0]), len(masks[0][0]))
		}
		if got := detailMsg(t, postForm(t, srv.URL+"/segment-anything-2", pngOf(t, 8, 8), field("box", "nope")), 400); got != "box must be a JSON array." {
			t.Errorf("bad box: %q", got)
		}
	})
}

func TestAudioToText(t *testing.T) {
	srv := start(t, Config{Pipeline: "audio-to-text"})
	audio := func(b []byte) part { return part{name: "audio", filename: "a.wav", data: b} }
	out := decode[TextResponse](t, postForm(t, srv.URL+"/audio-to-text", audio(wav.Tone(12, 16000, 440))), 200)
	if out.Text == "" || len(out.Chunks) == 0 {
		t.Fatalf("empty transcript %+v", out)
	}
	if first, last := out.Chunks[0], out.Chunks[len(out.Chunks)-1]; first.Timestamp[0] != 0 || last.Timestamp[1] != 12 {
		t.Errorf("chunks span %v..%v, want 0..12 s", first.Timestamp, last.Timestamp)
	}
	if got := detailMsg(t, postForm(t, srv.URL+"/audio-to-text", audio([]byte("definitely not audio"))), 415); got != "Unsupported audio format or malformed file." {
		t.Errorf("garbage audio: %q", got)
	}
	big := make([]byte, MaxAudioBytes+1)
	copy(big, wav.Tone(1, 16000, 440))
	if got := detailMsg(t, postForm(t, srv.URL+"/audio-to-text", audio(big)), 413); got != "File size exceeds limit." {
		t.Errorf("oversized audio: %q", got)
	}
	// An mp3 with its duration in metadata is accepted without a decoder.
	mp3 := append([]byte("ID3\x04\x00\x00\x00\x00\x00\x00"), make([]byte, 100)...)
	out = decode[TextResponse](t, postForm(t, srv.URL+"/audio-to-text", part{name: "audio", filename: "a.mp3", data: mp3}, field("metadata", `{"duration": 4}`)), 200)
	if out.Chunks[len(out.Chunks)-1].Timestamp[1] != 4 {
		t.Errorf("metadata duration ignored: %+v", out.Chunks)
	}
}

func TestTextToSpeechWAV(t *testing.T) {
	srv := start(t, Config{Pipeline: "text-to-speech"})
	length := func(text string) uint32 {
		out := decode[AudioResponse](t, postJSON(t, srv.URL+"/text-to-speech", map[string]any{"text": text}), 200)
		b := dataBytes(t, out.Audio.URL, "audio/wav")
		if string(b[0:4]) != "RIFF" || string(b[8:16]) != "WAVEfmt " || string(b[36:40]) != "data" {
			t.Fatalf("not a WAV header: %q", b[:44])
		}
		if rate := binary.LittleEndian.Uint32(b[24:28]); rate != ttsSampleRate {
			t.Errorf("sample rate %d", rate)
		}
		size := binary.LittleEndian.Uint32(b[40:44])
		if int(size) != len(b)-44 {
			t.Errorf("data chunk says %d bytes, file has %d", size, len(b)-44)
		}
		return size
	}
	if short, long := length("Hi."), length(strings.Repeat("A longer sentence. ", 10)); long <= short {
		t.Errorf("longer text gave shorter audio: %d <= %d", long, short)
	}
	if got := detailMsg(t, postJSON(t, srv.URL+"/text-to-speech", map[string]any{"text": ""}), 400); got == "" {
		t.Error("empty text: no message")
	}
}

func TestLLM(t *testing.T) {
	srv := start(t, Config{Pipeline: "llm", ModelID: "meta-llama/llama-3.1-8B-Instruct"})
	msgs := []map[string]string{{"role": "user", "content": "Tell me, briefly, about rivers."}}
	out := decode[LLMResponse](t, postJSON(t, srv.URL+"/llm", map[string]any{"messages": msgs, "max_tokens": 5}), 200)
	if len(out.Choices) != 1 || out.Choices[0].Message == nil {
		t.Fatalf("choices %+v", out.Choices)
	}
	content := out.Choices[0].Message.Content
	if got := len(Tokens(content)); got != out.Usage.CompletionTokens || got > 5 {
		t.Errorf("completion has %d tokens, usage says %d, max_tokens 5", got, out.Usage.CompletionTokens)
	}
	if want := perMessageTokens + len(Tokens(msgs[0]["content"])); out.Usage.PromptTokens != want ||
		out.Usage.TotalTokens != out.Usage.PromptTokens+out.Usage.CompletionTokens {
		t.Errorf("usage %+v, want prompt %d", out.Usage, want)
	}
	if out.Model != "meta-llama/llama-3.1-8B-Instruct" {
		t.Errorf("model %q", out.Model)
	}
	v := decode[struct{ Detail []validationIssue }](t, postJSON(t, srv.URL+"/llm", map[string]any{"messages": []map[string]string{{"role": "user"}}}), 422)
	if len(v.Detail) != 1 || v.Detail[0].Type != "missing" || v.Detail[0].Loc[3] != "content" {
		t.Errorf("message without content: %+v", v.Detail)
	}
	if got := detailMsg(t, postJSON(t, srv.URL+"/llm", map[string]any{"messages": msgs, "model": "other"}), 400); !strings.HasPrefix(got, "pipeline configured with") {
		t.Errorf("model guard uses `model`: %q", got)
	}

	t.Run("stream", func(t *testing.T) {
		resp := postJSON(t, srv.URL+"/llm", map[string]any{"messages": msgs, "stream": true, "max_tokens": 300})
		if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
			t.Fatalf("content type %q", ct)
		}
		var events []string
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if line, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				events = append(events, line)
			}
		}
		if len(events) < 3 || events[len(events)-1] != "[DONE]" {
			t.Fatalf("stream does not end with [DONE]: %v", events)
		}
		var text strings.Builder
		var last LLMResponse
		for _, e := range events[:len(events)-1] {
			last = LLMResponse{}
			if err := json.Unmarshal([]byte(e), &last); err != nil || last.Choices[0].Delta == nil {
				t.Fatalf("event %q: %v", e, err)
			}
			text.WriteString(last.Choices[0].Delta.Content)
		}
		if fr := last.Choices[0].FinishReason; fr == nil || *fr != "stop" {
			t.Errorf("last chunk finish_reason %v, want stop", fr)
		}
		if got := len(Tokens(text.String())); got != last.Usage.CompletionTokens {
			t.Errorf("streamed %d tokens, usage says %d", got, last.Usage.CompletionTokens)
		}
	})
}

func TestHealthAnswersDuringInference(t *testing.T) {
	srv := start(t, Config{Pipeline: "text-to-image", Latency: Latency{Mean: 700 * time.Millisecond}})
	done := make(chan int, 1)
	go func() {
		resp, err := http.Post(srv.URL+"/text-to-image", "application/json", strings.NewReader(`{"prompt":"x","width":8,"height":8}`))
		if err != nil {
			done <- 0
			return
		}
		resp.Body.Close()
		done <- resp.StatusCode
	}()
	time.Sleep(100 * time.Millisecond)
	c := http.Client{Timeout: 200 * time.Millisecond}
	resp, err := c.Get(srv.URL + "/health")
	if err != nil {
		t.Fatalf("/health stalled while a job ran: %v", err)
	}
	if st := decode[map[string]string](t, resp, 200)["status"]; st != "OK" {
		t.Errorf("status %q", st)
	}
	select {
	case code := <-done:
		t.Fatalf("job finished early (%d); the test did not overlap it", code)
	default:
	}
	if code := <-done; code != 200 {
		t.Errorf("job status %d", code)
	}
}

func TestLoadingThenOK(t *testing.T) {
	srv := start(t, Config{Pipeline: "upscale", Latency: Latency{LoadTime: 300 * time.Millisecond}})
	resp, _ := http.Get(srv.URL + "/health/")
	if st := decode[map[string]string](t, resp, 200)["status"]; st != "LOADING" {
		t.Errorf("status during load %q, want LOADING", st)
	}
	time.Sleep(400 * time.Millisecond)
	resp, _ = http.Get(srv.URL + "/health")
	if st := decode[map[string]string](t, resp, 200)["status"]; st != "OK" {
		t.Errorf("status after load %q, want OK", st)
	}
}

func TestFailureRateOne(t *testing.T) {
	srv := start(t, Config{Pipeline: "text-to-image", Latency: Latency{FailureRate: 1}})
	if got := detailMsg(t, postJSON(t, srv.URL+"/text-to-image", map[string]any{"prompt": "x"}), 500); got != "Text-to-image pipeline error." {
		t.Errorf("msg %q", got)
	}
}

func TestInfoRoutes(t *testing.T) {
	srv := start(t, Config{Pipeline: "llm", ModelID: "m", Version: "0.14.1", AuthToken: "secret"})
	resp, _ := http.Get(srv.URL + "/version")
	if v := decode[map[string]string](t, resp, 200); v["version"] != "0.14.1" || v["pipeline"] != "llm" || v["model_id"] != "m" {
		t.Errorf("/version %v", v)
	}
	for _, path := range []string{"/hardware/info", "/hardware/stats/"} {
		resp, _ := http.Get(srv.URL + path)
		if v := decode[map[string]any](t, resp, 200); v["pipeline"] != "llm" || v["model_id"] != "m" {
			t.Errorf("%s %v", path, v)
		}
	}
	if _, err := New(Config{Pipeline: "text-to-image"}); err == nil {
		t.Error("New without MODEL_ID succeeded; ai-runner refuses to start")
	}
}
