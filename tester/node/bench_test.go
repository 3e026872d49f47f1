package node

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/internal/chtest"
	"github.com/lpgauge/lpgauge/internal/proctest"
	"github.com/lpgauge/lpgauge/tester/orchtest"
)

// BenchmarkPeakRSS runs the real tester binary (built to a temp dir) for one
// round (-once, storing into the package's ClickHouse) and reports its peak
// resident memory (VmHWM), against:
//
//   - fleet=500x4: 500 fake orchestrators (in this process) × 4 models,
//     injected server times 20–110 ms, -concurrency 16: 2,000 probes;
//
//   - hostile=50: 50 hostile orchestrators, all probed at once
//     (-concurrency 50): endless 1 GiB bodies, endless media, slowloris
//     headers, hangs, garbage JSON, 10 of each.
//
//     go test -run '^$' -bench PeakRSS -benchtime 1x ./tester/node/
func BenchmarkPeakRSS(b *testing.B) {
	bin := proctest.Build(b, "github.com/lpgauge/lpgauge/cmd/tester")
	b.Run("fleet=500x4", func(b *testing.B) {
		var entries []string
		for i := 0; i < 500; i++ {
			o := orchtest.New(b, orchtest.Behaviour{Delay: time.Duration(20+10*(i%10)) * time.Millisecond})
			entries = append(entries, o.Target())
		}
		runTesterRSS(b, bin, entries, "text-to-image:model-0,text-to-image:model-1,text-to-image:model-2,text-to-image:model-3", 16, 2000)
	})
	b.Run("hostile=50", func(b *testing.B) {
		var entries []string
		for i := 0; i < 50; i++ {
			entries = append(entries, orchtest.RandomAddress()+"="+hostileServer(b, i%5))
		}
		runTesterRSS(b, bin, entries, "text-to-image:model-0", 50, 50,
			"-timeout.server", "5s", "-timeout.total", "8s", "-timeout.connect", "2s")
	})
}

func runTesterRSS(b *testing.B, bin string, entries []string, models string, concurrency, probes int, extra ...string) {
	db := chtest.NewDB(b)
	list := filepath.Join(b.TempDir(), "orchestrators.txt")
	if err := os.WriteFile(list, []byte(strings.Join(entries, "\n")+"\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	var peak int64
	var took time.Duration
	for i := 0; i < b.N; i++ {
		args := append([]string{"-region", "FRA", "-once", "-listen", "", "-log.level", "error",
			"-orchestrators", list, "-models", models, "-concurrency", fmt.Sprint(concurrency),
			"-spool-dir", b.TempDir(), "-clickhouse.addr", db.Addr, "-clickhouse.database", db.Name}, extra...)
		start := time.Now()
		p := proctest.Start(b, bin, nil, args...)
		v, err := p.WaitTrackingPeak(5 * time.Minute)
		if err != nil {
			b.Fatalf("tester: %v\n%s", err, p.Tail(4000))
		}
		took += time.Since(start)
		peak = max(peak, v)
	}
	var stored uint64
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := db.Conn.QueryRow(ctx, "SELECT count() FROM "+db.Name+".probe_results").Scan(&stored); err != nil {
		b.Fatal(err)
	}
	if want := uint64(probes * b.N); stored < uint64(probes) || stored > want {
		b.Fatalf("stored %d rows after %d rounds of %d probes", stored, b.N, probes)
	}
	b.ReportMetric(proctest.MiB(peak), "peak-RSS-MiB")
	b.ReportMetric(took.Seconds()/float64(b.N), "round-s")
}

// hostileServer starts one hostile orchestrator of kind k and returns its URL.
func hostileServer(b *testing.B, kind int) string {
	chunk := make([]byte, 64<<10)
	for i := range chunk {
		chunk[i] = 'A'
	}
	endless := func(w http.ResponseWriter, r *http.Request, prefix string) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(prefix))
		for sent := 0; sent < 1<<30; sent += len(chunk) {
			if _, err := w.Write(chunk); err != nil || r.Context().Err() != nil {
				return
			}
		}
	}
	var h http.HandlerFunc
	switch kind {
	case 0: // a 1 GiB JSON body that never closes its string
		h = func(w http.ResponseWriter, r *http.Request) { endless(w, r, `{"images":[{"url":"`) }
	case 1: // a valid answer whose media is 1 GiB
		h = func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost {
				w.Header().Set("Content-Type", "application/json")
				fmt.Fprintf(w, `{"images":[{"url":"http://%s/stream/x/0.png","seed":1,"nsfw":false}]}`, r.Host)
				return
			}
			w.Header().Set("Content-Type", "image/png")
			endless(w, r, "\x89PNG\r\n\x1a\n")
		}
	case 2: // hangs until the client gives up
		h = func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }
	case 3: // garbage
		h = func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"images":[{"url":` + strings.Repeat("\x00\xff", 4096)))
		}
	case 4: // slowloris: one header byte a second, forever
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		stop := make(chan struct{})
		b.Cleanup(func() { close(stop); ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					_, _ = c.Read(make([]byte, 4096))
					for _, ch := range []byte("HTTP/1.1 200 OK\r\nX-Slow: " + strings.Repeat("a", 1<<20)) {
						select {
						case <-stop:
							return
						case <-time.After(time.Second):
						}
						if _, err := c.Write([]byte{ch}); err != nil {
							return
						}
					}
				}()
			}
		}()
		return "http://" + ln.Addr().String()
	}
	o := orchtest.New(b, orchtest.Behaviour{Handler: h})
	return o.URL
}
