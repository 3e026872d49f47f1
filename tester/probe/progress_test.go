package probe

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/internal/results"
	"github.com/lpgauge/lpgauge/orchestrator"
	"github.com/lpgauge/lpgauge/orchestrator/aimodels"
	"github.com/lpgauge/lpgauge/orchestrator/cpurunner"
	"github.com/lpgauge/lpgauge/orchestrator/runner"
)

const t2iModelID = "ByteDance/SDXL-Lightning"

// referenceOrchestrator serves the reference orchestrator over HTTP with
// the given runners and records, per request seed, the queue and inference
// times it accounted (its Lpgauge-Job-Timing header, or the timing event
// of a progress stream) and whether the request asked for progress.
type referenceOrchestrator struct {
	url string
	mu  sync.Mutex
	acc map[int64]accounted
}

type accounted struct {
	queue, inference time.Duration
	streamed         bool
}

// teeWriter keeps a copy of what the orchestrator writes.
type teeWriter struct {
	http.ResponseWriter
	buf bytes.Buffer
}

func (w *teeWriter) Write(b []byte) (int, error) { w.buf.Write(b); return w.ResponseWriter.Write(b) }
func (w *teeWriter) Flush()                      { w.ResponseWriter.(http.Flusher).Flush() }

func newReferenceOrchestrator(t *testing.T, models string, lat runner.Latency, cfg orchestrator.Config) *referenceOrchestrator {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ms, err := aimodels.Parse(models)
	if err != nil {
		t.Fatal(err)
	}
	cpu, err := cpurunner.New(ms, cpurunner.Config{Latency: lat, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cpu.Close)
	cfg.MaxBodyBytes, cfg.MaxResponseBytes, cfg.Logger = 16<<20, 64<<20, quiet
	cfg.RunnerTimeout, cfg.ResultTTL = time.Minute, time.Minute
	srv, err := orchestrator.New(cfg, cpu, orchestrator.OffChain{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	o := &referenceOrchestrator{acc: map[int64]accounted{}}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			srv.Handler().ServeHTTP(w, r)
			return
		}
		b, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(b))
		var req struct{ Seed int64 }
		_ = json.Unmarshal(b, &req)
		tw := &teeWriter{ResponseWriter: w}
		srv.Handler().ServeHTTP(tw, r)
		a := accounted{streamed: r.Header.Get(ProgressHeader) == ProgressVersion}
		if a.streamed {
			sc := bufio.NewScanner(&tw.buf)
			sc.Buffer(nil, 64<<20)
			for sc.Scan() {
				if sc.Text() == "event: timing" && sc.Scan() {
					var ev orchestrator.TimingEvent
					_ = json.Unmarshal([]byte(strings.TrimPrefix(sc.Text(), "data: ")), &ev)
					a.queue = time.Duration(ev.QueueMs * float64(time.Millisecond))
					a.inference = time.Duration(ev.InferenceMs * float64(time.Millisecond))
				}
			}
		} else {
			jt := parseJobTiming(w.Header().Get(JobTimingHeader))
			a.queue, a.inference = jt.queue, jt.inference
		}
		o.mu.Lock()
		o.acc[req.Seed] = a
		o.mu.Unlock()
	}))
	t.Cleanup(hs.Close)
	o.url = hs.URL
	return o
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// TestQueueTimeMatchesTheOrchestratorUnderLoad: four parallel clients on
// one runner slot. After its first answer (which offers the stream) the
// tester asks for progress; the queue time it stores matches what the
// orchestrator accounted within 2 ms at the median, the inference time
// stays at the runner's (not the queue's) and the two add up to the server
// phase, which the stream did not move.
func TestQueueTimeMatchesTheOrchestratorUnderLoad(t *testing.T) {
	const mean = 120 * time.Millisecond
	o := newReferenceOrchestrator(t, "text-to-image:"+t2iModelID+":true", runner.Latency{Mean: mean},
		orchestrator.Config{MaxQueue: 8, QueueTimeout: 30 * time.Second, ProgressPoll: 20 * time.Millisecond})
	p := New(Config{})
	const clients, each = 4, 6
	rows := make([][]results.Result, clients)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for i := range each {
				seed := int64(1000*c + i)
				rows[c] = append(rows[c], p.Run(t.Context(), Job{Orchestrator: "0xab", ServiceURI: o.url, Pipeline: TextToImage{}, Model: t2iModelID, Seed: seed}))
			}
		})
	}
	wg.Wait()
	var queueDiff, inference, orchInference, queues []time.Duration
	streamed := 0
	for c, rs := range rows {
		for i, r := range rs {
			if r.Outcome != results.Success {
				t.Fatalf("probe failed: %s/%s %s", r.ErrorClass, r.ErrorCode, r.ErrorMessage)
			}
			a := o.acc[int64(1000*c+i)]
			if a.streamed {
				streamed++
			}
			if r.Queue+r.Inference != r.Server {
				t.Errorf("queue %v + inference %v != server %v", r.Queue, r.Inference, r.Server)
			}
			queueDiff = append(queueDiff, absDur(r.Queue-a.queue))
			queues = append(queues, r.Queue)
			inference = append(inference, r.Inference)
			orchInference = append(orchInference, a.inference)
		}
	}
	if streamed < clients*each-clients {
		t.Errorf("%d of %d probes asked for progress, want all but the first of each client at most", streamed, clients*each)
	}
	if m := median(queues); m < mean {
		t.Errorf("median queue %v: the load did not queue (want about %v)", m, 2*mean)
	}
	// 2 ms is the tester's accuracy on a machine that keeps up. When the
	// machine is so loaded that the runner's own 120 ms jobs take over 6×
	// as long (901 ms seen in a make test beside a ClickHouse bulk load,
	// with a 2.34 ms gap), the progress event's delivery is delayed by the
	// scheduler, not by the tester's accounting: 5 ms there.
	limit := 2 * time.Millisecond
	if om := median(orchInference); om > 6*mean {
		limit = 5 * time.Millisecond
		t.Logf("overloaded machine: the runner's %v jobs took %v at the median; queue bound %v", mean, om, limit)
	}
	if m := median(queueDiff); m > limit {
		t.Errorf("median |tester queue − orchestrator queue| = %v, want ≤ %v", m, limit)
	}
	// The tester's inference ends at the answer's first byte, the
	// orchestrator's when the runner returned: on a loaded 2-core make test
	// the two medians drift a few ms apart (5.07 ms seen), so 20 ms here;
	// the queue above keeps its 2 ms.
	if m, om := median(inference), median(orchInference); m < mean || absDur(m-om) > 20*time.Millisecond {
		t.Errorf("median inference %v (orchestrator %v), want the runner's %v plus rendering, whatever the queue", m, om, mean)
	}
	t.Logf("median queue %v, |diff| %v; inference %v (orchestrator %v)", median(queues), median(queueDiff), median(inference), median(orchInference))
}

