package orchestrator

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/orchestrator/aimodels"
	"github.com/lpgauge/lpgauge/orchestrator/cpurunner"
	"github.com/lpgauge/lpgauge/orchestrator/runner"
)

// rawGet sends path exactly as written (no client-side cleaning or escaping).
func rawGet(t *testing.T, base, path string) (int, []byte) {
	t.Helper()
	host := strings.TrimPrefix(base, "http://")
	c, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, host)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, nil // the server refused the request line itself
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// Path traversal on /stream/: dot segments plain and encoded, encoded
// slashes, absolute paths and NUL never serve anything but the stored file
// they name exactly.
func TestAbuseStreamPathTraversal(t *testing.T) {
	r := newRig(t, "text-to-image:ByteDance/SDXL-Lightning:true", runner.Latency{}, nil)
	resp, out := post(t, r.url+"/text-to-image", "application/json",
		[]byte(`{"prompt":"a cat","model_id":"ByteDance/SDXL-Lightning","width":64,"height":64}`), "Authorization", aiWorkerProtocol)
	if resp.StatusCode != 200 {
		t.Fatalf("job: %d %s", resp.StatusCode, out)
	}
	var res struct{ Images []struct{ URL string } }
	if err := json.Unmarshal(out, &res); err != nil || len(res.Images) != 1 {
		t.Fatalf("result %s: %v", out, err)
	}
	good := strings.TrimPrefix(res.Images[0].URL, r.url)
	code, media := rawGet(t, r.url, good)
	if code != 200 || len(media) == 0 {
		t.Fatalf("the stored result %s: %d", good, code)
	}
	id := strings.Split(strings.TrimPrefix(good, "/stream/"), "/")[0]
	for _, p := range []string{
		"/stream/../../../../etc/passwd", "/stream/" + id + "/../../../etc/passwd", "/stream/" + id + "/..",
		"/stream/%2e%2e/%2e%2e/etc/passwd", "/stream/" + id + "/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/stream/..%2f..%2fetc/passwd",
		"/stream/" + id + "%2f0.png/x", "/stream/" + id + "/0.png%2f..%2f..%2fpasswd", "/stream/%2fetc%2fpasswd/0.png",
		"/stream//etc/passwd", "/stream/" + id + "//etc/passwd", "//etc/passwd", "/stream/" + id + "/0.png%00", "/stream/" + id + "%00/0.png",
		"/stream/" + id + "/0.png%00.txt", "/stream/" + strings.ToUpper(id) + "/0.png", "/stream/" + id + "/0.PNG",
		"/stream/" + id + "/./0.png", "/stream/" + id + "/0.png/", "/stream/" + id + "/%30.png", "/stream/" + id + "/..%5c..%5cetc%5cpasswd",
		"/stream/" + id + "/\\..\\..\\etc\\passwd", "http://evil.example/stream/" + id + "/1.png", "/stream/" + id + "/999999.png",
		"/stream/" + id + "/" + strings.Repeat("0", 4096) + ".png",
	} {
		code, body := rawGet(t, r.url, p)
		switch {
		case code == 0: // request line refused by net/http: nothing served
		case code >= 500:
			t.Errorf("%s: %d", p, code)
		case code == 200 && !bytes.Equal(body, media):
			t.Errorf("%s: 200 with %d bytes that are not the stored result", p, len(body))
		case code == 200 && p != "/stream/"+id+"/%30.png":
			// Only %30 (an escaped "0") names the stored file exactly.
			t.Errorf("%s: served the result under another name", p)
		case code >= 300 && code < 400:
			// ServeMux cleans dot segments by redirect; the target must stay under /stream/ or be a 404 elsewhere.
		case code < 400 && code != 200:
			t.Errorf("%s: %d", p, code)
		}
		if bytes.Contains(body, []byte("root:")) {
			t.Errorf("%s: served a system file", p)
		}
	}
}

