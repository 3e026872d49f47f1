package orchestrator

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/orchestrator/aimodels"
	"github.com/lpgauge/lpgauge/orchestrator/cpurunner"
	"github.com/lpgauge/lpgauge/orchestrator/runner"
)

// TestRunnerConnectionsAreReused sends 200 jobs from 4 clients at once
// through the orchestrator to one external runner URL serving 4 jobs at a
// time, and counts the TCP connections the runner accepted for them: they
// must stay open between jobs (keep-alive, an idle connection kept per job
// the runner can run at once). With Go's default transport only 2 idle
// connections per runner were kept, so every burst of 4 closed 2 and dialed
// 2 new ones: a handshake on the job path and sockets piling up in
// TIME_WAIT on a busy orchestrator.
func TestRunnerConnectionsAreReused(t *testing.T) {
	real, err := runner.New(runner.Config{Pipeline: "text-to-image", ModelID: "ext/t2i", Workers: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer real.Close()
	type connKey struct{}
	var conns, jobConns atomic.Int64
	var seen sync.Map
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			if _, loaded := seen.LoadOrStore(r.Context().Value(connKey{}), true); !loaded {
				jobConns.Add(1)
			}
		}
		real.Handler().ServeHTTP(w, r)
	}))
	srv.Config.ConnContext = func(ctx context.Context, _ net.Conn) context.Context {
		return context.WithValue(ctx, connKey{}, conns.Add(1))
	}
	srv.Start()
	defer srv.Close()
	r := newRig(t, `[{"pipeline":"text-to-image","model_id":"ext/t2i","url":"`+srv.URL+`","capacity":4}]`, runner.Latency{},
		func(c *Config) { c.QueueTimeout = 15 * time.Second; c.MaxQueue = 16 })

	body := []byte(`{"prompt":"a lighthouse","model_id":"ext/t2i","width":16,"height":16}`)
	const clients, perClient = 4, 50
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perClient {
				resp, out := post(t, r.url+"/text-to-image", "application/json", body, "Authorization", aiWorkerProtocol)
				if resp.StatusCode != http.StatusOK {
					t.Errorf("job: %d %s", resp.StatusCode, out)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := jobConns.Load(); n > clients {
		t.Errorf("the orchestrator opened %d connections to the runner for %d jobs, %d at a time; want at most %d (kept alive)", n, clients*perClient, clients, clients)
	}
}

// BenchmarkJobPath is the orchestrator's own work on one text-to-image job
// in URL mode, without the client's HTTP hop and without the runner's
// cost: the handler is called in process and the runner is a server that
// answers every job with the same bytes (a real CPU runner's 64×64 answer,
// captured once). ns/op and allocs/op are the orchestrator's (and the
// canned server's small share).
//
//	go test -run '^$' -bench JobPath -benchmem ./orchestrator/
func BenchmarkJobPath(b *testing.B) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	real, err := runner.New(runner.Config{Pipeline: "text-to-image", ModelID: "ext/t2i", Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer real.Close()
	body := []byte(`{"prompt":"a lighthouse","model_id":"ext/t2i","width":64,"height":64}`)
	// Runners report ready a moment after they start.
	var answer []byte
	for wait := time.Now(); time.Since(wait) < 10*time.Second; time.Sleep(10 * time.Millisecond) {
		rec := httptest.NewRecorder()
		real.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/text-to-image", bytes.NewReader(body)))
		if rec.Code == http.StatusOK {
			answer = rec.Body.Bytes()
			break
		}
	}
	if answer == nil {
		b.Fatal("the runner never answered")
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write(answer)
			return
		}
		real.Handler().ServeHTTP(w, r)
	}))
	defer srv.Close()
	ms, err := aimodels.Parse(`[{"pipeline":"text-to-image","model_id":"ext/t2i","url":"` + srv.URL + `","capacity":1}]`)
	if err != nil {
		b.Fatal(err)
	}
	cr, err := cpurunner.New(ms, cpurunner.Config{Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer cr.Close()
	s, err := New(Config{MaxBodyBytes: 100 << 20, MaxResponseBytes: 256 << 20, MaxQueue: 4,
		QueueTimeout: 10 * time.Second, RunnerTimeout: time.Minute, ResultTTL: time.Minute, EthAddr: "0xbench", Logger: quiet},
		cr, OffChain{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	h := s.Handler()
	job := func() {
		// http.NewRequest, not httptest.NewRequest, which parses a
		// whole request and allocates a 4 KiB reader per call.
		req, _ := http.NewRequest(http.MethodPost, "http://o.test/text-to-image", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", aiWorkerProtocol)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("job: %d %s", rec.Code, rec.Body)
		}
	}
	for wait := time.Now(); cr.States()[0].Capacity == 0 && time.Since(wait) < 10*time.Second; {
		time.Sleep(10 * time.Millisecond)
	}
	job()
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU(b)
	for range b.N {
		job()
	}
	b.ReportMetric(benchMicros(processCPU(b)-cpu0)/float64(b.N), "cpu-µs/job")
}
