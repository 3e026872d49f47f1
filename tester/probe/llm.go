package probe

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/lpgauge/lpgauge/capability"
)

// LLM probes POST /llm with streaming on: OpenAI-style messages in, SSE
// chunks out. The prober times the first event (time to first token, stored
// as ttft_us); the output must be well-formed chunks, end with [DONE] (or a
// "stop" finish), contain text and no error event. Units are completion
// tokens, so tokens/s = output_units / download time.
type LLM struct {
	MaxTokens int // default 64
}

// Info implements Pipeline.
func (LLM) Info() capability.Pipeline { return mustPipeline(capability.LLM) }

// Build implements Pipeline.
func (p LLM) Build(model string, seed int64) (*Request, error) {
	maxTokens := p.MaxTokens
	if maxTokens <= 0 {
		maxTokens = 64
	}
	d := newDraw(seed)
	params := map[string]any{
		"model":       model, // the LLM endpoint says model, not model_id
		"messages":    []map[string]string{{"role": "user", "content": d.question()}},
		"max_tokens":  maxTokens,
		"temperature": []float64{0.2, 0.5, 0.7, 0.8, 1}[d.rng.IntN(5)],
		"stream":      true,
	}
	body, err := json.Marshal(params)
	if err != nil {
		return nil, fmt.Errorf("llm request: %w", err)
	}
	return &Request{Body: body, ContentType: "application/json", Params: params, Units: float64(maxTokens), Expect: maxTokens,
		MaxResponseBytes: jsonSlack + int64(maxTokens+llmExtraEvents)*llmEventBytes, MaxMediaBytes: mediaSlack}, nil
}

type llmChunk struct {
	Error   any `json:"error"`
	Choices []struct {
		FinishReason *string `json:"finish_reason"`
		Delta        *struct {
			Content string `json:"content"`
		} `json:"delta"`
		Message *struct {
			Content string `json:"content"`
		} `json:"message"`
	} `json:"choices"`
	Usage *struct {
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
}

// Validate implements Pipeline.
func (LLM) Validate(_ context.Context, req *Request, resp *Response, _ *Media) (float64, error) {
	maxTokens := req.Expect.(int)
	events := resp.Events
	if len(events) == 0 {
		// An orchestrator may ignore stream=true and answer in one piece.
		if len(bytes.TrimSpace(resp.Body)) == 0 {
			return 0, invalid("llm_empty", "no events and no body")
		}
		events = [][]byte{resp.Body}
	}
	var text strings.Builder
	chunks, tokens, done := 0, 0, false
	for i, ev := range events {
		if string(ev) == "[DONE]" {
			done = true
			break
		}
		var c llmChunk
		if err := json.Unmarshal(ev, &c); err != nil {
			return 0, invalid("llm_chunk", "event %d is not JSON: %v", i, err)
		}
		if c.Error != nil {
			return 0, invalid("llm_stream_error", "event %d carries an error: %v", i, c.Error)
		}
		for _, ch := range c.Choices {
			if ch.Delta != nil && ch.Delta.Content != "" {
				text.WriteString(ch.Delta.Content)
				chunks++
			}
			if ch.Message != nil {
				text.WriteString(ch.Message.Content)
			}
			if ch.FinishReason != nil && *ch.FinishReason != "" {
				done = true
			}
		}
		if c.Usage != nil && c.Usage.CompletionTokens > 0 {
			tokens = c.Usage.CompletionTokens
		}
	}
	if !done {
		return 0, invalid("llm_truncated", "stream ended without [DONE] or a finish reason")
	}
	if strings.TrimSpace(text.String()) == "" {
		return 0, invalid("llm_empty", "no text generated")
	}
	if tokens == 0 {
		tokens = max(chunks, 1) // one token per streamed delta
	}
	if tokens > maxTokens+1 {
		return 0, invalid("llm_tokens", "%d tokens generated, max_tokens was %d", tokens, maxTokens)
	}
	return float64(tokens), nil
}
