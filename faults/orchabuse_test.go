package faults

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// The orchestrator binary attacked from outside, as a hostile gateway would.

const (
	uploadBytes     = 95 << 20
	uploads         = 6
	orchRSSLimit    = 300 << 20
	uploadModel     = "openai/whisper-large-v3"
	abuseImageModel = "ByteDance/SDXL-Lightning"
)

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(b []byte) (int, error) {
	clear(b)
	return len(b), nil
}

// audioUpload is a streamed multipart audio-to-text body of exactly size
// bytes: a WAV header whose data chunk fills the rest with silence.
func audioUpload(size int) (contentType string, body io.Reader) {
	var head, tail bytes.Buffer
	mw := multipart.NewWriter(&head)
	_ = mw.WriteField("model_id", uploadModel)
	fw, _ := mw.CreateFormFile("audio", "a.wav")
	_ = fw // the file's bytes follow head
	_ = mw.Close()
	// mw.Close wrote the closing boundary into head; move it to tail.
	closing := "\r\n--" + mw.Boundary() + "--\r\n"
	h := strings.TrimSuffix(head.String(), closing)
	tail.WriteString(closing)
	pcm := size - len(h) - tail.Len() - 44
	var wav bytes.Buffer
	le := binary.LittleEndian
	wav.WriteString("RIFF")
	_ = binary.Write(&wav, le, uint32(36+pcm))
	wav.WriteString("WAVEfmt ")
	for _, v := range []any{uint32(16), uint16(1), uint16(1), uint32(16000), uint32(32000), uint16(2), uint16(16)} {
		_ = binary.Write(&wav, le, v)
	}
	wav.WriteString("data")
	_ = binary.Write(&wav, le, uint32(pcm))
	return mw.FormDataContentType(), io.MultiReader(strings.NewReader(h), &wav, io.LimitReader(zeros{}, int64(pcm)), &tail)
}

// Six 95 MB uploads at once, admitted (off chain every job is): the
// orchestrator holds bodies on disk under its in-flight byte budget, so its
// peak RSS stays under 300 MiB (it reached 1.8 GB reading each into memory),
// and the job path keeps answering text-to-image jobs meanwhile.
func TestOrchestratorParallelUploadsStayBounded(t *testing.T) {
	o := startOrchestrator(t, nil, "-aiModels", "audio-to-text:"+uploadModel+":true,text-to-image:"+abuseImageModel+":true",
		"-mean-latency", "100ms", "-jitter", "0s", "-queue-timeout", "5s")
	pid := o.cmd.Process.Pid
	var hwm atomic.Uint64
	sample := func() {
		if v, err := vmHWM(pid); err == nil && v > hwm.Load() {
			hwm.Store(v)
		}
	}
	client := &http.Client{Timeout: 2 * time.Minute}
	var wg sync.WaitGroup
	codes := make([]string, uploads)
	for i := range uploads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ct, body := audioUpload(uploadBytes)
			req, _ := http.NewRequest(http.MethodPost, o.URL+"/audio-to-text", body)
			req.Header.Set("Content-Type", ct)
			req.ContentLength = uploadBytes
			resp, err := client.Do(req)
			if err != nil {
				codes[i] = err.Error()
				return
			}
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			resp.Body.Close()
			codes[i] = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	// The job path meanwhile: a text-to-image job every 250 ms, each
	// answered 200 within 5 s.
	jobs, slow := 0, 0
	var worst time.Duration
	jobClient := &http.Client{Timeout: 5 * time.Second}
	for running := true; running; {
		select {
		case <-done:
			running = false
		case <-time.After(250 * time.Millisecond):
		}
		sample()
		begin := time.Now()
		resp, err := jobClient.Post(o.URL+"/text-to-image", "application/json",
			strings.NewReader(`{"prompt":"a lighthouse","model_id":"`+abuseImageModel+`","width":64,"height":64}`))
		took := time.Since(begin)
		worst = max(worst, took)
		jobs++
		if err != nil {
			slow++
			t.Errorf("text-to-image during the uploads: %v after %s", err, took.Round(time.Millisecond))
			continue
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			slow++
			t.Errorf("text-to-image during the uploads: %d", resp.StatusCode)
		}
	}
	sample()
	peak := hwm.Load()
	t.Logf("%d parallel %d MiB uploads: orchestrator peak RSS %.1f MiB (VmHWM); %d text-to-image jobs meanwhile, slowest %s; upload answers: %q",
		uploads, uploadBytes>>20, float64(peak)/(1<<20), jobs, worst.Round(time.Millisecond), codes)
	if peak > orchRSSLimit {
		t.Errorf("orchestrator peak RSS %.1f MiB under %d parallel %d MiB uploads, want under %d MiB",
			float64(peak)/(1<<20), uploads, uploadBytes>>20, orchRSSLimit>>20)
	}
	for _, c := range codes {
		// Each upload is answered: run (the runner refuses audio over
		// 50 MB with 413, as ai-runner) or refused for room (503).
		if !strings.HasPrefix(c, "413") && !strings.HasPrefix(c, "503 insufficient capacity") && !strings.HasPrefix(c, "200") {
			t.Errorf("upload answered %q", c)
		}
	}
	if o.exited() {
		t.Fatalf("orchestrator died: %v", o.err)
	}
}

