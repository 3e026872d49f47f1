package orchestrator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"mime/multipart"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/orchestrator/runner"
)

// aiRequest is a decoded job: what the orchestrator needs before it runs
// anything (model, billing units) plus what it needs to shape the result.
type aiRequest struct {
	model string
	units int64
	fps   int // image-to-video, for the video it assembles
}

// requestError is a decode/validation failure: 400 with its text as body.
type requestError struct{ msg string }

func (e *requestError) Error() string { return e.msg }

func badf(format string, args ...any) error {
	return &requestError{fmt.Sprintf(format, args...)}
}

// form is a multipart body read as a stream: its fields in memory (at most
// maxFormFieldBytes in all), its files as their first fileHeadBytes and
// their size. A 95 MB upload costs the orchestrator a 1 MiB head, not 95 MB:
// billing needs only an image's header or an audio file's header and length.
type form struct {
	values map[string]string
	files  map[string]filePart
}

type filePart struct {
	head []byte
	size int64
}

const (
	// fileHeadBytes is how much of each uploaded file is kept: image
	// headers (JPEG APP segments are at most 64 KiB each) and WAV chunk
	// headers sit well inside it.
	fileHeadBytes = 1 << 20
	// maxFormFieldBytes bounds the non-file fields of one form together
	// (prompt, model_id, metadata, …).
	maxFormFieldBytes = 1 << 20
)

func readForm(contentType string, body io.Reader) (*form, error) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		return nil, badf("body must be multipart/form-data")
	}
	f := &form{values: map[string]string{}, files: map[string]filePart{}}
	mr := multipart.NewReader(body, params["boundary"])
	fieldBytes := int64(0)
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return f, nil
		}
		if err != nil {
			return nil, badf("malformed multipart body: %v", err)
		}
		if p.FileName() != "" {
			head, err := io.ReadAll(io.LimitReader(p, fileHeadBytes))
			if err != nil {
				return nil, badf("malformed multipart body: %v", err)
			}
			rest, err := io.Copy(io.Discard, p)
			if err != nil {
				return nil, badf("malformed multipart body: %v", err)
			}
			f.files[p.FormName()] = filePart{head: head, size: int64(len(head)) + rest}
			continue
		}
		data, err := io.ReadAll(io.LimitReader(p, maxFormFieldBytes-fieldBytes+1))
		if err != nil {
			return nil, badf("malformed multipart body: %v", err)
		}
		if fieldBytes += int64(len(data)); fieldBytes > maxFormFieldBytes {
			return nil, badf("form fields other than files exceed %d bytes together; send media as files", maxFormFieldBytes)
		}
		f.values[p.FormName()] = string(data)
	}
}

func (f *form) int(name string, def int) (int, error) {
	v, ok := f.values[name]
	if !ok || v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return 0, badf("%s: %q is not an integer", name, v)
	}
	return n, nil
}

func (f *form) image(name string) (w, h int, err error) {
	b, ok := f.files[name]
	if !ok {
		return 0, 0, badf("missing file %q", name)
	}
	if w, h, err = runner.ImageSize(b.head); err != nil {
		return 0, 0, badf("%s: unreadable image", name)
	}
	return w, h, nil
}

// decodeRequest validates the body the way go-livepeer does before it
// touches payment, and computes the billing units as go-livepeer's
// handleAIRequest does (server/ai_http.go:1400-1570 at 176aa415c): H×W×images
// for text-to-image (512×512 when unset) and image-to-image, H×W for
// upscale, segment-anything-2 and image-to-text, H×W×25 frames for
// image-to-video (1024×576 when unset), max_tokens for llm, 1000 × input
// characters for text-to-speech, whole audio seconds × 1000 for
// audio-to-text.
func decodeRequest(p capability.Pipeline, contentType string, body []byte) (aiRequest, error) {
	switch p.ID {
	case capability.TextToImage, capability.LLM, capability.TextToSpeech:
		return decodeJSON(p, body) // no copy of a body already in memory
	}
	return decodeStream(p, contentType, bytes.NewReader(body))
}

