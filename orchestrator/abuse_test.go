package orchestrator

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

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
