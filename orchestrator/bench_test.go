package orchestrator

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/orchestrator/aimodels"
	"github.com/lpgauge/lpgauge/orchestrator/cpurunner"
	"github.com/lpgauge/lpgauge/orchestrator/runner"
)

// BenchmarkOverhead measures what the orchestrator adds to a job: the same
// text-to-image request (64×64, one image) sent to the CPU runners directly
// and through the orchestrator (URL mode, as a tester sends it), in
// alternating blocks of the same run, with 0 inference time so the runner's
// own cost is only rendering and encoding the image. One b.N is one job on
// each path. Sequential: one client, one runner. Concurrent: 4 clients,
// 4 runners (capacity 4). A third path, the floor, is a bare forwarding
// proxy (see below): the cost of the second HTTP hop alone.
//
//	go test -run '^$' -bench Overhead -benchtime 400x ./orchestrator/
func BenchmarkOverhead(b *testing.B) {
	for _, workers := range []int{1, 4} {
		name := "sequential"
		if workers > 1 {
			name = fmt.Sprintf("concurrent=%d", workers)
		}
		b.Run(name, func(b *testing.B) { benchOverhead(b, workers) })
	}
}

func benchOverhead(b *testing.B, workers int) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	ms, err := aimodels.Parse(t2iModel)
	if err != nil {
		b.Fatal(err)
	}
	cr, err := cpurunner.New(ms, cpurunner.Config{Latency: runner.Latency{}, DefaultCapacity: workers, Logger: quiet})
	if err != nil {
		b.Fatal(err)
	}
	defer cr.Close()
	srv, err := New(Config{MaxBodyBytes: 100 << 20, MaxResponseBytes: 256 << 20, MaxQueue: 4 * workers,
		QueueTimeout: 10 * time.Second, RunnerTimeout: time.Minute, ResultTTL: time.Minute, EthAddr: "0xbench", Logger: quiet},
		cr, OffChain{})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	// The orchestrator's connection goroutines carry a pprof label (set on
	// the first request; the runner connections they dial inherit it), so
	// a -cpuprofile splits its CPU from the runners' and the clients':
	// go tool pprof -tagfocus side=orchestrator.
	orchSide := pprof.WithLabels(context.Background(), pprof.Labels("side", "orchestrator"))
	h := srv.Handler()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pprof.SetGoroutineLabels(orchSide)
		h.ServeHTTP(w, r)
	}))
	defer hs.Close()

	// The runner slots, as the orchestrator reaches them: holding every lease
	// at once yields each slot once.
	type target struct{ url, token string }
	direct := make([]target, workers)
	leases := make([]Lease, workers)
	for i := range leases {
		// Runners report ready a moment after they start.
		l, err := cr.Reserve(context.Background(), t2i, "ByteDance/SDXL-Lightning")
		for wait := time.Now(); err != nil && time.Since(wait) < 10*time.Second; {
			time.Sleep(10 * time.Millisecond)
			l, err = cr.Reserve(context.Background(), t2i, "ByteDance/SDXL-Lightning")
		}
		if err != nil {
			b.Fatalf("reserve slot %d: %v", i, err)
		}
		leases[i], direct[i] = l, target{l.URL() + "/text-to-image", l.Token()}
	}
	for _, l := range leases {
		l.Release()
	}
	orch := target{url: hs.URL + "/text-to-image"}

	// The floor: the least any orchestrator written with net/http can add
	// on this machine. A handler that reads the body, forwards it to a free
	// runner slot over a kept-alive connection and copies the answer back:
	// no payment, no queue, no decoding, no media store. What the
	// orchestrator adds above it is its own work; the floor itself is the
	// second HTTP hop.
	free := make(chan target, workers)
	for _, d := range direct {
		free <- d
	}
	floorClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2 * workers, DisableCompression: true}}
	floorSide := pprof.WithLabels(context.Background(), pprof.Labels("side", "floor"))
	fs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pprof.SetGoroutineLabels(floorSide)
		in, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		t := <-free
		defer func() { free <- t }()
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodPost, t.url, bytes.NewReader(in))
		req.Header.Set("Content-Type", r.Header.Get("Content-Type"))
		req.Header.Set("Authorization", "Bearer "+t.token)
		resp, err := floorClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
	defer fs.Close()
	floor := target{url: fs.URL + "/text-to-image"}

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2 * workers}, Timeout: time.Minute}
	body := t2iBody(64, 64)
	call := func(t target, marker bool) (time.Duration, error) {
		req, _ := http.NewRequest(http.MethodPost, t.url, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if t.token != "" {
			req.Header.Set("Authorization", "Bearer "+t.token)
		}
		if marker {
			req.Header.Set("Authorization", aiWorkerProtocol)
		}
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		took := time.Since(start)
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		return took, err
	}
	const (
		pathDirect = iota
		pathOrch
		pathFloor
		paths
	)
	pathName := [paths]string{"direct", "orchestrator", "floor"}
	// block runs n jobs on one path with workers clients and returns the
	// latencies and the wall time.
	clientSide := pprof.WithLabels(context.Background(), pprof.Labels("side", "client"))
	block := func(n int, path int) ([]time.Duration, time.Duration) {
		var mu sync.Mutex
		lat := make([]time.Duration, 0, n)
		jobs := make(chan struct{}, n)
		for range n {
			jobs <- struct{}{}
		}
		close(jobs)
		start := time.Now()
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				pprof.SetGoroutineLabels(clientSide)
				t := [paths]target{direct[w], orch, floor}[path]
				for range jobs {
					d, err := call(t, path == pathOrch)
					if err != nil {
						b.Errorf("job (%s): %v", pathName[path], err)
						return
					}
					mu.Lock()
					lat = append(lat, d)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		return lat, time.Since(start)
	}
	// Warm connections and caches on every path.
	for path := range paths {
		block(4*workers, path)
	}

	var lat [paths][]time.Duration
	var wall, cpu [paths]time.Duration
	const blockJobs = 50
	b.ResetTimer()
	for done, i := 0, 0; done < b.N; i++ {
		n := min(blockJobs, b.N-done)
		// Rotate which path goes first so drift in machine load falls on all.
		for k := range paths {
			path := (i + k) % paths
			cpu0 := processCPU(b)
			l, w := block(n, path)
			cpu[path] += processCPU(b) - cpu0
			lat[path], wall[path] = append(lat[path], l...), wall[path]+w
		}
		done += n
	}
	b.StopTimer()
	for path := range paths {
		if len(lat[path]) == 0 {
			b.Fatalf("no job completed on the %s path", pathName[path])
		}
	}
	var q [paths]func(float64) time.Duration
	var jobsPerS, cpuPerJob [paths]float64
	for path := range paths {
		q[path] = benchQuantiles(lat[path])
		jobsPerS[path] = float64(len(lat[path])) / wall[path].Seconds()
		// CPU of the whole process (clients, runners, orchestrator, GC)
		// per job: the difference between two paths is what the one in
		// front costs, and with every core busy it bounds the jobs/s
		// ratio at direct ÷ through.
		cpuPerJob[path] = benchMicros(cpu[path]) / float64(len(lat[path]))
	}
	d, o, f := q[pathDirect], q[pathOrch], q[pathFloor]
	b.ReportMetric(benchMicros(o(0.5)-d(0.5)), "p50-added-µs")
	b.ReportMetric(benchMicros(o(0.99)-d(0.99)), "p99-added-µs")
	b.ReportMetric(benchMicros(d(0.5)), "direct-p50-µs")
	b.ReportMetric(benchMicros(o(0.5)), "orch-p50-µs")
	b.ReportMetric(jobsPerS[pathDirect], "direct-jobs/s")
	b.ReportMetric(jobsPerS[pathOrch], "orch-jobs/s")
	// The ratio of this run (the median of ratios over -count holds better
	// than a ratio of medians on a shared machine).
	b.ReportMetric(jobsPerS[pathOrch]/jobsPerS[pathDirect], "jobs/s-ratio")
	b.ReportMetric(cpuPerJob[pathDirect], "direct-cpu-µs/job")
	b.ReportMetric(cpuPerJob[pathOrch], "orch-cpu-µs/job")
	b.ReportMetric(cpuPerJob[pathOrch]-cpuPerJob[pathDirect], "added-cpu-µs/job")
	b.ReportMetric(benchMicros(f(0.5)-d(0.5)), "floor-p50-added-µs")
	b.ReportMetric(benchMicros(f(0.99)-d(0.99)), "floor-p99-added-µs")
	b.ReportMetric(jobsPerS[pathFloor]/jobsPerS[pathDirect], "floor-jobs/s-ratio")
	b.ReportMetric(cpuPerJob[pathFloor]-cpuPerJob[pathDirect], "floor-added-cpu-µs/job")
	b.ReportMetric(benchLoad(), "load1")
}

// processCPU is the user+system CPU time this process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchLoad is the 1-minute load average at the end of a run: the machine
// is shared, so every run says how busy it was.
func benchLoad() float64 {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(raw))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}

// benchQuantiles sorts d and returns its nearest-rank quantile function.
func benchQuantiles(d []time.Duration) func(float64) time.Duration {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return func(q float64) time.Duration { return d[int(q*float64(len(d)-1))] }
}

func benchMicros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
