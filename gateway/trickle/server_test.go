package trickle

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func newTestServer(t *testing.T, cfg ServerConfig, channels ...string) (*Server, string) {
	t.Helper()
	if cfg.BasePath == "" {
		cfg.BasePath = "/ai/trickle/"
	}
	srv := NewServer(cfg)
	for _, c := range channels {
		if err := srv.CreateChannel(c, "video/MP2T"); err != nil {
			t.Fatal(err)
		}
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(func() { srv.Stop(); ts.Close() })
	return srv, ts.URL + cfg.BasePath
}

// waitHeld waits until n requests are held on channel name.
func waitHeld(t *testing.T, s *Server, name string, n int) {
	t.Helper()
	c, ok := s.channel(name)
	if !ok {
		t.Fatalf("no channel %s", name)
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		c.mu.Lock()
		held := c.held
		c.mu.Unlock()
		if held >= n {
			return
		}
	}
	t.Fatalf("channel %s: fewer than %d requests held", name, n)
}

func do(t *testing.T, method, url string, body []byte, hdr ...string) (*http.Response, string) {
	t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	// Errors are reported with t.Error: do also runs in goroutines.
	req, err := http.NewRequest(method, url, r)
	if err == nil {
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		var resp *http.Response
		if resp, err = http.DefaultClient.Do(req); err == nil {
			b, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			return resp, string(b)
		}
	}
	t.Errorf("%s %s: %v", method, url, err)
	return &http.Response{Header: http.Header{}}, ""
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

func readAll(t *testing.T, seg *Segment) string {
	t.Helper()
	b, err := io.ReadAll(seg.Body)
	_ = seg.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A subscriber from -1 waits at the live edge and gets every segment in
// order; the ring keeps 5, so an evicted seq is 470 with Latest, and the
// subscriber resumes from Latest (trickle_server.go:92,545-563,601-613).
func TestLiveEdgeRingAnd470(t *testing.T) {
	srv, base := newTestServer(t, ServerConfig{}, "ch")
	pub := NewPublisher(base+"ch", nil)
	sub := NewSubscriber(base+"ch", nil, -1)
	defer sub.Close()

	got := make(chan string, 1)
	go func() {
		seg, err := sub.Read(ctx(t))
		if err != nil {
			got <- err.Error()
			return
		}
		got <- fmt.Sprintf("%d:%s", seg.Seq, readAll(t, seg))
	}()
	// Each step waits for the requests it relies on to be held by the
	// server, not a fixed time (20 ms lost the race in 41 of 300 runs at
	// load 26): the publisher's preconnect of seq 0 and the GET at the live
	// edge, then the preconnects of seq 1 from both sides.
	write := func(i int) {
		t.Helper()
		seq, err := pub.Write(ctx(t), strings.NewReader(fmt.Sprintf("seg%d", i)))
		if err != nil || seq != i {
			t.Fatalf("write %d: seq %d, %v", i, seq, err)
		}
	}
	waitHeld(t, srv, "ch", 2)
	write(0)
	if g := <-got; g != "0:seg0" {
		t.Fatalf("live-edge read: %q, want 0:seg0", g)
	}
	waitHeld(t, srv, "ch", 2)
	for i := 1; i < 8; i++ {
		write(i)
	}
	// seqs 0..2 fell out of the ring of 5 (and the publisher's preconnect of
	// seq 8 takes slot 3 = 8 % 5 as soon as it arrives).
	resp, body := do(t, http.MethodGet, base+"ch/1", nil)
	if resp.StatusCode != 470 || body != "Entry not found" || resp.Header.Get(HeaderLatest) != "8" || resp.Header.Get(HeaderSeq) != "1" {
		t.Fatalf("evicted seq: %d %q latest %q seq %q", resp.StatusCode, body, resp.Header.Get(HeaderLatest), resp.Header.Get(HeaderSeq))
	}
	resp, body = do(t, http.MethodGet, base+"ch/4", nil)
	if resp.StatusCode != 200 || body != "seg4" || resp.Header.Get(HeaderLatest) != "8" {
		t.Fatalf("held seq 4: %d %q latest %q", resp.StatusCode, body, resp.Header.Get(HeaderLatest))
	}
	resp, body = do(t, http.MethodGet, base+"ch/next", nil)
	if body != "8" || resp.Header.Get(HeaderLatest) != "8" {
		t.Fatalf("next: %q %q", body, resp.Header.Get(HeaderLatest))
	}
	// The subscriber preconnected seq 1 while it was the live edge, so it
	// holds it; asked again for seq 1 now, it gets 470 with Latest.
	if seg, err := sub.Read(ctx(t)); err != nil || seg.Seq != 1 || readAll(t, seg) != "seg1" {
		t.Fatalf("preconnected read: %v %+v", err, seg)
	}
	sub.SetSeq(1)
	_, err := sub.Read(ctx(t))
	var gone *SequenceNonexistentError
	if !errors.As(err, &gone) || gone.Latest != 8 {
		t.Fatalf("subscriber behind the ring: %v, want SequenceNonexistentError{Latest: 8}", err)
	}
	sub.SetSeq(-2) // the last written segment
	seg, err := sub.Read(ctx(t))
	if err != nil || seg.Seq != 7 || readAll(t, seg) != "seg7" {
		t.Fatalf("read -2: %v %+v", err, seg)
	}
}

// A preconnected GET is released by data, by a DELETE of its seq (empty 200)
// and by a channel close (Lp-Trickle-Closed); later requests get 404
// (trickle_server.go:265-277,654-666).
func TestPreconnectReleases(t *testing.T) {
	srv, base := newTestServer(t, ServerConfig{}, "ch")
	type answer struct {
		resp *http.Response
		body string
	}
	wait := func(url string) chan answer {
		ch := make(chan answer, 1)
		target := srv.arrivals.Load() + 1
		go func() {
			resp, body := do(t, http.MethodGet, url, nil)
			ch <- answer{resp, body}
		}()
		waitQuiet(t, srv, target)
		return ch
	}
	byData := wait(base + "ch/0")
	if resp, _ := do(t, http.MethodPost, base+"ch/0", []byte("abc")); resp.Header.Get(HeaderSeq) != "0" {
		t.Fatalf("POST 0: %v", resp.Header)
	}
	if a := <-byData; a.body != "abc" || a.resp.Header.Get(HeaderSeq) != "0" || a.resp.Header.Get(HeaderLatest) != "" {
		t.Fatalf("released by data: %q %v", a.body, a.resp.Header)
	}
	byDelete := wait(base + "ch/1")
	if resp, _ := do(t, http.MethodDelete, base+"ch/1", nil); resp.StatusCode != 200 {
		t.Fatalf("DELETE seq: %d", resp.StatusCode)
	}
	if a := <-byDelete; a.resp.StatusCode != 200 || a.body != "" || a.resp.Header.Get(HeaderClosed) != "" || a.resp.Header.Get(HeaderSeq) != "1" {
		t.Fatalf("released by DELETE seq: %d %q %v", a.resp.StatusCode, a.body, a.resp.Header)
	}
	do(t, http.MethodPost, base+"ch/1", []byte("d"))
	byClose := wait(base + "ch/-1")
	srv.CloseChannel("ch")
	if a := <-byClose; a.resp.StatusCode != 200 || a.body != "" || a.resp.Header.Get(HeaderClosed) != "terminated" {
		t.Fatalf("released by close: %d %q %v", a.resp.StatusCode, a.body, a.resp.Header)
	}
	if resp, body := do(t, http.MethodGet, base+"ch/0", nil); resp.StatusCode != 404 || body != "Stream not found\n" {
		t.Fatalf("GET after close: %d %q", resp.StatusCode, body)
	}
}

// POST to an unknown channel: 404 with Connection: close (no HTTP create,
// trickle_server.go:354-360); POST /{channel} is no create either.
func TestPostUnknownChannel(t *testing.T) {
	_, base := newTestServer(t, ServerConfig{})
	resp, body := do(t, http.MethodPost, base+"nosuch/0", []byte("x"))
	if resp.StatusCode != 404 || body != "Stream not found\n" || !resp.Close {
		t.Fatalf("POST unknown: %d %q close=%v", resp.StatusCode, body, resp.Close)
	}
	resp, _ = do(t, http.MethodPost, base+"nosuch", nil, "Expect-Content", "video/MP2T")
	if resp.StatusCode != 404 {
		t.Fatalf("HTTP create: %d, want 404 (autocreate off)", resp.StatusCode)
	}
	pub := NewPublisher(base+"nosuch", nil)
	if _, err := pub.Write(ctx(t), strings.NewReader("x")); !errors.Is(err, ErrStreamNotFound) {
		t.Fatalf("publisher on unknown channel: %v", err)
	}
	sub := NewSubscriber(base+"nosuch", nil, -1)
	defer sub.Close()
	if _, err := sub.Read(ctx(t)); !errors.Is(err, ErrStreamNotFound) {
		t.Fatalf("subscriber on unknown channel: %v", err)
	}
}

// The publisher's Close is DELETE of the channel: a waiting subscriber gets
// EOS, the channel is gone, and a second DELETE is 400 Invalid stream
// (trickle_publisher.go:143-169, trickle_server.go:293-305).
func TestPublisherCloseEndsStream(t *testing.T) {
	srv, base := newTestServer(t, ServerConfig{}, "ch")
	pub := NewPublisher(base+"ch", nil)
	sub := NewSubscriber(base+"ch", nil, 0)
	defer sub.Close()
	if _, err := pub.Write(ctx(t), strings.NewReader("one")); err != nil {
		t.Fatal(err)
	}
	seg, err := sub.Read(ctx(t))
	if err != nil || readAll(t, seg) != "one" {
		t.Fatalf("read: %v", err)
	}
	eos := make(chan error, 1)
	go func() { _, err := sub.Read(ctx(t)); eos <- err }()
	waitHeld(t, srv, "ch", 2) // the publisher's preconnect and the subscriber's GET
	if err := pub.Close(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if err := <-eos; !errors.Is(err, ErrEOS) {
		t.Fatalf("subscriber after publisher Close: %v, want ErrEOS", err)
	}
	if resp, body := do(t, http.MethodDelete, base+"ch", nil); resp.StatusCode != 400 || body != "Invalid stream\n" {
		t.Fatalf("second DELETE: %d %q", resp.StatusCode, body)
	}
	if _, ok := srv.LastWrite("ch"); ok {
		t.Fatal("channel still known after DELETE")
	}
}

// A channel with no new segment for IdleTimeout is swept; one that keeps
// receiving is not (trickle_server.go:232-253).
func TestIdleSweep(t *testing.T) {
	srv, base := newTestServer(t, ServerConfig{IdleTimeout: 400 * time.Millisecond, SweepInterval: 10 * time.Millisecond}, "idle", "busy")
	before, _ := srv.LastWrite("busy")
	pub := NewPublisher(base+"busy", nil)
	for i := 0; i < 30; i++ {
		if _, err := pub.Write(ctx(t), strings.NewReader("x")); err != nil {
			t.Fatal(err)
		}
		time.Sleep(25 * time.Millisecond)
	}
	if _, ok := srv.LastWrite("idle"); ok {
		t.Fatal("idle channel not swept after 750 ms")
	}
	after, ok := srv.LastWrite("busy")
	if !ok || !after.After(before) {
		t.Fatalf("busy channel swept or LastWrite not moved: %v %v", ok, after)
	}
	if resp, _ := do(t, http.MethodGet, base+"idle/0", nil); resp.StatusCode != 404 {
		t.Fatalf("swept channel: %d, want 404", resp.StatusCode)
	}
}

// Lp-Trickle-Reset closes older segments, releasing their readers, but a
// preconnected newer seq stays (trickle_server.go:433-444).
func TestResetReleasesOlderReaders(t *testing.T) {
	srv, base := newTestServer(t, ServerConfig{}, "ch")
	do(t, http.MethodPost, base+"ch/0", []byte("a"))
	waiting := make(chan *http.Response, 1)
	target := srv.arrivals.Load() + 1
	go func() { resp, _ := do(t, http.MethodGet, base+"ch/1", nil); waiting <- resp }()
	waitQuiet(t, srv, target)
	resp, _ := do(t, http.MethodPost, base+"ch/20", []byte("b"), HeaderReset, "1")
	if resp.StatusCode != 200 || resp.Header.Get(HeaderSeq) != "20" {
		t.Fatalf("reset POST: %d %v", resp.StatusCode, resp.Header)
	}
	select {
	case r := <-waiting:
		// Latest is 1 or 21: the reset closes seq 1 before the POST's first
		// byte moves nextWrite (trickle_server.go:433-444 then :463-468).
		if r.StatusCode != 200 || r.Header.Get(HeaderSeq) != "1" || r.Header.Get(HeaderClosed) != "" || r.ContentLength != 0 {
			t.Fatalf("released reader: %d %v", r.StatusCode, r.Header)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("reader of seq 1 not released by Lp-Trickle-Reset")
	}
}

// The bounds are the server's: a long segment is 413, a channel past
// MaxChannels is refused, a request past MaxWaiting held on one channel is
// 429, and sequence numbers go-livepeer would panic on are 400.
func TestBounds(t *testing.T) {
	srv, base := newTestServer(t, ServerConfig{MaxSegmentBytes: 1000, MaxChannels: 2, MaxWaiting: 3}, "ch", "ch2")
	resp, body := do(t, http.MethodPost, base+"ch/0", bytes.Repeat([]byte("x"), 5000))
	if resp.StatusCode != 413 || !strings.Contains(body, "1000 bytes") {
		t.Fatalf("long segment: %d %q", resp.StatusCode, body)
	}
	if err := srv.CreateChannel("ch3", "video/MP2T"); !errors.Is(err, ErrTooManyChannels) {
		t.Fatalf("third channel: %v", err)
	}
	if err := srv.CreateChannel("ch", "video/MP2T"); !errors.Is(err, ErrChannelExists) {
		t.Fatalf("duplicate channel: %v", err)
	}
	target := srv.arrivals.Load() + 3
	for i := 0; i < 3; i++ {
		go do(t, http.MethodGet, base+"ch/1", nil)
	}
	waitQuiet(t, srv, target)
	resp, body = do(t, http.MethodGet, base+"ch/1", nil)
	if resp.StatusCode != 429 || !strings.Contains(body, "limit 3") {
		t.Fatalf("fourth waiting GET: %d %q", resp.StatusCode, body)
	}
	// Another channel is not affected by this one's waiting requests.
	if resp, _ := do(t, http.MethodPost, base+"ch2/0", []byte("ok")); resp.StatusCode != 200 {
		t.Fatalf("other channel: %d", resp.StatusCode)
	}
	for _, bad := range []string{"ch/-3", "ch/abc", "ch/99999999999999999999", "ch/1/2"} {
		resp, body := do(t, http.MethodGet, base+bad, nil)
		if resp.StatusCode != 400 && resp.StatusCode != 404 {
			t.Errorf("GET %s: %d %q, want a 4xx", bad, resp.StatusCode, body)
		}
	}
	if resp, _ := do(t, http.MethodPost, base+"ch/-2", []byte("x")); resp.StatusCode != 400 {
		t.Errorf("POST -2: %d, want 400", resp.StatusCode)
	}
	if resp, _ := do(t, http.MethodDelete, base+"ch/-1", nil); resp.StatusCode != 400 {
		t.Errorf("DELETE -1: %d, want 400", resp.StatusCode)
	}
	if resp, _ := do(t, http.MethodPut, base+"ch/0", []byte("x")); resp.StatusCode != 405 {
		t.Errorf("PUT: %d, want 405", resp.StatusCode)
	}
	srv.Stop()
	waitQuiet(t, srv, srv.arrivals.Load())
}

// Publisher and subscriber end to end: 30 segments of a few KB, streamed,
// read in order with nothing lost, as gateway and runner use them.
func TestPublisherSubscriberStream(t *testing.T) {
	_, base := newTestServer(t, ServerConfig{}, "ch")
	pub := NewPublisher(base+"ch", nil)
	sub := NewSubscriber(base+"ch", nil, 0)
	defer sub.Close()
	const n = 30
	errc := make(chan error, 1)
	allRead := make(chan struct{})
	go func() {
		for i := 0; i < n; i++ {
			time.Sleep(2 * time.Millisecond)
			if _, err := pub.Write(ctx(t), bytes.NewReader(bytes.Repeat([]byte{byte(i)}, 4096+i))); err != nil {
				errc <- err
				return
			}
		}
		// Close deletes the channel at once (segments not yet read are
		// gone), so the reader finishes first.
		<-allRead
		errc <- pub.Close(ctx(t))
	}()
	for i := 0; ; i++ {
		if i == n {
			close(allRead)
		}
		seg, err := sub.Read(ctx(t))
		if errors.Is(err, ErrEOS) || errors.Is(err, ErrStreamNotFound) {
			if i != n {
				t.Fatalf("stream ended after %d segments, want %d", i, n)
			}
			break
		}
		if err != nil {
			t.Fatalf("read %d: %v", i, err)
		}
		b := readAll(t, seg)
		if seg.Seq != i || len(b) != 4096+i || b[0] != byte(i) || seg.Header.Get("Content-Type") != "video/MP2T" {
			t.Fatalf("segment %d: seq %d, %d bytes", i, seg.Seq, len(b))
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// A preconnected POST with no data yet gets an interim 100 Continue every
// keepalive period, then completes normally when its data comes
// (trickle_server.go:446-482).
func TestPreconnectKeepalive(t *testing.T) {
	old := firstByteKeepalive
	firstByteKeepalive = 30 * time.Millisecond
	defer func() { firstByteKeepalive = old }()
	_, base := newTestServer(t, ServerConfig{}, "ch")
	pr, pw := io.Pipe()
	var interim atomic.Int32
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, _ textproto.MIMEHeader) error {
		if code == http.StatusContinue {
			interim.Add(1)
		}
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodPost, base+"ch/0", pr)
	done := make(chan *http.Response, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
		}
		done <- resp
	}()
	time.Sleep(200 * time.Millisecond)
	_, _ = pw.Write([]byte("late data"))
	_ = pw.Close()
	resp := <-done
	if resp == nil || resp.StatusCode != 200 || resp.Header.Get(HeaderSeq) != "0" {
		t.Fatalf("POST after keepalives: %v", resp)
	}
	if n := interim.Load(); n < 2 {
		t.Errorf("%d interim 100 Continue in 200 ms at a 30 ms keepalive, want several", n)
	}
}

// A preconnect the server released before any data (another writer took
// its seq) is not a silent loss here: Write re-POSTs the seq once. go-livepeer's
// publisher returns no error and drops the segment (conformance README §9).
func TestPublisherRetriesReleasedPreconnect(t *testing.T) {
	srv, base := newTestServer(t, ServerConfig{}, "ch")
	pub := NewPublisher(base+"ch", nil)
	if seq, err := pub.Write(ctx(t), strings.NewReader("zero")); err != nil || seq != 0 {
		t.Fatalf("write 0: %d %v", seq, err)
	}
	waitHeld(t, srv, "ch", 1) // the preconnect of seq 1
	// Another writer takes seq 1 (-1 resolves to the preconnected seq), which
	// releases the preconnect with Connection: close.
	if resp, _ := do(t, http.MethodPost, base+"ch/-1", []byte("intruder")); resp.Header.Get(HeaderSeq) != "1" {
		t.Fatalf("raw POST -1: %v", resp.Header)
	}
	seq, err := pub.Write(ctx(t), strings.NewReader("one"))
	if err != nil || seq != 1 {
		t.Fatalf("write into a released preconnect: seq %d, %v; want 1, nil", seq, err)
	}
	if resp, body := do(t, http.MethodGet, base+"ch/1", nil); body != "one" {
		t.Fatalf("seq 1 holds %q (%d), want the publisher's segment", body, resp.StatusCode)
	}
}
