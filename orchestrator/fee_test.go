package orchestrator

import (
	"bytes"
	"encoding/binary"
	"image"
	"image/png"
	"mime/multipart"
	"testing"

	"github.com/lpgauge/lpgauge/capability"
)

// pcmWAV is a mono 16-bit 8 kHz WAV of secs seconds of silence.
func pcmWAV(secs float64) []byte {
	n := int(secs * 8000)
	var b bytes.Buffer
	w := func(v any) { _ = binary.Write(&b, binary.LittleEndian, v) }
	b.WriteString("RIFF")
	w(uint32(36 + 2*n))
	b.WriteString("WAVEfmt ")
	w(uint32(16))
	w(uint16(1))
	w(uint16(1))
	w(uint32(8000))
	w(uint32(16000))
	w(uint16(2))
	w(uint16(16))
	b.WriteString("data")
	w(uint32(2 * n))
	b.Write(make([]byte, 2*n))
	return b.Bytes()
}

func audioForm(t *testing.T, secs float64) (string, []byte) {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	_ = mw.WriteField("model_id", "openai/whisper-large-v3")
	fw, err := mw.CreateFormFile("audio", "a.wav")
	if err != nil {
		t.Fatal(err)
	}
	_, _ = fw.Write(pcmWAV(secs))
	_ = mw.Close()
	return mw.FormDataContentType(), body.Bytes()
}

// TestBillingUnits: the units a job is charged for are go-livepeer's
// outPixels for each pipeline (server/ai_http.go:1400-1570 at 176aa415c);
// the fee is units × the payment's expected price (DebitFees).
func TestBillingUnits(t *testing.T) {
	p := func(id capability.ID) capability.Pipeline { pl, _ := capability.ByID(id); return pl }
	for _, tc := range []struct {
		name string
		p    capability.Pipeline
		ct   string
		body string
		want int64
	}{
		{"text-to-image 1024² ×1 (vector 04: 1048576 px)", p(capability.TextToImage), "application/json", `{"prompt":"x","model_id":"m","height":1024,"width":1024}`, 1048576},
		{"text-to-image size unset: 512×512", p(capability.TextToImage), "application/json", `{"prompt":"x","model_id":"m"}`, 512 * 512},
		{"text-to-image 2 images", p(capability.TextToImage), "application/json", `{"prompt":"x","model_id":"m","height":64,"width":32,"num_images_per_prompt":2}`, 64 * 32 * 2},
		{"llm: max_tokens", p(capability.LLM), "application/json", `{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":256}`, 256},
		{"text-to-speech: 1000 × characters", p(capability.TextToSpeech), "application/json", `{"model_id":"m","text":"héllo"}`, 5000},
	} {
		req, err := decodeRequest(tc.p, tc.ct, []byte(tc.body))
		if err != nil || req.units != tc.want {
			t.Errorf("%s: units %d err %v, go-livepeer %d", tc.name, req.units, err, tc.want)
		}
	}
	i2v := p(capability.ImageToVideo)
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	_ = mw.WriteField("model_id", "m")
	fw, _ := mw.CreateFormFile("image", "i.png")
	_, _ = fw.Write(tinyPNG(t))
	_ = mw.Close()
	if req, err := decodeRequest(i2v, mw.FormDataContentType(), body.Bytes()); err != nil || req.units != 576*1024*25 {
		t.Errorf("image-to-video unset size: units %d err %v, go-livepeer 576×1024×25", req.units, err)
	}
	a2t := p(capability.AudioToText)
	ct, b := audioForm(t, 2.7)
	if req, err := decodeRequest(a2t, ct, b); err != nil || req.units != 2000 {
		t.Errorf("audio-to-text 2.7 s: units %d err %v, go-livepeer bills whole seconds: 2000", req.units, err)
	}
	ct, b = audioForm(t, 0.5)
	if _, err := decodeRequest(a2t, ct, b); err == nil {
		t.Error("audio-to-text 0.5 s accepted; go-livepeer refuses audio under a second (400 Unable to calculate duration)")
	}
}

func tinyPNG(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := png.Encode(&b, image.NewRGBA(image.Rect(0, 0, 8, 8))); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}