// hungRunner is the CPU runner with its text-to-image route replaced once
// hang is set: the job never answers and GET /progress says it is stuck at
// step 1 of 4, as a runner whose GPU hung would.
func hungRunner(t *testing.T, hang *atomic.Bool) string {
	t.Helper()
	rn, err := runner.New(runner.Config{Pipeline: "text-to-image", ModelID: t2iModelID, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rn.Close)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case hang.Load() && r.Method == http.MethodPost:
			// Read first: net/http notices the caller gone only then.
			_, _ = io.Copy(io.Discard, r.Body)
			<-r.Context().Done()
		case hang.Load() && strings.HasPrefix(r.URL.Path, "/progress"):
			_, _ = io.WriteString(w, `{"state":"running","unit":"steps","done":1,"total":4}`)
		default:
			rn.Handler().ServeHTTP(w, r)
		}
	}))
	t.Cleanup(hs.Close)
	return hs.URL
}

// TestStalledRunnerIsClassifiedStalled: a runner that stops making progress
// fails the probe as orchestrator_error/stalled within the configured bound
// (the orchestrator's heartbeats keep coming, its steps do not move), long
// before the server timeout.
func TestStalledRunnerIsClassifiedStalled(t *testing.T) {
	var hang atomic.Bool
	url := hungRunner(t, &hang)
	o := newReferenceOrchestrator(t, `[{"pipeline":"text-to-image","model_id":"`+t2iModelID+`","url":"`+url+`","capacity":1}]`, runner.Latency{},
		orchestrator.Config{MaxQueue: 4, QueueTimeout: 5 * time.Second, ProgressPoll: 20 * time.Millisecond, ProgressHeartbeat: 100 * time.Millisecond})
	const bound = 600 * time.Millisecond
	p := New(Config{StallAfter: bound, Timeouts: Timeouts{Server: time.Minute, Total: time.Minute}})
	job := Job{Orchestrator: "0xab", ServiceURI: o.url, Pipeline: TextToImage{}, Model: t2iModelID, Seed: 1}
	if r := p.Run(t.Context(), job); r.Outcome != results.Success {
		t.Fatalf("first probe (runner healthy): %s/%s %s", r.ErrorClass, r.ErrorCode, r.ErrorMessage)
	}
	hang.Store(true)
	job.Seed = 2
	start := time.Now()
	r := p.Run(t.Context(), job)
	took := time.Since(start)
	if r.ErrorClass != string(ClassOrchestrator) || r.ErrorCode != "stalled" || r.Outcome != results.Failure {
		t.Fatalf("hung runner: %s/%s (%s) %s, want orchestrator_error/stalled, scored", r.ErrorClass, r.ErrorCode, r.Outcome, r.ErrorMessage)
	}
	if took < bound || took > bound+time.Second {
		t.Errorf("stalled after %v, want within the %v bound (plus the check interval)", took, bound)
	}
	if !strings.Contains(r.ErrorMessage, "1/4 steps") {
		t.Errorf("message %q, want where the runner stopped", r.ErrorMessage)
	}
}

