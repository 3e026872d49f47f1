package probe

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/media/wav"
)

// TextToSpeech probes POST /text-to-speech: a sentence in (JSON), a WAV URL
// out; the audio must be a WAV of plausible length for the text.
type TextToSpeech struct{}

// Info implements Pipeline.
func (TextToSpeech) Info() capability.Pipeline { return mustPipeline(capability.TextToSpeech) }

// Build implements Pipeline.
func (TextToSpeech) Build(model string, seed int64) (*Request, error) {
	text, voice := newDraw(seed).sentence()
	params := map[string]any{"model_id": model, "text": text, "description": voice}
	body, err := json.Marshal(params)
	if err != nil {
		return nil, fmt.Errorf("text-to-speech request: %w", err)
	}
	// Speech runs at ~15 characters a second; allow a third of that and
	// five seconds of silence around it.
	wav := int64((5+0.2*float64(len(text)))*wavBytesPerSecond) + 4<<10
	return &Request{Body: body, ContentType: "application/json", Params: params, Units: float64(len(text)), Expect: text,
		MaxResponseBytes: inlineBody(1, wav), MaxMediaBytes: wav}, nil
}

// Validate implements Pipeline.
func (TextToSpeech) Validate(ctx context.Context, req *Request, resp *Response, m *Media) (float64, error) {
	var ar struct {
		Audio struct{ URL string } `json:"audio"`
	}
	if err := decodeJSON(resp, &ar); err != nil {
		return 0, err
	}
	if ar.Audio.URL == "" {
		return 0, invalid("media_missing", "no audio url")
	}
	b, err := m.Get(ctx, ar.Audio.URL)
	if err != nil {
		return 0, err
	}
	secs, err := wav.Duration(b, int64(len(b)))
	if err != nil {
		return 0, invalid("wav_decode", "audio is not a WAV: %v", err)
	}
	// About 15 characters a second of speech; far less audio means the
	// sentence was cut or not spoken.
	if min := float64(len(req.Expect.(string))) / 40; secs < min {
		return 0, invalid("audio_short", "%.2fs of audio for %d characters of text", secs, len(req.Expect.(string)))
	}
	return secs, nil
}