// trickleTimeout is the -body-read-timeout the trickle test gives the binary.
const trickleTimeout = 2 * time.Second

// A body trickled at a byte a second, over HTTP/1.1 and over h2c, is cut at
// -body-read-timeout (it stayed open for as long as the sender kept going).
func TestOrchestratorTrickledBodyIsCut(t *testing.T) {
	o := startOrchestrator(t, nil, "-aiModels", "text-to-image:"+abuseImageModel+":true", "-body-read-timeout", trickleTimeout.String())
	limit := trickleTimeout + 3*time.Second

	t.Run("http1", func(t *testing.T) {
		c, err := net.Dial("tcp", strings.TrimPrefix(o.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "POST /text-to-image HTTP/1.1\r\nHost: o\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
		begin := time.Now()
		go trickle(c)
		_ = c.SetReadDeadline(time.Now().Add(limit))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("trickled body still open after %s: %v", time.Since(begin).Round(time.Millisecond), err)
		}
		resp.Body.Close()
		took := time.Since(begin)
		t.Logf("HTTP/1.1 trickle: %d after %s (-body-read-timeout %s)", resp.StatusCode, took.Round(time.Millisecond), trickleTimeout)
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Errorf("trickled body: %d, want 408", resp.StatusCode)
		}
		// The connection is closed after: nothing more is read from it.
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Error("connection still open after the 408")
		}
	})

	t.Run("h2c", func(t *testing.T) {
		tr := &http2.Transport{AllowHTTP: true, DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}}
		defer tr.CloseIdleConnections()
		pr, pw := io.Pipe()
		defer pw.Close()
		go trickle(pw)
		ctx, cancel := context.WithTimeout(context.Background(), limit)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, o.URL+"/text-to-image", pr)
		req.Header.Set("Content-Type", "application/json")
		begin := time.Now()
		resp, err := (&http.Client{Transport: tr}).Do(req)
		took := time.Since(begin)
		if err != nil {
			if ctx.Err() != nil {
				t.Fatalf("trickled h2c body still open after %s", took.Round(time.Millisecond))
			}
			t.Logf("h2c trickle: stream reset after %s: %v", took.Round(time.Millisecond), err)
			return
		}
		resp.Body.Close()
		t.Logf("h2c trickle: %d after %s", resp.StatusCode, took.Round(time.Millisecond))
		if resp.StatusCode != http.StatusRequestTimeout {
			t.Errorf("trickled h2c body: %d, want 408", resp.StatusCode)
		}
	})
}

// trickle writes one byte a second until the write fails.
func trickle(w io.Writer) {
	for {
		if _, err := w.Write([]byte("{")); err != nil {
			return
		}
		time.Sleep(time.Second)
	}
}