// TestNoOfferNoOptIn: an orchestrator that does not offer the stream (a
// go-livepeer one) is never asked for it, and the server phase stays one
// number (queue and inference 0).
func TestNoOfferNoOptIn(t *testing.T) {
	var asked atomic.Int32
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(ProgressHeader) != "" {
			asked.Add(1)
		}
		http.Error(w, "insufficient capacity", http.StatusServiceUnavailable)
	}))
	t.Cleanup(hs.Close)
	p := New(Config{})
	for seed := range int64(2) {
		r := p.Run(t.Context(), Job{Orchestrator: "0xab", ServiceURI: hs.URL, Pipeline: TextToImage{}, Model: t2iModelID, Seed: seed})
		if r.Queue != 0 || r.Inference != 0 {
			t.Errorf("queue %v inference %v from an orchestrator that reports neither", r.Queue, r.Inference)
		}
	}
	if asked.Load() != 0 {
		t.Errorf("asked %d times for progress an orchestrator never offered", asked.Load())
	}
}

// TestLLMThroughTheProgressStream: an LLM probe that asked for progress
// still validates the relayed token stream, and its time to first token
// and queue/inference split are taken from the events.
func TestLLMThroughTheProgressStream(t *testing.T) {
	const model = "meta-llama/Meta-Llama-3.1-8B-Instruct"
	o := newReferenceOrchestrator(t, "llm:"+model+":true", runner.Latency{Mean: 100 * time.Millisecond},
		orchestrator.Config{MaxQueue: 4, QueueTimeout: 5 * time.Second})
	p := New(Config{})
	for seed := range int64(2) {
		r := p.Run(t.Context(), Job{Orchestrator: "0xab", ServiceURI: o.url, Pipeline: LLM{}, Model: model, Seed: seed})
		if r.Outcome != results.Success {
			t.Fatalf("probe %d: %s/%s %s", seed, r.ErrorClass, r.ErrorCode, r.ErrorMessage)
		}
		if r.TTFT <= 0 || r.TTFT > r.Server+time.Millisecond || r.Queue+r.Inference != r.Server || r.Queue <= 0 {
			t.Errorf("probe %d: ttft %v server %v queue %v inference %v, want ttft = server = queue + inference", seed, r.TTFT, r.Server, r.Queue, r.Inference)
		}
	}
	streamed := 0
	for _, a := range o.acc {
		if a.streamed {
			streamed++
		}
	}
	if streamed != 1 {
		t.Errorf("%d probes asked for progress, want the second", streamed)
	}
}
