package probe

import (
	"context"
	"fmt"
	"math"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/media/wav"
)

// AudioToText probes POST /audio-to-text: a generated WAV of a few seconds
// in, a transcription out. A tone has no words, so the check is on shape:
// a text field, and chunk timestamps inside the audio.
type AudioToText struct{}

// Info implements Pipeline.
func (AudioToText) Info() capability.Pipeline { return mustPipeline(capability.AudioToText) }

// Build implements Pipeline.
func (AudioToText) Build(model string, seed int64) (*Request, error) {
	d := newDraw(seed)
	// 2–10 s in half seconds: a voice note or a short clip.
	secs := float64(d.step(4, 20, 1)) / 2
	// go-livepeer's field order (ai/worker/multipart.go:238-253).
	body, ct, err := multipartBody(formFile{"audio", d.filename("wav"), wav.Voice(secs, 16000, d.raw)},
		[][2]string{{"model_id", model}, {"return_timestamps", "true"}, {"metadata", fmt.Sprintf(`{"duration":%g}`, secs)}})
	if err != nil {
		return nil, fmt.Errorf("audio-to-text request: %w", err)
	}
	// Paid as go-livepeer bills it: whole seconds × 1000
	// (common.CalculateAudioDuration truncates).
	return &Request{Body: body, ContentType: ct, Units: math.Trunc(secs) * 1000, Expect: secs,
		Params:           map[string]any{"model_id": model, "return_timestamps": "true", "audio_seconds": secs},
		MaxResponseBytes: 4*jsonSlack + int64(secs*transcriptBytesPerSecond), MaxMediaBytes: mediaSlack}, nil
}

// Validate implements Pipeline.
func (AudioToText) Validate(_ context.Context, req *Request, resp *Response, _ *Media) (float64, error) {
	secs := req.Expect.(float64)
	var tr struct {
		Text   *string `json:"text"`
		Chunks []struct {
			Timestamp []float64 `json:"timestamp"`
			Text      string    `json:"text"`
		} `json:"chunks"`
	}
	if err := decodeJSON(resp, &tr); err != nil {
		return 0, err
	}
	if tr.Text == nil {
		return 0, invalid("text_missing", "no text field in the transcription")
	}
	for i, c := range tr.Chunks {
		// Whisper leaves the last chunk's end null (0 here) when it runs off the end.
		if len(c.Timestamp) != 2 || c.Timestamp[0] < 0 || c.Timestamp[0] > secs+1 || c.Timestamp[1] > secs+1 {
			return 0, invalid("timestamps", "chunk %d timestamp %v outside the %gs of audio", i, c.Timestamp, secs)
		}
	}
	return secs, nil
}