// Oversized bodies are refused before they are read past the limit, and an
// oversized header before any handler: 413 and 431, nothing run or charged.
func TestAbuseOversizedBodiesAndHeaders(t *testing.T) {
	r := newRig(t, "text-to-image:ByteDance/SDXL-Lightning:true", runner.Latency{}, func(c *Config) { c.MaxBodyBytes = 64 << 10 })
	big := bytes.Repeat([]byte("x"), 1<<20)
	body := append([]byte(`{"prompt":"`), append(big, []byte(`","model_id":"ByteDance/SDXL-Lightning"}`)...)...)
	resp, out := post(t, r.url+"/text-to-image", "application/json", body)
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("1 MB body: %d %s", resp.StatusCode, out)
	}
	req, _ := http.NewRequest(http.MethodPost, r.url+"/text-to-image", strings.NewReader(`{"prompt":"x","model_id":"ByteDance/SDXL-Lightning"}`))
	req.Header.Set("Livepeer-Payment", strings.Repeat("A", 2<<20))
	req.Header.Set("Livepeer-Segment", strings.Repeat("A", 2<<20))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("2 MB payment and segment headers: %d", resp.StatusCode)
		}
	}
	if n := len(r.gate.checks); n != 0 || r.gate.total() != 0 {
		t.Errorf("oversized requests reached the gate %d times, charged %d", n, r.gate.total())
	}
}

// countingServer serves h on loopback and counts the bytes it reads from
// clients: what a refused request cost the orchestrator.
func countingServer(t *testing.T, h http.Handler) (string, *atomic.Int64) {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	n := &atomic.Int64{}
	srv.Listener = countingListener{Listener: srv.Listener, n: n}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL, n
}

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{Conn: c, n: l.n}, nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(b []byte) (int, error) {
	k, err := c.Conn.Read(b)
	c.n.Add(int64(k))
	return k, err
}

// rawPost sends a request with a declared Content-Length of size bytes and
// writes the body (zeros after prefix) as fast as the server takes it, until
// the server answers; it returns the answer's status and body.
func rawPost(t *testing.T, base, path string, size int64, prefix []byte, header ...string) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	hdr := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: o\r\nContent-Length: %d\r\n", path, size)
	for i := 0; i+1 < len(header); i += 2 {
		hdr += header[i] + ": " + header[i+1] + "\r\n"
	}
	if _, err := io.WriteString(c, hdr+"\r\n"); err != nil {
		t.Fatal(err)
	}
	go func() {
		_, _ = c.Write(prefix)
		chunk := make([]byte, 1<<20)
		for left := size - int64(len(prefix)); left > 0; left -= int64(len(chunk)) {
			if _, err := c.Write(chunk[:min(left, int64(len(chunk)))]); err != nil {
				return // the server answered and closed
			}
		}
	}()
	_ = c.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

const uploadSize = 95 << 20

// wavHeader is the head of a 16-bit mono 16 kHz WAV whose data chunk
// declares size bytes.
func wavHeader(size int) []byte {
	var b bytes.Buffer
	le := binary.LittleEndian
	b.WriteString("RIFF")
	_ = binary.Write(&b, le, uint32(36+size))
	b.WriteString("WAVEfmt ")
	for _, v := range []any{uint32(16), uint16(1), uint16(1), uint32(16000), uint32(32000), uint16(2), uint16(16)} {
		_ = binary.Write(&b, le, v)
	}
	b.WriteString("data")
	_ = binary.Write(&b, le, uint32(size))
	return b.Bytes()
}

