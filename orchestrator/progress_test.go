package orchestrator

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/orchestrator/runner"
)

type sse struct {
	name string
	data string
	at   time.Time
}

// readSSE reads a whole event stream.
func readSSE(t *testing.T, body io.Reader) []sse {
	t.Helper()
	var out []sse
	var cur sse
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if cur.name != "" || cur.data != "" {
				out = append(out, cur)
			}
			cur = sse{}
		case strings.HasPrefix(line, "event: "):
			cur.name, cur.at = strings.TrimPrefix(line, "event: "), time.Now()
		case strings.HasPrefix(line, "data: "):
			if cur.at.IsZero() {
				cur.at = time.Now()
			}
			if cur.data != "" {
				cur.data += "\n"
			}
			cur.data += strings.TrimPrefix(line, "data: ")
		}
	}
	return out
}

func postProgress(t *testing.T, url string, body []byte) (*http.Response, []sse) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(ProgressRequestHeader, ProgressVersion)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp, readSSE(t, resp.Body)
}

func waitQueued(t *testing.T, r *rig, n int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for r.srv.queued.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("queue never held %d jobs", n)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestProgressStreamQueuedBehindTwo: a job that asks for progress while one
// job runs and one waits (capacity 1) is told positions 2, then 1, then the
// runner's diffusion steps as they pass, then its timing and its result —
// the same bytes the plain answer to the same request has.
func TestProgressStreamQueuedBehindTwo(t *testing.T) {
	const mean = 400 * time.Millisecond
	r := newRig(t, t2iModel, runner.Latency{Mean: mean}, func(c *Config) {
		c.QueueTimeout = 10 * time.Second
		c.ProgressPoll = 10 * time.Millisecond
	})
	var wg sync.WaitGroup
	wg.Go(func() { post(t, r.url+"/text-to-image", "application/json", t2iBody(8, 8)) })
	waitInUse(t, r, 1)
	wg.Go(func() { post(t, r.url+"/text-to-image", "application/json", t2iBody(8, 8)) })
	waitQueued(t, r, 1)

	body, _ := json.Marshal(map[string]any{"prompt": "a lighthouse", "model_id": "ByteDance/SDXL-Lightning",
		"width": 8, "height": 8, "seed": 7, "num_inference_steps": 20})
	resp, events := postProgress(t, r.url+"/text-to-image", body)
	wg.Wait()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("status %d, content type %q, want a 200 event stream", resp.StatusCode, ct)
	}

	var positions []int
	var progress []ProgressEvent
	var timing *TimingEvent
	var result string
	var order []string
	for _, ev := range events {
		if len(order) == 0 || order[len(order)-1] != ev.name {
			order = append(order, ev.name)
		}
		switch ev.name {
		case "queue":
			var q QueueEvent
			if err := json.Unmarshal([]byte(ev.data), &q); err != nil {
				t.Fatal(err)
			}
			if len(positions) == 0 || positions[len(positions)-1] != q.Position {
				positions = append(positions, q.Position)
			}
			// One inference (400 ms) once a job finished; loose above: a
			// loaded machine stretches the inference it averages.
			if q.Position == 1 && (q.EstimatedWaitMs == nil || *q.EstimatedWaitMs < 350 || *q.EstimatedWaitMs > 1500) {
				t.Errorf("position 1 estimated wait %s, want about one inference (400 ms) once a job finished", ev.data)
			}
		case "progress":
			var p ProgressEvent
			if err := json.Unmarshal([]byte(ev.data), &p); err != nil {
				t.Fatal(err)
			}
			progress = append(progress, p)
		case "timing":
			timing = &TimingEvent{}
			if err := json.Unmarshal([]byte(ev.data), timing); err != nil {
				t.Fatal(err)
			}
		case "result":
			result = ev.data
		}
	}
	if strings.Join(order, ",") != "queue,progress,timing,result" {
		t.Errorf("events in order %v, want queue, progress, timing, result", order)
	}
	if len(positions) != 2 || positions[0] != 2 || positions[1] != 1 {
		t.Errorf("queue positions %v, want [2 1]", positions)
	}
	steps, last := 0, -1
	for _, p := range progress {
		if p.Unit == "steps" {
			if p.Total != 20 || p.Done < last {
				t.Errorf("progress %+v after done %d, want steps of 20, never going back", p, last)
			}
			if p.Done != last {
				steps++
			}
			last = p.Done
		}
	}
	if steps < 5 || last < 15 {
		t.Errorf("%d distinct step counts reaching %d of 20, want the diffusion steps to be seen passing (%+v)", steps, last, progress)
	}
	if timing == nil || timing.QueueMs < 500 || timing.InferenceMs < 350 || timing.InferenceMs > 1500 {
		t.Errorf("timing %+v, want about two inferences queued (800 ms) and one running (400 ms)", timing)
	}
	_, plain := post(t, r.url+"/text-to-image", "application/json", body)
	if result != string(plain) {
		t.Errorf("result event %q, want the plain answer's bytes %q", result, plain)
	}
}

// TestProgressStreamErrorEvent: a streamed job that waits past the queue
// timeout gets the 503 it would have had, as an error event.
func TestProgressStreamErrorEvent(t *testing.T) {
	r := newRig(t, t2iModel, runner.Latency{Mean: 500 * time.Millisecond}, func(c *Config) { c.QueueTimeout = 100 * time.Millisecond })
	done := make(chan struct{})
	go func() { defer close(done); post(t, r.url+"/text-to-image", "application/json", t2iBody(8, 8)) }()
	waitInUse(t, r, 1)
	_, events := postProgress(t, r.url+"/text-to-image", t2iBody(8, 8))
	<-done
	if len(events) < 2 || events[0].name != "queue" || events[len(events)-1].name != "error" {
		t.Fatalf("events %+v, want queue then error", events)
	}
	var e ErrorEvent
	if err := json.Unmarshal([]byte(events[len(events)-1].data), &e); err != nil || e.Status != 503 || e.Error != "insufficient capacity" {
		t.Errorf("error event %+v (%v), want 503 insufficient capacity", e, err)
	}
}

// TestProgressStreamLLM: a streamed LLM answer keeps its own events (the
// tokens are its progress) after the queue, start and timing events.
func TestProgressStreamLLM(t *testing.T) {
	r := newRig(t, "llm:meta-llama/Meta-Llama-3.1-8B-Instruct:true", runner.Latency{Mean: 100 * time.Millisecond}, nil)
	body, _ := json.Marshal(map[string]any{"model": "meta-llama/Meta-Llama-3.1-8B-Instruct", "max_tokens": 64, "stream": true,
		"messages": []map[string]string{{"role": "user", "content": "Write about rivers."}}})
	_, events := postProgress(t, r.url+"/llm", body)
	var names []string
	for _, ev := range events {
		names = append(names, ev.name)
	}
	if len(events) < 5 || events[0].name != "progress" || events[1].name != "timing" || events[len(events)-1].data != "[DONE]" {
		t.Errorf("events %v, want progress, timing, then the runner's chunks ending [DONE]", names)
	}
	if got := r.gate.total(); got != 64 {
		t.Errorf("charged %d, want max_tokens 64", got)
	}
}
