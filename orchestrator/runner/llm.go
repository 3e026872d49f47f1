package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strings"
	"time"
	"unicode"
)

func init() {
	specs["llm"] = pipelineSpec{errName: "LLM", parse: parseLLM}
}

// LLMMessage is one chat message.
type LLMMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// LLMUsage counts tokens the way the response reports them.
type LLMUsage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// LLMChoice is one choice: message when complete, delta when streaming.
type LLMChoice struct {
	Index        int         `json:"index"`
	FinishReason *string     `json:"finish_reason"`
	Delta        *LLMMessage `json:"delta,omitempty"`
	Message      *LLMMessage `json:"message,omitempty"`
}

// LLMResponse is ai-runner's LLMResponse (OpenAI-like).
type LLMResponse struct {
	ID      string      `json:"id"`
	Model   string      `json:"model"`
	Created int64       `json:"created"`
	Usage   LLMUsage    `json:"usage"`
	Choices []LLMChoice `json:"choices"`
}

// maxModelLen is ai-runner's MAX_MODEL_LEN default: prompt + completion.
const maxModelLen = 8192

// perMessageTokens approximates a chat template's role markers.
const perMessageTokens = 4

// Tokens splits text into this runner's tokens: words and single
// punctuation marks. Usage counts are exact with respect to it.
func Tokens(s string) []string {
	var out []string
	var cur strings.Builder
	flush := func() {
		if cur.Len() > 0 {
			out = append(out, cur.String())
			cur.Reset()
		}
	}
	for _, r := range s {
		switch {
		case unicode.IsSpace(r):
			flush()
		case unicode.IsPunct(r) || unicode.IsSymbol(r):
			flush()
			out = append(out, string(r))
		default:
			cur.WriteRune(r)
		}
	}
	flush()
	return out
}

func parseLLM(r *Runner, p *params) (task, error) {
	var msgs []LLMMessage
	if raw, ok := p.json["messages"]; !ok || string(raw) == "null" {
		p.missing("messages")
	} else {
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil {
			p.issue("list_type", "messages", "Input should be a valid list", rawValue(raw))
		}
		for i, it := range items {
			var m map[string]json.RawMessage
			if json.Unmarshal(it, &m) != nil {
				p.issues = append(p.issues, validationIssue{Type: "model_type", Loc: []any{"body", "messages", i},
					Msg: "Input should be a valid dictionary or instance of LLMMessage", Input: rawValue(it)})
				continue
			}
			var msg LLMMessage
			for _, f := range []struct {
				name string
				dst  *string
			}{{"role", &msg.Role}, {"content", &msg.Content}} {
				v, ok := m[f.name]
				if !ok {
					p.issues = append(p.issues, validationIssue{Type: "missing", Loc: []any{"body", "messages", i, f.name}, Msg: "Field required"})
				} else if json.Unmarshal(v, f.dst) != nil {
					p.issues = append(p.issues, validationIssue{Type: "string_type", Loc: []any{"body", "messages", i, f.name},
						Msg: "Input should be a valid string", Input: rawValue(v)})
				}
			}
			msgs = append(msgs, msg)
		}
	}
	_ = p.number("temperature", 0.7)
	maxTokens := p.integer("max_tokens", 256)
	_ = p.number("top_p", 1.0)
	_ = p.integer("top_k", -1)
	stream := p.boolean("stream", false)
	if len(p.issues) > 0 {
		return task{}, nil
	}
	if len(msgs) == 0 {
		return task{}, badRequest("messages must not be empty.")
	}
	if maxTokens < 1 {
		return task{}, badRequest("max_tokens must be at least 1.")
	}
	h := fnv.New64a()
	prompt := 0
	for _, m := range msgs {
		prompt += perMessageTokens + len(Tokens(m.Content))
		fmt.Fprintf(h, "%s\x00%s\x00", m.Role, m.Content)
	}
	if prompt+maxTokens > maxModelLen {
		return task{}, badRequest(fmt.Sprintf(
			"This model's maximum context length is %d tokens. However, you requested %d tokens (%d in the messages, %d in the completion).",
			maxModelLen, prompt+maxTokens, prompt, maxTokens))
	}
	seed := h.Sum64()
	// The reply would run to `want` tokens; max_tokens cuts it short.
	want := 16 + int(seed%112)
	n, finish := want, "stop"
	if n > maxTokens {
		n, finish = maxTokens, "length"
	}
	reply := strings.Fields(words(seed, n))
	base := LLMResponse{
		ID:      fmt.Sprintf("chatcmpl-%016x", splitmix(seed^uint64(time.Now().UnixNano()))),
		Model:   r.cfg.ModelID,
		Created: time.Now().Unix(),
	}
	usage := func(done int) LLMUsage {
		return LLMUsage{PromptTokens: prompt, CompletionTokens: done, TotalTokens: prompt + done}
	}
	if !stream {
		return task{unit: "tokens", total: n, run: func(ctx context.Context, d time.Duration) (any, error) {
			if err := sleep(ctx, d); err != nil {
				return nil, err
			}
			out := base
			out.Usage = usage(n)
			out.Choices = []LLMChoice{{FinishReason: &finish,
				Message: &LLMMessage{Role: "assistant", Content: strings.Join(reply, " ")}}}
			return out, nil
		}}, nil
	}
	events := make(chan []byte)
	return task{events: events, run: func(ctx context.Context, d time.Duration) (any, error) {
		defer close(events)
		send := func(v any) error {
			b, err := json.Marshal(v)
			if err != nil {
				return fmt.Errorf("encode llm chunk: %w", err)
			}
			select {
			case events <- fmt.Appendf(nil, "data: %s\n\n", b):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		// A fifth of the time goes to the prompt (time to first token), the
		// rest is spread over the generated tokens.
		if err := sleep(ctx, d/5); err != nil {
			return nil, err
		}
		step := (d - d/5) / time.Duration(n)
		for i, tok := range reply {
			if i > 0 {
				tok = " " + tok
				if err := sleep(ctx, step); err != nil {
					return nil, err
				}
			}
			chunk := base
			chunk.Usage = usage(i + 1)
			chunk.Choices = []LLMChoice{{Delta: &LLMMessage{Role: "assistant", Content: tok}}}
			if err := send(chunk); err != nil {
				return nil, err
			}
		}
		last := base
		last.Usage = usage(n)
		last.Choices = []LLMChoice{{FinishReason: &finish, Delta: &LLMMessage{Role: "assistant", Content: ""}}}
		if err := send(last); err != nil {
			return nil, err
		}
		select {
		case events <- []byte("data: [DONE]\n\n"):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return nil, nil
	}}, nil
}