// decodeStream is decodeRequest reading the body as a stream; the caller
// bounds its size (a JSON body is read whole, so its pipeline's bound is
// small).
func decodeStream(p capability.Pipeline, contentType string, body io.Reader) (aiRequest, error) {
	switch p.ID {
	case capability.TextToImage, capability.LLM, capability.TextToSpeech:
		b, err := io.ReadAll(body)
		if err != nil {
			return aiRequest{}, badf("could not read request body: %v", err)
		}
		return decodeJSON(p, b)
	}
	f, err := readForm(contentType, body)
	if err != nil {
		return aiRequest{}, err
	}
	req := aiRequest{model: f.values["model_id"]}
	switch p.ID {
	case capability.ImageToImage, capability.Upscale:
		if strings.TrimSpace(f.values["prompt"]) == "" {
			return req, badf("missing prompt")
		}
		w, h, err := f.image("image")
		if err != nil {
			return req, err
		}
		n := 1
		if p.ID == capability.ImageToImage {
			if n, err = f.int("num_images_per_prompt", 1); err != nil {
				return req, err
			}
		}
		if req.units, err = billUnits(int64(w), int64(h), int64(max(n, 1))); err != nil {
			return req, err
		}
	case capability.ImageToVideo:
		if _, _, err := f.image("image"); err != nil {
			return req, err
		}
		h, err := f.int("height", 576)
		if err != nil {
			return req, err
		}
		w, err := f.int("width", 1024)
		if err != nil {
			return req, err
		}
		if req.fps, err = f.int("fps", 6); err != nil {
			return req, err
		}
		// go-livepeer bills a fixed 25-frame clip.
		if req.units, err = billUnits(int64(h), int64(w), capability.BilledVideoFrames); err != nil {
			return req, err
		}
	case capability.AudioToText:
		b, ok := f.files["audio"]
		if !ok {
			return req, badf("missing file \"audio\"")
		}
		secs, err := runner.AudioSecondsOf(b.head, b.size, f.values["metadata"])
		if err != nil {
			return req, badf("audio: unreadable audio, cannot determine its duration")
		}
		// go-livepeer bills whole seconds × 1000 and refuses audio under one
		// second (common.CalculateAudioDuration; ai_http.go:1496-1506).
		whole := int64(secs)
		if whole <= 0 || secs > math.MaxInt64/1000 {
			return req, badf("Unable to calculate duration: audio is %.3f s; go-livepeer bills whole seconds and needs at least 1", secs)
		}
		req.units = whole * 1000
	case capability.SegmentAnything2, capability.ImageToText:
		w, h, err := f.image("image")
		if err != nil {
			return req, err
		}
		req.units = int64(w) * int64(h)
	default:
		return req, badf("pipeline %s is not served", p.Slug)
	}
	if req.units < 0 {
		return req, badf("negative size")
	}
	return req, nil
}

// billUnits multiplies a request's sizes into billing units, refusing a
// negative size or a product past int64: a wrapped product would bill a huge
// job as free, or as a negative charge that credits the sender.
func billUnits(factors ...int64) (int64, error) {
	units := int64(1)
	for _, f := range factors {
		if f < 0 {
			return 0, badf("negative size")
		}
		if f != 0 && units > math.MaxInt64/f {
			return 0, badf("requested size is too large to bill")
		}
		units *= f
	}
	return units, nil
}

func decodeJSON(p capability.Pipeline, body []byte) (aiRequest, error) {
	var req aiRequest
	switch p.ID {
	case capability.TextToImage:
		var b struct {
			Prompt  *string `json:"prompt"`
			ModelID string  `json:"model_id"`
			Height  *int    `json:"height"`
			Width   *int    `json:"width"`
			N       *int    `json:"num_images_per_prompt"`
		}
		if err := json.Unmarshal(body, &b); err != nil {
			return req, badf("invalid JSON body: %v", err)
		}
		if b.Prompt == nil {
			return req, badf("missing prompt")
		}
		// go-livepeer assumes 512×512 when the gateway leaves size unset,
		// although the runner then renders 1024×576.
		h, w, n := 512, 512, 1
		if b.Height != nil {
			h = *b.Height
		}
		if b.Width != nil {
			w = *b.Width
		}
		if b.N != nil {
			n = *b.N
		}
		if h <= 0 || w <= 0 || n <= 0 {
			return req, badf("height, width and num_images_per_prompt must be positive")
		}
		units, err := billUnits(int64(h), int64(w), int64(n))
		if err != nil {
			return req, err
		}
		req.model, req.units = b.ModelID, units
	case capability.LLM:
		var b struct {
			Model     string            `json:"model"`
			Messages  []json.RawMessage `json:"messages"`
			MaxTokens *int              `json:"max_tokens"`
		}
		if err := json.Unmarshal(body, &b); err != nil {
			return req, badf("invalid JSON body: %v", err)
		}
		if len(b.Messages) == 0 {
			return req, badf("missing messages")
		}
		if b.MaxTokens == nil || *b.MaxTokens <= 0 {
			return req, badf("MaxTokens not specified")
		}
		req.model, req.units = b.Model, int64(*b.MaxTokens)
	case capability.TextToSpeech:
		var b struct {
			ModelID string `json:"model_id"`
			Text    string `json:"text"`
		}
		if err := json.Unmarshal(body, &b); err != nil {
			return req, badf("invalid JSON body: %v", err)
		}
		req.model, req.units = b.ModelID, 1000*int64(utf8.RuneCountInString(b.Text))
	}
	return req, nil
}
