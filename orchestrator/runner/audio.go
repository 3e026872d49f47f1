package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/lpgauge/lpgauge/media/wav"
)

func init() {
	specs["audio-to-text"] = pipelineSpec{errName: "Audio-to-text", multipart: true, parse: parseAudioToText}
	specs["text-to-speech"] = pipelineSpec{errName: "Text-to-speech", parse: parseTextToSpeech}
}

// Chunk is one timed piece of a transcript.
type Chunk struct {
	Timestamp [2]float64 `json:"timestamp"`
	Text      string     `json:"text"`
}

// TextResponse is ai-runner's TextResponse.
type TextResponse struct {
	Text   string  `json:"text"`
	Chunks []Chunk `json:"chunks"`
}

// AudioResponse is ai-runner's AudioResponse.
type AudioResponse struct {
	Audio struct {
		URL string `json:"url"`
	} `json:"audio"`
}

var errUnsupportedAudio = &statusError{http.StatusUnsupportedMediaType, "Unsupported audio format or malformed file."}

// knownAudio recognises containers ffmpeg would open. Their duration must
// come from the request's metadata, since this runner carries no decoders.
func knownAudio(b []byte) bool {
	switch {
	case len(b) < 12:
		return false
	case bytes.HasPrefix(b, []byte("ID3")), b[0] == 0xFF && b[1]&0xE0 == 0xE0, // mp3
		bytes.HasPrefix(b, []byte("OggS")), bytes.HasPrefix(b, []byte("fLaC")),
		string(b[4:8]) == "ftyp",                           // mp4/m4a
		bytes.HasPrefix(b, []byte{0x1A, 0x45, 0xDF, 0xA3}): // webm/mkv
		return true
	}
	return false
}

// AudioSeconds is how the runner (and the orchestrator's billing) learns an
// upload's length: a WAV header, else metadata {"duration": seconds} for a
// recognised container, as ai-runner skips ffprobe when metadata has it.
func AudioSeconds(b []byte, metadata string) (float64, error) {
	return AudioSecondsOf(b, int64(len(b)), metadata)
}

// AudioSecondsOf is AudioSeconds for a file of total bytes of which b is the
// start (see wav.Duration).
func AudioSecondsOf(b []byte, total int64, metadata string) (float64, error) {
	if d, err := wav.Duration(b, total); err == nil {
		return d, nil
	}
	var meta struct {
		Duration float64 `json:"duration"`
	}
	if metadata != "" {
		_ = json.Unmarshal([]byte(metadata), &meta)
	}
	if knownAudio(b) && meta.Duration > 0 && !math.IsInf(meta.Duration, 0) {
		return meta.Duration, nil
	}
	return 0, ErrAudioFormat
}

// maxAudioSeconds bounds the transcript this runner will invent.
const maxAudioSeconds = 4 * 3600

func parseAudioToText(_ *Runner, p *params) (task, error) {
	fh, ok := p.file("audio")
	stamps := p.str("return_timestamps", "true", false)
	metadata := p.str("metadata", "{}", false)
	if !ok {
		return task{}, nil
	}
	if fh.Size > MaxAudioBytes {
		return task{}, &statusError{http.StatusRequestEntityTooLarge, "File size exceeds limit."}
	}
	mode := strings.ToLower(stamps)
	switch mode {
	case "true", "false", "sentence", "word":
	default:
		return task{}, badRequest("return_timestamps must be one of true, false, sentence, word.")
	}
	if metadata != "" && !json.Valid([]byte(metadata)) {
		return task{}, badRequest("metadata must be a JSON object.")
	}
	b, err := readFile(fh)
	if err != nil {
		return task{}, errUnsupportedAudio
	}
	secs, err := AudioSeconds(b, metadata)
	if errors.Is(err, ErrAudioFormat) || secs > maxAudioSeconds {
		return task{}, errUnsupportedAudio
	}
	seed := splitmix(uint64(len(b)))
	return task{unit: "chunks", total: audioChunks(secs), run: func(ctx context.Context, d time.Duration) (any, error) {
		if err := sleep(ctx, d); err != nil {
			return nil, err
		}
		return transcript(secs, mode, seed), nil
	}}, nil
}

// transcript invents speech at ~2.5 words/s, chunked per sentence (≤5 s)
// or per word, with timestamps covering the audio's length.
func transcript(secs float64, mode string, seed uint64) TextResponse {
	const wordsPerSecond = 2.5
	n := max(1, int(secs*wordsPerSecond))
	ws := strings.Fields(words(seed, n))
	per := secs / float64(n)
	group := 12 // ≈5 s sentences
	if mode == "word" {
		group = 1
	}
	out := TextResponse{Chunks: []Chunk{}}
	var all []string
	for i := 0; i < n; i += group {
		end := min(i+group, n)
		text := " " + strings.Join(ws[i:end], " ")
		all = append(all, text)
		if mode != "false" {
			out.Chunks = append(out.Chunks, Chunk{
				Timestamp: [2]float64{round2(float64(i) * per), round2(float64(end) * per)},
				Text:      text,
			})
		}
	}
	out.Text = strings.Join(all, "")
	return out
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }

// ttsSecondsPerChar approximates speaking speed (~15 characters a second).
const ttsSecondsPerChar = 0.065

// maxTTSChars bounds the WAV a request can ask for (≈ 6.5 minutes).
const maxTTSChars = 6000

func parseTextToSpeech(_ *Runner, p *params) (task, error) {
	text := p.str("text", "", false)
	_ = p.str("description", "", false)
	if strings.TrimSpace(text) == "" {
		return task{}, badRequest("Text input must be provided.")
	}
	chars := utf8.RuneCountInString(text)
	if chars > maxTTSChars {
		return task{}, badRequest("Text input is too long.")
	}
	seed := splitmix(uint64(chars))
	for _, c := range text {
		seed = splitmix(seed ^ uint64(c))
	}
	return task{run: func(ctx context.Context, d time.Duration) (any, error) {
		if err := sleep(ctx, d); err != nil {
			return nil, err
		}
		var out AudioResponse
		out.Audio.URL = dataURL("audio/wav", renderWAV(0.3+float64(chars)*ttsSecondsPerChar, seed))
		return out, nil
	}}, nil
}
