package node

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/internal/proctest"
)

// BenchmarkPeakRSS runs the real orchestrator binary (built to a temp dir)
// with 4 CPU runners for one text-to-image model at 0 inference time and
// serves it jobs as a tester sends them (512×512, URL mode, then the media
// fetched from /stream/) from 4 clients at once; one b.N is 400 jobs. It
// reports the binary's peak resident memory (VmHWM), which includes the
// results it keeps for -result-ttl, and the jobs/s the clients saw.
//
//	go test -run '^$' -bench PeakRSS -benchtime 1x ./orchestrator/node/
func BenchmarkPeakRSS(b *testing.B) {
	bin := proctest.Build(b, "github.com/lpgauge/lpgauge/cmd/orchestrator")
	addr := proctest.FreeAddr(b)
	p := proctest.Start(b, bin, nil, "-aiModels", "text-to-image:ByteDance/SDXL-Lightning:true",
		"-mean-latency", "0s", "-jitter", "0s", "-capacity", "4",
		"-httpAddr", addr, "-serviceAddr", addr, "-operator-addr", "")
	base := "http://" + addr
	p.WaitHTTP(b, base+"/healthz", time.Minute)

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}, Timeout: time.Minute}
	body, _ := json.Marshal(map[string]any{"prompt": "a lighthouse", "model_id": "ByteDance/SDXL-Lightning", "width": 512, "height": 512})
	var media int64
	var mu sync.Mutex
	job := func() error {
		req, _ := http.NewRequest(http.MethodPost, base+"/text-to-image", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Livepeer-AI-Worker-1.0")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		var out struct {
			Images []struct{ URL string }
		}
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || err != nil || len(out.Images) != 1 {
			return fmt.Errorf("job: status %d, %d images, %v", resp.StatusCode, len(out.Images), err)
		}
		mresp, err := client.Get(out.Images[0].URL)
		if err != nil {
			return err
		}
		n, _ := io.Copy(io.Discard, mresp.Body)
		mresp.Body.Close()
		if mresp.StatusCode != http.StatusOK {
			return fmt.Errorf("media: status %d", mresp.StatusCode)
		}
		mu.Lock()
		media += n
		mu.Unlock()
		return nil
	}
	const clients, perOp = 4, 400
	jobs := 0
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		work := make(chan struct{}, perOp)
		for range perOp {
			work <- struct{}{}
		}
		close(work)
		var wg sync.WaitGroup
		for range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range work {
					if err := job(); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		jobs += perOp
	}
	took := time.Since(start)
	b.StopTimer()
	peak, err := p.PeakRSS()
	if err != nil {
		b.Fatalf("read VmHWM: %v\n%s", err, p.Tail(4000))
	}
	if err := p.Stop(20 * time.Second); err != nil {
		b.Errorf("orchestrator shutdown: %v", err)
	}
	b.ReportMetric(proctest.MiB(peak), "peak-RSS-MiB")
	b.ReportMetric(float64(jobs)/took.Seconds(), "jobs/s")
	b.ReportMetric(float64(media)/float64(jobs)/1024, "media-KiB/job")
}
