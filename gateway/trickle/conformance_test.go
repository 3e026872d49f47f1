package trickle

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// capturedExchange is one entry of exchanges_captured.json: go-livepeer's own
// trickle server and clients recorded on loopback (conformance README, section 3).
type capturedExchange struct {
	N               int               `json:"n"`
	Scenario        string            `json:"scenario"`
	Method          string            `json:"method"`
	Path            string            `json:"path"`
	RequestHeaders  map[string]string `json:"request_headers"`
	RequestBodyLen  int               `json:"request_body_len"`
	Status          int               `json:"status"`
	ResponseHeaders map[string]string `json:"response_headers"`
	ResponseBodyLen int               `json:"response_body_len"`
	ResponseBody    *string           `json:"response_body"`
}

const liveVectors = "../../conformance/testdata/go-livepeer-live/trickle"

func loadExchanges(t *testing.T) []capturedExchange {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(liveVectors, "exchanges_captured.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ex []capturedExchange
	if err := json.Unmarshal(b, &ex); err != nil {
		t.Fatal(err)
	}
	if len(ex) != 50 {
		t.Fatalf("captured exchanges: %d, want 50", len(ex))
	}
	return ex
}

// waitQuiet waits until the server has seen arrivals requests and every
// request inside it is blocked on a segment: the state can then only move by
// the test's next action.
func waitQuiet(t *testing.T, s *Server, arrivals int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if s.arrivals.Load() >= arrivals && s.inflight.Load() == s.blocked.Load() {
			return
		}
		time.Sleep(200 * time.Microsecond)
	}
	t.Fatalf("server not quiet: arrivals %d (want %d), inflight %d, blocked %d",
		s.arrivals.Load(), arrivals, s.inflight.Load(), s.blocked.Load())
}

type replayed struct {
	status int
	header http.Header
	body   []byte
	err    error
}

type inFlight struct {
	ex   capturedExchange
	pipe *io.PipeWriter // publisher POSTs: the body, written when the publisher would
	done chan replayed
	sent bool
}

// TestReplayCapturedExchanges replays go-livepeer's captured trickle session
// (50 requests over channels f0e1d2c3, -out, -control, -events, aa11bb22)
// against our server in the order the requests arrived, and compares status,
// Lp-Trickle-* headers, Connection, Content-Type and bodies.
//
// Timing is replayed the way go-livepeer's clients produce it: a publisher
// preconnects seq k+1 before it writes seq k (trickle_publisher.go:171-194),
// so the body of a publisher POST k is written once POST k+1 of the same
// channel has arrived; POSTs with a Content-Length (the raw variants of S6
// and the unknown-channel POST) carry their body at once; POSTs the capture
// shows with no body are preconnects released by a close. The orchestrator's
// closeSession (server/ai_http.go:1117-1128) closes the four mid channels
// after n=43 arrived (n=43 is released by it, n=44 already gets 404).
func TestReplayCapturedExchanges(t *testing.T) {
	exchanges := loadExchanges(t)
	srv := NewServer(ServerConfig{BasePath: "/ai/trickle/"})
	defer srv.Stop()
	const mid = "f0e1d2c3"
	for name, mime := range map[string]string{mid: "video/MP2T", mid + "-out": "video/MP2T",
		mid + "-control": "application/json", mid + "-events": "application/json", "aa11bb22": "video/MP2T"} {
		if err := srv.CreateChannel(name, mime); err != nil {
			t.Fatal(err)
		}
	}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	client := &http.Client{Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 64}}

	var all []*inFlight
	byChannelSeq := map[string]*inFlight{} // publisher POSTs by "channel/seq"
	arrived := map[string]bool{}
	start := func(f *inFlight) {
		ex := f.ex
		var body io.Reader
		cl := ex.RequestHeaders["Content-Length"]
		switch {
		case cl != "":
			n, _ := strconv.Atoi(cl)
			body = bytes.NewReader(bytes.Repeat([]byte{0x47}, n))
		case ex.Method == http.MethodPost:
			pr, pw := io.Pipe()
			f.pipe = pw
			body = pr
		}
		req, err := http.NewRequest(ex.Method, ts.URL+ex.Path, body)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range ex.RequestHeaders {
			if k != "Content-Length" {
				req.Header.Set(k, v)
			}
		}
		go func() {
			resp, err := client.Do(req)
			if err != nil {
				f.done <- replayed{err: err}
				return
			}
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			h := resp.Header.Clone()
			if resp.Close {
				h.Set("Connection", "close")
			}
			f.done <- replayed{status: resp.StatusCode, header: h, body: b}
		}()
	}
	// flush writes the bodies of publisher POSTs whose next seq has arrived.
	flush := func() {
		for changed := true; changed; {
			changed = false
			for key, f := range byChannelSeq {
				if f.sent || f.ex.RequestBodyLen == 0 {
					continue
				}
				channel, seqText, _ := strings.Cut(key, "/")
				seq, _ := strconv.Atoi(seqText)
				if !arrived[fmt.Sprintf("%s/%d", channel, seq+1)] {
					continue
				}
				f.sent = true
				changed = true
				go func(pw *io.PipeWriter, n int) {
					_, _ = pw.Write(bytes.Repeat([]byte{0x47}, n))
					_ = pw.Close()
				}(f.pipe, f.ex.RequestBodyLen)
				res := <-f.done
				f.done <- res
				waitQuiet(t, srv, srv.arrivals.Load())
			}
		}
	}
	for _, ex := range exchanges {
		f := &inFlight{ex: ex, done: make(chan replayed, 1)}
		all = append(all, f)
		start(f)
		if ex.RequestHeaders["Content-Length"] != "" {
			// A raw POST with its whole body: it counts as blocked until the
			// server reads its first byte, so wait for its answer (the capture
			// shows these sequential: n=37 answered before n=38 arrived).
			res := <-f.done
			f.done <- res
		}
		waitQuiet(t, srv, int64(ex.N))
		if ex.Method == http.MethodPost && ex.RequestHeaders["Content-Length"] == "" {
			key := strings.TrimPrefix(ex.Path, "/ai/trickle/")
			arrived[key] = true
			byChannelSeq[key] = f
		}
		flush()
		if ex.N == 43 {
			for _, name := range []string{mid, mid + "-out", mid + "-control", mid + "-events"} {
				srv.CloseChannel(name)
			}
			waitQuiet(t, srv, int64(ex.N))
		}
	}
	for _, f := range all {
		if f.pipe != nil && !f.sent {
			_ = f.pipe.Close()
		}
	}
	for _, f := range all {
		var got replayed
		select {
		case got = <-f.done:
		case <-time.After(10 * time.Second):
			t.Fatalf("n=%d %s %s: no answer", f.ex.N, f.ex.Method, f.ex.Path)
		}
		compareExchange(t, f.ex, got)
	}
}