// An unpaid or uncredentialed 95 MB upload is refused from its headers: the
// orchestrator answers the gate's 402 having read almost none of it (it read
// all 95 MB before the 402). The same for a request no capacity is left
// for, and one whose declared size is over its pipeline's bound.
func TestAbuseRefusedUploadsAreNotRead(t *testing.T) {
	ms, err := aimodels.Parse("audio-to-text:openai/whisper-large-v3:true,text-to-image:ByteDance/SDXL-Lightning:true")
	if err != nil {
		t.Fatal(err)
	}
	cr, err := cpurunner.New(ms, cpurunner.Config{Latency: runner.Latency{Mean: 3 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cr.Close)
	g := &ledger{refuse: &Refusal{Status: http.StatusPaymentRequired, Message: "missing payment: Livepeer-Payment header required"}}
	s, err := New(Config{MaxBodyBytes: 100 << 20, MaxResponseBytes: 1 << 20, MaxQueue: 0, QueueTimeout: 0,
		RunnerTimeout: time.Minute, ResultTTL: time.Minute}, cr, g)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	base, read := countingServer(t, s.Handler())
	ct := "multipart/form-data; boundary=b"
	prefix := []byte("--b\r\nContent-Disposition: form-data; name=\"audio\"; filename=\"a.wav\"\r\n\r\n")

	code, msg := rawPost(t, base, "/audio-to-text", uploadSize, prefix, "Content-Type", ct)
	if code != http.StatusPaymentRequired || !strings.Contains(msg, "missing payment") {
		t.Errorf("unpaid upload: %d %q, want the gate's 402", code, msg)
	}
	if n := read.Swap(0); n > 4<<20 {
		t.Errorf("unpaid upload: the orchestrator read %d bytes of a %d-byte body before refusing it", n, uploadSize)
	}

	// Paid, but the one runner is busy and nothing may queue: 503 unread.
	g.mu.Lock()
	g.refuse = nil
	g.mu.Unlock()
	busy := make(chan struct{})
	bct, bbody := formBody(map[string]string{"model_id": "openai/whisper-large-v3"}, map[string][]byte{"audio": append(wavHeader(64000), make([]byte, 64000)...)})
	go func() {
		defer close(busy)
		if resp, err := http.Post(base+"/audio-to-text", bct, bytes.NewReader(bbody)); err == nil {
			resp.Body.Close()
		}
	}()
	waitUntil(t, 5*time.Second, "the runner busy", func() bool { return cr.States()[0].InUse == 1 || cr.States()[1].InUse == 1 })
	read.Store(0)
	code, msg = rawPost(t, base, "/audio-to-text", uploadSize, prefix, "Content-Type", ct)
	if code != http.StatusServiceUnavailable || !strings.Contains(msg, "insufficient capacity") {
		t.Errorf("upload with no capacity: %d %q, want 503 insufficient capacity", code, msg)
	}
	if n := read.Swap(0); n > 4<<20 {
		t.Errorf("upload with no capacity: the orchestrator read %d bytes before refusing it", n)
	}
	<-busy

	// text-to-image bodies are JSON text: 1 MiB at most, refused by their
	// declared size.
	code, msg = rawPost(t, base, "/text-to-image", 50<<20, []byte(`{"prompt":"`), "Content-Type", "application/json")
	if code != http.StatusRequestEntityTooLarge || !strings.Contains(msg, "text-to-image") {
		t.Errorf("50 MB text-to-image body: %d %q, want 413 naming the pipeline's bound", code, msg)
	}
	if n := read.Swap(0); n > 4<<20 {
		t.Errorf("50 MB text-to-image body: the orchestrator read %d bytes before refusing it", n)
	}
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s", d, what)
		}
	}
}

// A body trickled a byte at a time is cut at BodyReadTimeout: 408 and the
// connection closed (it stayed open as long as the client kept sending).
func TestAbuseTrickledBodyIsCut(t *testing.T) {
	r := newRig(t, t2iModel, runner.Latency{}, func(c *Config) { c.BodyReadTimeout = time.Second })
	c, err := net.Dial("tcp", strings.TrimPrefix(r.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /text-to-image HTTP/1.1\r\nHost: o\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
	start := time.Now()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
				if _, err := c.Write([]byte("{")); err != nil {
					return
				}
			}
		}
	}()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("trickled body still open after %s: %v", took.Round(time.Millisecond), err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout || took > 3*time.Second {
		t.Errorf("trickled body: %d after %s, want 408 within about 1 s", resp.StatusCode, took.Round(time.Millisecond))
	}
	if n := len(r.gate.checks); n > 1 || r.gate.total() != 0 {
		t.Errorf("a body that never arrived reached the gate after decoding (%d checks) or was charged %d", n, r.gate.total())
	}
}

