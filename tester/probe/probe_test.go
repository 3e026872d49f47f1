package probe

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/internal/results"
	"github.com/lpgauge/lpgauge/media/pngfile"
)

var fast = Timeouts{Connect: 300 * time.Millisecond, TLS: 300 * time.Millisecond, Server: 400 * time.Millisecond, Total: time.Second}

// good answers text-to-image like an orchestrator: PNG URLs on its own host.
func good(w http.ResponseWriter, r *http.Request, mediaURL string) {
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"images":[{"url":%q,"seed":1,"nsfw":false}]}`, mediaURL)
}

// bigUpload is a pipeline whose request is 64 MiB, to hang in the upload phase.
type bigUpload struct{ TextToImage }

func (bigUpload) Build(string, int64) (*Request, error) {
	return &Request{Body: make([]byte, 64<<20), ContentType: "application/octet-stream", Expect: imageExpect{}}, nil
}

type preparerFunc func(context.Context, PrepareJob) (Preparation, error)

func (f preparerFunc) Prepare(ctx context.Context, j PrepareJob) (Preparation, error) {
	return f(ctx, j)
}

// hostile builds one misbehaving orchestrator and returns its service URI.
type hostile struct {
	name      string
	serve     func(t *testing.T) string
	pipeline  Pipeline
	prep      Preparer
	dial      func(ctx context.Context, network, addr string) (net.Conn, error)
	class     Class
	code      string
	outcome   results.Outcome
	maxMemory bool // a body meant to exhaust memory
	// timeouts replaces fast where the case needs more room to reach its
	// phase on a loaded machine.
	timeouts *Timeouts
}

func httpServer(t *testing.T, h http.HandlerFunc) string {
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s.URL
}

// rawListener accepts connections and hands them to f (for TCP-level misbehaviour).
func rawListener(t *testing.T, f func(net.Conn)) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); defer c.Close(); f(c) }()
		}
	}()
	return l.Addr().String()
}

// hold keeps a connection open without answering until the peer gives up.
func hold(c net.Conn) { _, _ = io.Copy(io.Discard, c) }

func hostiles() []hostile {
	status := func(code int, body string) func(t *testing.T) string {
		return func(t *testing.T) string {
			return httpServer(t, func(w http.ResponseWriter, r *http.Request) { http.Error(w, body, code) })
		}
	}
	return []hostile{
		{name: "refused", serve: func(t *testing.T) string {
			l, _ := net.Listen("tcp", "127.0.0.1:0")
			addr := l.Addr().String()
			l.Close()
			return "http://" + addr
		}, class: ClassNetwork, code: "connection_refused"},
		{name: "hang at connect", serve: func(t *testing.T) string { return "http://192.0.2.1:8935" },
			dial:  func(ctx context.Context, _, _ string) (net.Conn, error) { <-ctx.Done(); return nil, ctx.Err() }, // a black hole
			class: ClassTimeout, code: "timeout_connect"},
		{name: "hang at tls", serve: func(t *testing.T) string { return "https://" + rawListener(t, hold) },
			class: ClassTimeout, code: "timeout_tls"},
		{name: "tls to a plain server", serve: func(t *testing.T) string {
			return "https://" + httpServer(t, func(w http.ResponseWriter, r *http.Request) {})[len("http://"):]
		}, class: ClassTLS, code: "tls_handshake"},
		{name: "hang at upload", pipeline: bigUpload{}, serve: func(t *testing.T) string {
			return "http://" + rawListener(t, func(c net.Conn) {
				_, _ = c.Read(make([]byte, 4096)) // headers, then never read again
				time.Sleep(6 * time.Second)
			})
			// A 2.5 s total: building the 64 MiB body under -race on a
			// loaded box once took the whole 1 s before the dial (CI run of
			// 2026-12-03, classified timeout_connect).
		}, timeouts: &Timeouts{Connect: fast.Connect, TLS: fast.TLS, Server: fast.Server, Total: 2500 * time.Millisecond},
			class: ClassTimeout, code: "timeout_upload"},
		{name: "hang at server", serve: func(t *testing.T) string {
			return httpServer(t, func(w http.ResponseWriter, r *http.Request) {
				// Reading the body lets the server notice the client leaving.
				_, _ = io.Copy(io.Discard, r.Body)
				select {
				case <-r.Context().Done():
				case <-time.After(5 * time.Second):
				}
			})
		}, class: ClassTimeout, code: "timeout_server"},
		{name: "slowloris body", serve: func(t *testing.T) string {
			return httpServer(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(200)
				for i := 0; r.Context().Err() == nil && i < 100; i++ {
					_, _ = w.Write([]byte(" "))
					w.(http.Flusher).Flush()
					time.Sleep(100 * time.Millisecond)
				}
			})
		}, class: ClassTimeout, code: "timeout_download"},
		{name: "1 GiB body", maxMemory: true, serve: func(t *testing.T) string {
			return httpServer(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				chunk := bytes.Repeat([]byte("A"), 1<<20)
				for i := 0; i < 1024 && r.Context().Err() == nil; i++ {
					if _, err := w.Write(chunk); err != nil {
						return
					}
				}
			})
		}, class: ClassInvalid, code: "body_too_large"},
		{name: "invalid json", serve: func(t *testing.T) string {
			return httpServer(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(`{"images":[{"url":`))
			})
		}, class: ClassInvalid, code: "json"},
		{name: "wrong content type", serve: func(t *testing.T) string {
			return httpServer(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/html")
				_, _ = w.Write([]byte(`<html>hello</html>`))
			})
		}, class: ClassInvalid, code: "content_type"},
		{name: "reset", serve: func(t *testing.T) string {
			return "http://" + rawListener(t, func(c net.Conn) {
				_, _ = c.Read(make([]byte, 4096))
				_ = c.(*net.TCPConn).SetLinger(0) // close sends RST
			})
		}, class: ClassNetwork, code: "connection_reset"},
		{name: "closed without answer", serve: func(t *testing.T) string {
			return "http://" + rawListener(t, func(c net.Conn) { _, _ = c.Read(make([]byte, 4096)) })
		}, class: ClassNetwork, code: "connection_closed"},
		{name: "redirect", serve: func(t *testing.T) string {
			return httpServer(t, func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, "http://example.com/", http.StatusFound)
			})
		}, class: ClassOrchestrator, code: "redirect"},
		{name: "500", serve: status(500, "Text to image pipeline error."), class: ClassOrchestrator, code: "http_500"},
		{name: "capacity", serve: status(503, "insufficient capacity"), class: ClassCapacity, code: "insufficient_capacity", outcome: results.Excused},
		{name: "503 for another reason", serve: status(503, "runner unavailable"), class: ClassOrchestrator, code: "http_503"},
		{name: "payment", serve: status(402, "invalid ticket"), class: ClassPayment, code: "http_402"},
		{name: "credentials", serve: status(403, "invalid segment credentials"), class: ClassCredentials, code: "http_403"},
		{name: "bad request", serve: status(400, "pipeline configured with x but called with y"), class: ClassBadRequest, code: "http_400"},
		{name: "media on a foreign host", serve: func(t *testing.T) string {
			return httpServer(t, func(w http.ResponseWriter, r *http.Request) { good(w, r, "http://169.254.169.254/latest/meta-data") })
		}, class: ClassInvalid, code: "media_foreign_host"},
		{name: "media missing", serve: func(t *testing.T) string {
			return httpServer(t, func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodPost {
					good(w, r, "/stream/x/0.png")
					return
				}
				http.NotFound(w, r)
			})
		}, class: ClassInvalid, code: "media_http_404"},
		{name: "media not a png", serve: func(t *testing.T) string {
			return httpServer(t, func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodPost {
					good(w, r, "/stream/x/0.png")
					return
				}
				_, _ = w.Write([]byte("GIF89a...."))
			})
		}, class: ClassInvalid, code: "png_decode"},
		{name: "tester-side prepare fault is excused", serve: status(500, "unreached"),
			prep: preparerFunc(func(context.Context, PrepareJob) (Preparation, error) {
				return Preparation{}, fmt.Errorf("deposit too low: %w", ErrTesterSide)
			}), class: ClassTester, code: "prepare", outcome: results.Excused},
		{name: "discovery fails", serve: status(500, "unreached"),
			prep: preparerFunc(func(context.Context, PrepareJob) (Preparation, error) {
				return Preparation{Discovery: 5 * time.Millisecond}, errors.New("GetOrchestrator: unavailable")
			}), class: ClassDiscovery, code: "discovery"},
		// GetOrchestrator into a blackhole: the gateway wraps whatever gRPC
		// said when our deadline cut it ("error reading server preface:
		// EOF") with %v. It is a timeout of the discovery phase, not a
		// discovery failure (issue 13: on main it was discovery/discovery).
		{name: "discovery cut by the deadline", serve: status(500, "unreached"),
			prep: preparerFunc(func(ctx context.Context, _ PrepareJob) (Preparation, error) {
				<-ctx.Done()
				return Preparation{}, fmt.Errorf("%w: %v", ErrDiscovery, errors.New(`rpc error: code = Unavailable desc = connection error: desc = "error reading server preface: EOF"`))
			}), class: ClassTimeout, code: "timeout_discovery"},
	}
}

// The job's round trip (total_us, what the score reads) is what a gateway
// with a live session waits for: upload + server + download + media.
// Discovery is timed in its own column and in the wall time, never in the
// total (on main a 300 ms GetOrchestrator was part of every total).
func TestTotalIsTheJobNotDiscovery(t *testing.T) {
	var (
		srv *httptest.Server
		mu  sync.Mutex
		img []byte
	)
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			mu.Lock()
			defer mu.Unlock()
			w.Header().Set("Content-Type", "image/png")
			_, _ = w.Write(img)
			return
		}
		var req struct{ Width, Height int }
		_ = json.NewDecoder(r.Body).Decode(&req)
		mu.Lock()
		img = noisyPNG(req.Width, req.Height)
		mu.Unlock()
		time.Sleep(50 * time.Millisecond)
		good(w, r, srv.URL+"/stream/0.png")
	}))
	defer srv.Close()
	const disc = 300 * time.Millisecond
	p := New(Config{Preparer: preparerFunc(func(context.Context, PrepareJob) (Preparation, error) {
		time.Sleep(disc)
		return Preparation{Discovery: disc}, nil
	})})
	r := p.Run(context.Background(), Job{Orchestrator: "0xab", ServiceURI: srv.URL, Pipeline: TextToImage{}, Model: "m", Seed: 1})
	if r.Outcome != results.Success {
		t.Fatalf("probe %s/%s: %s", r.ErrorClass, r.ErrorCode, r.ErrorMessage)
	}
	if sum := r.Upload + r.Server + r.Download + r.Media; r.Total != sum {
		t.Errorf("total %v, want upload+server+download+media = %v", r.Total, sum)
	}
	if r.Server < 50*time.Millisecond {
		t.Errorf("server phase %v, under the 50 ms the server slept", r.Server)
	}
	if r.Discovery != disc || r.Wall < disc+r.Total {
		t.Errorf("discovery %v, wall %v: want discovery in its own column and in the wall time", r.Discovery, r.Wall)
	}
}

// Every hostile or broken orchestrator is classified precisely, within its
// timeout, and tester-side faults are excused rather than scored.
func TestHostileOrchestratorsClassified(t *testing.T) {
	for _, h := range hostiles() {
		t.Run(h.name, func(t *testing.T) {
			uri := h.serve(t)
			pl := h.pipeline
			if pl == nil {
				pl = TextToImage{}
			}
			to := fast
			if h.timeouts != nil {
				to = *h.timeouts
			}
			p := New(Config{Timeouts: to, Preparer: h.prep, Dial: h.dial, MaxResponseBytes: 1 << 20})
			start := time.Now()
			r := p.Run(context.Background(), Job{Orchestrator: "0xAB", ServiceURI: uri, Pipeline: pl, Model: "m", Seed: 3})
			took := time.Since(start)
			if ErrorClassOf(r) != h.class || r.ErrorCode != h.code {
				t.Errorf("classified %s/%s (%s), want %s/%s", r.ErrorClass, r.ErrorCode, r.ErrorMessage, h.class, h.code)
			}
			want := h.outcome
			if want == "" {
				want = results.Failure
			}
			if r.Outcome != want {
				t.Errorf("outcome %s, want %s", r.Outcome, want)
			}
			if took > to.Total+500*time.Millisecond {
				t.Errorf("took %v, past the %v probe timeout", took, fast.Total)
			}
			if r.Orchestrator != "0xab" || r.Pipeline != "Text to image" {
				t.Errorf("identity not carried: %q %q", r.Orchestrator, r.Pipeline)
			}
		})
	}
}

// ErrorClassOf reads a result's class.
func ErrorClassOf(r results.Result) Class { return Class(r.ErrorClass) }

// Many hostile orchestrators at once (a dozen 1 GiB bodies among them) do
// not blow the tester's memory: each body is capped.
func TestManyHostileAtOnceMemoryBounded(t *testing.T) {
	hs := hostiles()
	var uris []string
	var pls []Pipeline
	var dials []func(ctx context.Context, network, addr string) (net.Conn, error)
	for rep := 0; rep < 3; rep++ {
		for _, h := range hs {
			if h.prep != nil {
				continue
			}
			n := 1
			if h.maxMemory {
				n = 4
			}
			for i := 0; i < n; i++ {
				uris = append(uris, h.serve(t))
				pl := h.pipeline
				if pl == nil {
					pl = TextToImage{}
				}
				pls = append(pls, pl)
				dials = append(dials, h.dial)
			}
		}
	}
	var peak atomic.Uint64
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Add(1)
	go func() {
		defer sampler.Done()
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
		}
	}()
	start := time.Now()
	var wg sync.WaitGroup
	for i := range uris {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := New(Config{Timeouts: fast, Dial: dials[i], MaxResponseBytes: 4 << 20})
			r := p.Run(context.Background(), Job{Orchestrator: "0xab", ServiceURI: uris[i], Pipeline: pls[i], Model: "m"})
			if r.Outcome == results.Success {
				t.Errorf("%s: a hostile orchestrator passed", uris[i])
			}
		}()
	}
	wg.Wait()
	close(stop)
	sampler.Wait()
	took := time.Since(start)
	// 12 capped bodies of 4 MiB plus the 64 MiB uploads, the fakes' own
	// buffers and the race detector's shadow: far below a GiB.
	if peak.Load() > 600<<20 {
		t.Errorf("peak heap %d MiB with %d hostile probes", peak.Load()>>20, len(uris))
	}
	if took > 3*fast.Total {
		t.Errorf("%d probes in parallel took %v", len(uris), took)
	}
	t.Logf("%d hostile probes, peak heap %d MiB, %v", len(uris), peak.Load()>>20, took)
}

// The server phase is request written → first response byte, measured on
// the monotonic clock: it contains the orchestrator's delay and not the
// media fetch.
func TestPhasesMeasured(t *testing.T) {
	const delay = 150 * time.Millisecond
	// The size seed 0 draws (the corpus picks it).
	asked, err := TextToImage{}.Build("m", 0)
	if err != nil {
		t.Fatal(err)
	}
	want := asked.Expect.(imageExpect)
	img := pngfile.Gradient(want.W, want.H, 1)
	mux := http.NewServeMux()
	var base string
	mux.HandleFunc("POST /text-to-image", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		time.Sleep(delay)
		w.Header().Set("X-Processing-Time-Ms", "150")
		good(w, r, base+"/stream/a/0.png")
	})
	mux.HandleFunc("GET /stream/a/0.png", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(50 * time.Millisecond)
		_, _ = w.Write(img)
	})
	s := httptest.NewUnstartedServer(mux)
	base = "http://" + s.Listener.Addr().String()
	s.Start()
	defer s.Close()
	r := New(Config{}).Run(context.Background(), Job{Orchestrator: "0xab", ServiceURI: s.URL, Pipeline: TextToImage{}, Model: "m", Seed: 0})
	if r.Outcome != results.Success {
		t.Fatalf("probe failed: %s/%s %s", r.ErrorClass, r.ErrorCode, r.ErrorMessage)
	}
	if r.Server < delay || r.Server > delay+500*time.Millisecond {
		t.Errorf("server phase %v, orchestrator slept %v", r.Server, delay)
	}
	if r.Media < 50*time.Millisecond {
		t.Errorf("media phase %v, media took 50ms to serve", r.Media)
	}
	if r.OrchProcessing != 150*time.Millisecond {
		t.Errorf("reported processing %v, header said 150ms", r.OrchProcessing)
	}
	if r.Connect <= 0 || r.Total < r.Server+r.Media || r.OutputUnits != float64(want.W*want.H) {
		t.Errorf("connect %v total %v units %v", r.Connect, r.Total, r.OutputUnits)
	}
	if r.InputParameters == "" || r.RequestBytes == 0 || r.ResponseBytes == 0 {
		t.Errorf("request/response accounting missing: %q %d %d", r.InputParameters, r.RequestBytes, r.ResponseBytes)
	}
	_ = capability.TextToImage
}
