package conformance

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/lpgauge/lpgauge/orchestrator"
	"github.com/lpgauge/lpgauge/orchestrator/cpurunner"
	"github.com/lpgauge/lpgauge/orchestrator/lprpc"
	"github.com/lpgauge/lpgauge/orchestrator/runner"
	"github.com/lpgauge/lpgauge/schemas/proto/lpnet"
)

// The live vectors (testdata/go-livepeer-live/README.md "Vectors"): the
// batch vectors' keys, secrets and chain, price 10 wei/pixel, ticket EV 8e9,
// the orchestrator's mid f0e1d2c3.
const (
	liveDir   = "testdata/go-livepeer-live"
	liveMID   = "f0e1d2c3"
	liveEV    = 8_000_000_000
	livePrice = 10
)

func liveFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(liveDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func liveMsg[M proto.Message](t testing.TB, name string, m M) M {
	t.Helper()
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(liveFile(t, name))))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if err := proto.Unmarshal(b, m); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return m
}

// liveRunner stands for the runner container: ai-runner's /health and
// /version, and the live start call, recorded.
type liveRunner struct {
	mu     sync.Mutex
	status string
	starts [][]byte
	reply  int
	srv    *httptest.Server
}

func newLiveRunner(t testing.TB) *liveRunner {
	lr := &liveRunner{status: "IDLE", reply: http.StatusOK}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		lr.mu.Lock()
		defer lr.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]string{"status": lr.status})
	})
	mux.HandleFunc("GET /version", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"pipeline":"live-video-to-video","model_id":"noop","version":"0.14.1"}`)
	})
	mux.HandleFunc("POST /live-video-to-video", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		lr.mu.Lock()
		defer lr.mu.Unlock()
		lr.starts = append(lr.starts, b)
		if lr.reply != http.StatusOK {
			w.WriteHeader(lr.reply)
			_, _ = io.WriteString(w, `{"detail":{"msg":"pipeline failed to load"}}`)
			return
		}
		lr.status = "OK"
		_, _ = io.WriteString(w, `{}`)
	})
	lr.srv = httptest.NewServer(mux)
	t.Cleanup(lr.srv.Close)
	return lr
}

func (lr *liveRunner) set(status string) {
	lr.mu.Lock()
	lr.status = status
	lr.mu.Unlock()
}

// fakeClock is the debit clock the test moves.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}

type liveOrchestrator struct {
	rpc    *lprpc.Server
	client lpnet.OrchestratorClient
	url    string
	srv    *orchestrator.Server
	runner *liveRunner
	chans  *testChannels
	clock  *fakeClock
	cpu    *cpurunner.Runners
}

// newLiveOrchestrator is the vectors' orchestrator serving live model noop
// at 10 wei/pixel on one runner, its mid fixed to the vectors'.
func newLiveOrchestrator(t testing.TB, ev int64) *liveOrchestrator {
	return newLiveOrchestratorWith(t, ev, nil, 0)
}

// newLiveOrchestratorWith takes the gate (nil: the vectors' on-chain gate)
// and the input idle timeout (0: the default).
func newLiveOrchestratorWith(t testing.TB, ev int64, gate orchestrator.Gate, idle time.Duration) *liveOrchestrator {
	t.Helper()
	lr := newLiveRunner(t)
	js := `[{"pipeline":"live-video-to-video","model_id":"noop","warm":true,"price_per_unit":10,"pixels_per_unit":1,"capacity":1,"url":"` + lr.srv.URL + `"}]`
	models := vecModels(t, js)
	cpu, err := cpurunner.New(models, cpurunner.Config{Latency: runner.Latency{Mean: time.Millisecond}, DefaultCapacity: 1, HealthInterval: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cpu.Close)
	rpc := &lprpc.Server{URI: vecURI, Receiver: vecReceiver(t, ev), States: cpu.States, Models: models, Version: "0.9.1"}
	if gate == nil {
		gate = rpc.Gate()
	}
	clock := &fakeClock{now: time.Unix(vecExpiration, 0).Add(-time.Hour)}
	chans := newTestChannels()
	srv, err := orchestrator.New(orchestrator.Config{
		ServiceURI: vecURI, MaxBodyBytes: 1 << 20, MaxResponseBytes: 64 << 20, MaxQueue: 4, QueueTimeout: time.Second,
		RunnerTimeout: time.Minute, ResultTTL: time.Minute,
		Live: &orchestrator.LiveConfig{
			Channels: chans, NewMID: func() string { return liveMID }, Now: clock.Now,
			Poll: 2 * time.Millisecond, HealthPoll: 10 * time.Millisecond, InputIdle: idle,
		},
	}, cpu, gate)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	c, url := serve(t, rpc, srv.Handler())
	deadline := time.Now().Add(10 * time.Second)
	for cpu.States()[0].Capacity == 0 || cpu.States()[0].RunnerVersion == "" {
		if time.Now().After(deadline) {
			t.Fatal("live runner never became ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return &liveOrchestrator{rpc: rpc, client: c, url: url, srv: srv, runner: lr, chans: chans, clock: clock, cpu: cpu}
}

// liveHTTP is http/start_and_payment_http.json: the gateway's requests.
type liveHTTP struct {
	Start struct {
		Headers map[string]string `json:"headers"`
	} `json:"start_request"`
	Periodic struct {
		Headers map[string]string `json:"headers"`
	} `json:"periodic_payment"`
}

func loadLiveHTTP(t testing.TB) liveHTTP {
	var h liveHTTP
	if err := json.Unmarshal(liveFile(t, "http/start_and_payment_http.json"), &h); err != nil {
		t.Fatal(err)
	}
	return h
}

func (o *liveOrchestrator) post(t testing.TB, path string, headers map[string]string, body []byte) (int, http.Header, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(http.MethodPost, o.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

func (o *liveOrchestrator) balance() *big.Rat { return o.rpc.Receiver.Balance(vecGateway, liveMID) }

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// l00 is payment/L00_live_payment_summary.json.
type l00 struct {
	Initial struct {
		NewCredit string `json:"new_credit_wei"`
		After     string `json:"orch_balance_after_credit"`
	} `json:"initial_payment"`
	Periodic struct {
		NewCredit string `json:"new_credit_wei"`
		After     string `json:"orch_balance_after_credit"`
		Units     int64  `json:"units"`
	} `json:"periodic_payment"`
	Steps []struct {
		Step   int    `json:"step"`
		Units  int64  `json:"units_pixels"`
		Fee    string `json:"fee_wei"`
		Before string `json:"balance_before_wei"`
		Result string `json:"result"`
		After  string `json:"balance_after_wei"`
	} `json:"orch_accounting_steps_no_further_payments"`
}

// TestOrchLiveStartPaymentAndDebits replays go-livepeer's live vectors
// against our orchestrator: the start request of http/start_and_payment_http.json
// with the initial payment L03 (3 tickets, 60 s at 1280×720×30) is accepted
// and credits go-livepeer's 24e9 to (sender, mid) (server/ai_http.go:1065-1073);
// the answer is http/start_response_body.json byte for byte; the runner gets
// http/runner_request_body.json byte for byte (URLs swapped, ai_http.go:1138-1157);
// the periodic payment L04 on POST /payment credits 8e9 more and answers
// go-livepeer's PaymentResult L05 (segment_rpc.go:241-273); then, input
// arriving every 5 s with no more payments, each debit leaves the balance
// of L00's schedule (live_payment.go:156-176) until step 24 finds it short
// and closes all four channels.
func TestOrchLiveStartPaymentAndDebits(t *testing.T) {
	o := newLiveOrchestrator(t, liveEV)
	h := loadLiveHTTP(t)
	var sum l00
	if err := json.Unmarshal(liveFile(t, "payment/L00_live_payment_summary.json"), &sum); err != nil {
		t.Fatal(err)
	}
	status, hdr, body := o.post(t, "/live-video-to-video", h.Start.Headers, liveFile(t, "http/start_request_body.json"))
	if status != http.StatusOK {
		t.Fatalf("start: %d %q; go-livepeer accepts the vector's request", status, body)
	}
	if ct := hdr.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, go-livepeer sends application/json", ct)
	}
	if want := bytes.TrimSpace(liveFile(t, "http/start_response_body.json")); !bytes.Equal(body, want) {
		t.Errorf("start response\n got %s\nwant %s", body, want)
	}
	o.runner.mu.Lock()
	starts := o.runner.starts
	o.runner.mu.Unlock()
	if want := bytes.TrimSpace(liveFile(t, "http/runner_request_body.json")); len(starts) != 1 || !bytes.Equal(starts[0], want) {
		t.Errorf("runner start bodies %q\nwant one: %s", starts, want)
	}
	if got, want := o.balance(), ratOf(t, sum.Initial.NewCredit); got.Cmp(want) != 0 {
		t.Errorf("balance after the start payment %s, go-livepeer %s", got.FloatString(6), want.FloatString(6))
	}
	for _, c := range []string{liveMID, liveMID + "-out", liveMID + "-control", liveMID + "-events"} {
		if !o.chans.open(c) {
			t.Errorf("channel %s not open", c)
		}
	}
	if m := o.chans.mime(liveMID + "-events"); m != "application/json" {
		t.Errorf("events channel mime %q", m)
	}

	// The periodic payment, with O's mid in Livepeer-Segment.
	status, _, body = o.post(t, "/payment", h.Periodic.Headers, nil)
	if status != http.StatusOK {
		t.Fatalf("/payment: %d %q", status, body)
	}
	got := decodePaymentResult(t, body)
	// L05 is net.PaymentResult{info}; read its info the same way.
	want := decodePaymentResult(t, mustB64(t, liveFile(t, "payment/L05_payment_result.b64")))
	// L05 was made with the runner idle (1 idle, 0 in use); ours is busy
	// with the stream, which setLiveAICapacity reports as 0 idle, 1 in use
	// (server/rpc.go:659-677). Everything else is go-livepeer's.
	mc := want.GetCapabilities().GetConstraints().GetPerCapability()[35].GetModels()["noop"]
	mc.Capacity, mc.CapacityInUse = 0, 1
	if !proto.Equal(got, want) {
		t.Errorf("PaymentResult.info\n got %s\nwant %s", pj(got), pj(want))
	}
	if got, want := o.balance(), new(big.Rat).Add(ratOf(t, sum.Initial.NewCredit), ratOf(t, sum.Periodic.NewCredit)); got.Cmp(want) != 0 {
		t.Errorf("balance after /payment %s, go-livepeer %s", got.FloatString(6), want.FloatString(6))
	}
	// The same tickets again: their nonces are used, go-livepeer's 400.
	if status, _, body := o.post(t, "/payment", h.Periodic.Headers, nil); status != http.StatusBadRequest || !strings.Contains(string(body), "invalid ticket senderNonce") {
		t.Errorf("replayed /payment: %d %q, want 400 invalid ticket senderNonce", status, body)
	}
	o.metrics(t, `orchestrator_live_sessions_active 1`, `orchestrator_live_payments_total{outcome="accepted"} 2`, `orchestrator_live_payments_total{outcome="refused"} 1`)

	// The debit schedule: one input segment every 5 s.
	for _, st := range sum.Steps {
		before := o.balance()
		o.clock.advance(5 * time.Second)
		o.chans.write(liveMID, o.clock.Now())
		if st.After == "" { // insufficient: the session closes
			waitFor(t, "the session to close on insufficient balance", func() bool { return !o.chans.open(liveMID) })
			for _, c := range []string{liveMID, liveMID + "-out", liveMID + "-control", liveMID + "-events"} {
				if o.chans.open(c) {
					t.Errorf("channel %s still open after insufficient balance", c)
				}
			}
			if got := o.balance(); got.Cmp(before) != 0 {
				t.Errorf("step %d: balance moved to %s on a refused debit", st.Step, got.FloatString(0))
			}
			if !strings.HasPrefix(st.Result, "insufficient balance, mid="+liveMID) {
				t.Fatalf("vector step %d: %q", st.Step, st.Result)
			}
			break
		}
		want, _ := new(big.Rat).SetString(st.After)
		waitFor(t, "the debit of step", func() bool { return o.balance().Cmp(before) != 0 })
		if got := o.balance(); got.FloatString(0) != want.FloatString(0) {
			t.Fatalf("step %d: balance %s, go-livepeer %s", st.Step, got.FloatString(0), want.FloatString(0))
		}
	}
	if n := o.srv.LiveSessions(); n != 0 {
		t.Errorf("%d live sessions after the close", n)
	}
	o.metrics(t, `orchestrator_live_sessions_active 0`, `orchestrator_live_payments_total{outcome="debited"} 23`,
		`orchestrator_live_payments_total{outcome="insufficient"} 1`, `orchestrator_live_sessions_ended_total{reason="insufficient_balance"} 1`)
	// The runner sees the end and reports IDLE: its slot comes back.
	o.runner.set("IDLE")
	waitFor(t, "the runner back in the pool", func() bool { return o.cpu.States()[0].InUse == 0 })
}

func (o *liveOrchestrator) metricsText(t testing.TB) string {
	rec := httptest.NewRecorder()
	o.srv.OperatorHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return rec.Body.String()
}

// metrics checks /metrics on the operator handler holds every line.
func (o *liveOrchestrator) metrics(t testing.TB, lines ...string) {
	t.Helper()
	text := o.metricsText(t)
	for _, l := range lines {
		if !strings.Contains(text, "\n"+l+"\n") {
			t.Errorf("/metrics lacks %q", l)
		}
	}
}

func mustB64(t testing.TB, b []byte) []byte {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// decodePaymentResult reads net.PaymentResult{info = 16}.
func decodePaymentResult(t testing.TB, b []byte) *lpnet.OrchestratorInfo {
	t.Helper()
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 || num != 16 || typ != protowire.BytesType {
		t.Fatalf("PaymentResult: want field 16 bytes, got %d %d (%d bytes)", num, typ, len(b))
	}
	v, m := protowire.ConsumeBytes(b[n:])
	if m < 0 || n+m != len(b) {
		t.Fatalf("PaymentResult: bad length")
	}
	var info lpnet.OrchestratorInfo
	if err := proto.Unmarshal(v, &info); err != nil {
		t.Fatal(err)
	}
	return &info
}

// testChannels records channel lifetimes for the vector test (the trickle
// protocol itself is tested in gateway/trickle).
type testChannels struct {
	mu    sync.Mutex
	chans map[string]*testChannel
}

type testChannel struct {
	mime string
	last time.Time
}

func newTestChannels() *testChannels { return &testChannels{chans: map[string]*testChannel{}} }

func (c *testChannels) CreateChannel(name, mime string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.chans[name] = &testChannel{mime: mime}
	return nil
}

func (c *testChannels) CloseChannel(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.chans, name)
}

func (c *testChannels) LastWrite(name string) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch, ok := c.chans[name]
	if !ok {
		return time.Time{}, false
	}
	return ch.last, true
}

func (c *testChannels) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	http.Error(w, "Stream not found", http.StatusNotFound)
}

func (c *testChannels) write(name string, at time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ch, ok := c.chans[name]; ok {
		ch.last = at
	}
}

func (c *testChannels) open(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, ok := c.chans[name]
	return ok
}

func (c *testChannels) mime(name string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ch, ok := c.chans[name]; ok {
		return ch.mime
	}
	return ""
}

// TestOrchLiveDiscovery: go-livepeer's live discovery request L01 gets
// L02 from our orchestrator while its runner is idle (setLiveAICapacity:
// capacity = idle runners, server/rpc.go:659-677); while the runner serves
// a stream the same request is refused with OrchestratorCapped
// (rpc.go:544-570), unless it sets ignoreCapacityCheck, which shows the
// runner in use; once the runner reports IDLE, L02 again.
func TestOrchLiveDiscovery(t *testing.T) {
	o := newLiveOrchestrator(t, liveEV)
	req := liveMsg(t, "payment/L01_orchestrator_request_live_noop.b64", &lpnet.OrchestratorRequest{})
	want := liveMsg(t, "payment/L02_orchestrator_info_live_noop.b64", &lpnet.OrchestratorInfo{})
	got, err := o.client.GetOrchestrator(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, want) {
		t.Fatalf("GetOrchestrator(L01)\n got %s\nwant %s", pj(got), pj(want))
	}
	h := loadLiveHTTP(t)
	if status, _, body := o.post(t, "/live-video-to-video", h.Start.Headers, liveFile(t, "http/start_request_body.json")); status != http.StatusOK {
		t.Fatalf("start: %d %q", status, body)
	}
	if _, err := o.client.GetOrchestrator(t.Context(), req); err == nil || !strings.Contains(err.Error(), "Invalid orchestrator request: OrchestratorCapped") {
		t.Errorf("busy runner: GetOrchestrator err %v, go-livepeer: OrchestratorCapped", err)
	}
	ign := proto.Clone(req).(*lpnet.OrchestratorRequest)
	ign.IgnoreCapacityCheck = true
	info, err := o.client.GetOrchestrator(t.Context(), ign)
	if err != nil {
		t.Fatalf("ignoreCapacityCheck: %v", err)
	}
	if mc := info.GetCapabilities().GetConstraints().GetPerCapability()[35].GetModels()["noop"]; mc.GetCapacity() != 0 || mc.GetCapacityInUse() != 1 {
		t.Errorf("busy runner advertised %v, want capacity 0, capacityInUse 1", mc)
	}
	// The gateway ends the stream (DELETE of its publish channel); the
	// runner sees EOS and reports IDLE.
	o.chans.CloseChannel(liveMID)
	waitFor(t, "the session to end", func() bool { return o.srv.LiveSessions() == 0 && !o.chans.open(liveMID+"-out") })
	o.runner.set("IDLE")
	waitFor(t, "the runner back in the pool", func() bool { return o.cpu.States()[0].InUse == 0 })
	if got, err = o.client.GetOrchestrator(t.Context(), req); err != nil || !proto.Equal(got, want) {
		t.Errorf("after the stream: %v\n%s", err, pj(got))
	}
}

// TestOrchLiveStartRefusals: each refusal of the start request, with
// go-livepeer's status and text, in go-livepeer's order
// (server/ai_http.go:996-1185): decode before capacity before payment
// before credentials before balance; a refused start makes no channel and
// leaves the runner free; a runner that fails to start gets its channels
// closed and the gateway go-livepeer's 500 text.
func TestOrchLiveStartRefusals(t *testing.T) {
	o := newLiveOrchestrator(t, liveEV)
	h := loadLiveHTTP(t)
	good := string(liveFile(t, "http/start_request_body.json"))
	with := func(k, v string) map[string]string {
		m := map[string]string{}
		for a, b := range h.Start.Headers {
			m[a] = b
		}
		if v == "" {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	for _, c := range []struct {
		name    string
		headers map[string]string
		body    string
		status  int
		text    string
	}{
		{"not JSON, bad payment too: decode first", with("Livepeer-Payment", "%%%"), `{"model_id":`, 400, "unexpected EOF"},
		{"missing model_id: a 400, not go-livepeer's panic", h.Start.Headers, `{"params":null,"publish_url":"","subscribe_url":""}`, 400, `missing model_id: name the live pipeline to run, e.g. "model_id":"noop"`},
		{"model not served, bad payment too: capacity before payment", with("Livepeer-Payment", "%%%"), strings.Replace(good, `"noop"`, `"comfyui"`, 1), 503, "insufficient capacity"},
		{"body past the 64 KiB bound: 413 before decoding", h.Start.Headers, `{"model_id":"noop","params":{"prompt":"` + strings.Repeat("x", 70<<10) + `"}}`, 413, "request body exceeds 65536 bytes, the most this orchestrator accepts for live-video-to-video"},
		{"payment not base64", with("Livepeer-Payment", "%%%"), good, 402, "invalid payment"},
		{"no segment credentials", with("Livepeer-Segment", ""), good, 403, "missing segment credentials"},
		{"segment signed by another sender", with("Livepeer-Segment", h.Periodic.Headers["Livepeer-Segment"][:40]+"AAAA"+h.Periodic.Headers["Livepeer-Segment"][44:]), good, 403, "invalid segment credentials"},
	} {
		status, _, body := o.post(t, "/live-video-to-video", c.headers, []byte(c.body))
		if status != c.status || !strings.Contains(string(body), c.text) || !strings.HasSuffix(string(body), "\n") {
			t.Errorf("%s: %d %q, want %d %q", c.name, status, body, c.status, c.text)
		}
	}
	if o.chans.open(liveMID) || o.srv.LiveSessions() != 0 {
		t.Error("a refused start left a channel or session")
	}
	if n := len(o.runner.starts); n != 0 {
		t.Errorf("the runner was started %d times by refused requests", n)
	}

	// The runner fails to start: 500 with go-livepeer's text, channels closed.
	o.runner.mu.Lock()
	o.runner.reply = http.StatusInternalServerError
	o.runner.mu.Unlock()
	status, _, body := o.post(t, "/live-video-to-video", h.Start.Headers, []byte(good))
	if status != 500 || string(body) != "live-video-to-video container returned 500: pipeline failed to load\n" {
		t.Errorf("runner failure: %d %q", status, body)
	}
	if o.chans.open(liveMID) || o.chans.open(liveMID+"-out") || o.srv.LiveSessions() != 0 {
		t.Error("channels left open after the runner failed")
	}
	waitFor(t, "the runner slot back", func() bool { return o.cpu.States()[0].InUse == 0 })
}

// TestOrchLiveInsufficientStartBalance: with a ticket EV above the 24e9 the
// three tickets are worth, go-livepeer's balance rule refuses the start
// with 400 "Insufficient balance" (ai_http.go:1069-1072) and makes no
// channel.
func TestOrchLiveInsufficientStartBalance(t *testing.T) {
	o := newLiveOrchestrator(t, 30_000_000_000)
	h := loadLiveHTTP(t)
	status, _, body := o.post(t, "/live-video-to-video", h.Start.Headers, liveFile(t, "http/start_request_body.json"))
	if status != http.StatusBadRequest || string(body) != "Insufficient balance\n" {
		t.Errorf("start with 24e9 credit against EV 30e9: %d %q, go-livepeer 400 \"Insufficient balance\"", status, body)
	}
	if o.chans.open(liveMID) || len(o.runner.starts) != 0 || o.cpu.States()[0].InUse != 0 {
		t.Error("a refused start made channels or borrowed the runner")
	}
}

// TestOrchLiveFreeAndIdle: without a price (off chain) a stream runs with
// no payment headers and is never debited, however long its input flows
// (server/ai_http.go:1096-1114); a stream whose input stops for longer than
// the idle timeout is closed, all four channels.
func TestOrchLiveFreeAndIdle(t *testing.T) {
	o := newLiveOrchestratorWith(t, liveEV, orchestrator.OffChain{}, time.Minute)
	status, _, body := o.post(t, "/live-video-to-video", map[string]string{"Content-Type": "application/json"}, liveFile(t, "http/start_request_body_no_params.json"))
	if status != http.StatusOK {
		t.Fatalf("free start: %d %q", status, body)
	}
	o.runner.mu.Lock()
	if len(o.runner.starts) != 1 || !strings.Contains(string(o.runner.starts[0]), `"params":null`) {
		t.Errorf("runner start %q: want params null passed on", o.runner.starts)
	}
	o.runner.mu.Unlock()
	for range 30 { // 30 segments, 5 s apart: 150 s of input
		o.clock.advance(5 * time.Second)
		o.chans.write(liveMID, o.clock.Now())
		time.Sleep(3 * time.Millisecond)
	}
	if !o.chans.open(liveMID) || o.srv.LiveSessions() != 1 {
		t.Fatal("a free stream was closed while its input flowed")
	}
	o.metrics(t, `orchestrator_live_sessions_active 1`)
	if n := strings.Count(o.metricsText(t), `outcome="debited"`); n != 0 {
		t.Error("a free stream was debited")
	}
	o.clock.advance(61 * time.Second)
	waitFor(t, "the idle stream closed", func() bool { return o.srv.LiveSessions() == 0 })
	for _, c := range []string{liveMID, liveMID + "-out", liveMID + "-control", liveMID + "-events"} {
		if o.chans.open(c) {
			t.Errorf("channel %s open after the idle close", c)
		}
	}
	o.metrics(t, `orchestrator_live_sessions_ended_total{reason="input_idle"} 1`)
}