// Bodies in flight share one byte budget: while a 1 MiB body holds it, the
// next gets 503 insufficient capacity with Retry-After instead of being read.
func TestAbuseBodyBytesInFlightAreBounded(t *testing.T) {
	r := newRig(t, "upscale:stabilityai/stable-diffusion-x4-upscaler:true", runner.Latency{}, func(c *Config) {
		c.MaxBodyBytes, c.MaxBodyBytesInFlight, c.QueueTimeout = 1<<20, 1<<20, 300*time.Millisecond
	})
	c, err := net.Dial("tcp", strings.TrimPrefix(r.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /upscale HTTP/1.1\r\nHost: o\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: %d\r\n\r\n--b\r\n", 1<<20)
	waitUntil(t, 5*time.Second, "the first body holds the budget", func() bool { return r.srv.budget.inUse() == 1<<20 })
	ct, body := formBody(map[string]string{"prompt": "x", "model_id": "stabilityai/stable-diffusion-x4-upscaler"}, map[string][]byte{"image": pngOf(8, 8)})
	resp, out := post(t, r.url+"/upscale", ct, body)
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(out), "insufficient capacity") || resp.Header.Get("Retry-After") == "" {
		t.Errorf("second body while the budget is full: %d %q Retry-After %q, want 503 insufficient capacity with Retry-After",
			resp.StatusCode, out, resp.Header.Get("Retry-After"))
	}
	c.Close()
	waitUntil(t, 5*time.Second, "the budget released", func() bool { return r.srv.budget.inUse() == 0 })
	if resp, out := post(t, r.url+"/upscale", ct, body); resp.StatusCode != http.StatusOK {
		t.Errorf("after the first body went away: %d %s", resp.StatusCode, out)
	}
}

// An upload larger than the head kept in memory is billed by its full
// length: a 3 MiB WAV of 16 kHz mono is 98.3 s, billed as go-livepeer
// bills audio, whole seconds × 1000 (server/ai_process.go:986): 98000 units.
func TestLargeUploadBilledByItsLength(t *testing.T) {
	r := newRig(t, "audio-to-text:openai/whisper-large-v3:true", runner.Latency{}, nil)
	pcm := 3 << 20
	ct, body := formBody(map[string]string{"model_id": "openai/whisper-large-v3"}, map[string][]byte{"audio": append(wavHeader(pcm), make([]byte, pcm)...)})
	resp, out := post(t, r.url+"/audio-to-text", ct, body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("3 MiB WAV: %d %s", resp.StatusCode, out)
	}
	if want := int64(pcm/32000) * 1000; r.gate.total() != want {
		t.Errorf("3 MiB WAV charged %d units, want %d", r.gate.total(), want)
	}
}

// Result media are held under one byte budget: past MaxResultBytes the
// oldest requests' media are evicted (404 after), however many results
// arrive within the TTL (they were all kept for 10 min, without a cap).
func TestAbuseResultMediaUnderByteBudget(t *testing.T) {
	r := newRig(t, t2iModel, runner.Latency{}, func(c *Config) { c.MaxResultBytes = 16 << 10 })
	var urls []string
	var one int
	for i := 0; i < 40; i++ {
		resp, out := post(t, r.url+"/text-to-image", "application/json", t2iBody(128, 128), "Authorization", aiWorkerProtocol)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("job %d: %d %s", i, resp.StatusCode, out)
		}
		var res struct{ Images []struct{ URL string } }
		if err := json.Unmarshal(out, &res); err != nil || len(res.Images) != 1 {
			t.Fatalf("job %d: %s", i, out)
		}
		urls = append(urls, res.Images[0].URL)
		if one == 0 {
			code, media := rawGet(t, r.url, strings.TrimPrefix(res.Images[0].URL, r.url))
			if code != http.StatusOK {
				t.Fatalf("fresh result: %d", code)
			}
			one = len(media)
		}
	}
	if 40*one <= 16<<10 {
		t.Fatalf("40 results of %d bytes fit the budget; make them larger", one)
	}
	if code, _ := rawGet(t, r.url, strings.TrimPrefix(urls[0], r.url)); code != http.StatusNotFound {
		t.Errorf("oldest result: %d, want 404 (evicted)", code)
	}
	if code, _ := rawGet(t, r.url, strings.TrimPrefix(urls[39], r.url)); code != http.StatusOK {
		t.Errorf("newest result: %d, want 200", code)
	}
	resp, err := http.Get(r.op + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`(?m)^orchestrator_result_media_bytes (\S+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no orchestrator_result_media_bytes in /metrics")
	}
	if held, _ := strconv.ParseFloat(string(m[1]), 64); held > 16<<10 || held < float64(one) {
		t.Errorf("result media held: %v bytes, want between one result (%d) and the budget (%d)", held, one, 16<<10)
	}
	if !regexp.MustCompile(`(?m)^orchestrator_result_media_evicted_total [1-9]`).Match(b) {
		t.Errorf("no evictions counted")
	}

	// A result larger than the whole budget is a clear 500, never stored.
	small := newRig(t, t2iModel, runner.Latency{}, func(c *Config) { c.MaxResultBytes = 1 << 10 })
	resp2, out := post(t, small.url+"/text-to-image", "application/json", t2iBody(256, 256), "Authorization", aiWorkerProtocol)
	if resp2.StatusCode != http.StatusInternalServerError || !strings.Contains(string(out), "-max-result-bytes") {
		t.Errorf("result over the whole budget: %d %s", resp2.StatusCode, out)
	}
	if small.gate.total() != 0 {
		t.Errorf("a result that was never delivered was charged %d", small.gate.total())
	}
}