func compareExchange(t *testing.T, ex capturedExchange, got replayed) {
	t.Helper()
	where := fmt.Sprintf("n=%d %s %s %s", ex.N, ex.Scenario, ex.Method, ex.Path)
	if got.err != nil {
		t.Errorf("%s: %v", where, got.err)
		return
	}
	if got.status != ex.Status {
		t.Errorf("%s: status %d, go-livepeer %d", where, got.status, ex.Status)
	}
	// A GET released by the channel close reads nextWrite while the released
	// preconnected POST of the same channel moves it: go-livepeer's capture
	// shows both orders (n=28 Latest 3 after the bump, n=32 Latest 1 before
	// it), so Latest of those answers is not compared.
	releasedByClose := ex.Method == http.MethodGet && ex.ResponseHeaders[HeaderClosed] != "" && ex.ResponseBodyLen == 0
	for _, h := range []string{HeaderSeq, HeaderLatest, HeaderClosed, "Connection", "Content-Type"} {
		if h == HeaderLatest && releasedByClose {
			continue
		}
		want, captured := ex.ResponseHeaders[h]
		if h == "Content-Type" && !captured {
			continue // the recorder saw only headers set before WriteHeader
		}
		if g := got.header.Get(h); g != want {
			t.Errorf("%s: %s %q, go-livepeer %q", where, h, g, want)
		}
	}
	if len(got.body) != ex.ResponseBodyLen {
		t.Errorf("%s: body %d bytes, go-livepeer %d", where, len(got.body), ex.ResponseBodyLen)
	}
	// Segment payloads are our own bytes; protocol bodies (470, 404, next,
	// 400) must be go-livepeer's text.
	mime := ex.ResponseHeaders["Content-Type"]
	if ex.ResponseBody != nil && (mime == "" || strings.HasPrefix(mime, "text/plain")) {
		if string(got.body) != *ex.ResponseBody {
			t.Errorf("%s: body %q, go-livepeer %q", where, got.body, *ex.ResponseBody)
		}
	}
}

// TestHeaderExamples checks the curated examples agree with the capture the
// replay test compares against, so the two files cannot drift apart unseen.
func TestHeaderExamples(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(liveVectors, "header_examples.json"))
	if err != nil {
		t.Fatal(err)
	}
	var examples map[string]json.RawMessage
	if err := json.Unmarshal(b, &examples); err != nil {
		t.Fatal(err)
	}
	captured := map[string][]capturedExchange{}
	for _, ex := range loadExchanges(t) {
		captured[ex.Method+" "+ex.Path] = append(captured[ex.Method+" "+ex.Path], ex)
	}
	checked := 0
	for name, raw := range examples {
		if strings.HasPrefix(name, "_") {
			continue
		}
		var ex capturedExchange
		if err := json.Unmarshal(raw, &ex); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		found := false
		for _, c := range captured[ex.Method+" "+ex.Path] {
			if c.Status == ex.Status && fmt.Sprint(c.ResponseHeaders) == fmt.Sprint(ex.ResponseHeaders) {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: %s %s %d %v is in no captured exchange", name, ex.Method, ex.Path, ex.Status, ex.ResponseHeaders)
		}
		checked++
	}
	if checked < 20 {
		t.Fatalf("checked %d examples, want at least 20", checked)
	}
}
