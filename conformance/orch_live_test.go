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

	"github.com/lpgauge/lpgauge/gateway/trickle"
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
	ts     *trickle.Server
	pub    *trickle.Publisher // the gateway's publisher on the stream's input, made after the start (it preconnects)
	clock  *fakeClock
	cpu    *cpurunner.Runners
}

// newLiveOrchestrator is the vectors' orchestrator serving live model noop
// at 10 wei/pixel on one runner, its mid fixed to the vectors'.
func newLiveOrchestrator(t testing.TB, ev int64) *liveOrchestrator {
	return newLiveOrchestratorWith(t, ev, nil, 0)
}

// newLiveOrchestratorWith takes the gate (nil: the vectors' on-chain gate),
// the input idle timeout (0: the default) and edits of the live config.
func newLiveOrchestratorWith(t testing.TB, ev int64, gate orchestrator.Gate, idle time.Duration, edits ...func(*orchestrator.LiveConfig)) *liveOrchestrator {
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
	ts := trickle.NewServer(trickle.ServerConfig{BasePath: orchestrator.TrickleBasePath})
	t.Cleanup(ts.Stop)
	live := &orchestrator.LiveConfig{
		Channels: ts, NewMID: func() string { return liveMID }, Now: clock.Now,
		Poll: 2 * time.Millisecond, HealthPoll: 10 * time.Millisecond, InputIdle: idle,
	}
	for _, e := range edits {
		e(live)
	}
	srv, err := orchestrator.New(orchestrator.Config{
		ServiceURI: vecURI, MaxBodyBytes: 1 << 20, MaxResponseBytes: 64 << 20, MaxQueue: 4, QueueTimeout: time.Second,
		RunnerTimeout: time.Minute, ResultTTL: time.Minute,
		Live: live,
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
	return &liveOrchestrator{rpc: rpc, client: c, url: url, srv: srv, runner: lr, ts: ts, clock: clock, cpu: cpu}
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
		if !o.open(c) {
			t.Errorf("channel %s not open", c)
		}
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
		o.segment(t)
		if st.After == "" { // insufficient: the session closes
			waitFor(t, "the session to close on insufficient balance", func() bool { return !o.open(liveMID) })
			for _, c := range []string{liveMID, liveMID + "-out", liveMID + "-control", liveMID + "-events"} {
				if o.open(c) {
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

// open reports whether the trickle server holds the channel.
func (o *liveOrchestrator) open(name string) bool {
	_, ok := o.ts.LastWrite(name)
	return ok
}

// segment publishes one input segment as the gateway does, over HTTP.
func (o *liveOrchestrator) segment(t testing.TB) {
	t.Helper()
	if o.pub == nil {
		o.pub = trickle.NewPublisher(o.url+orchestrator.TrickleBasePath+liveMID, httpClient)
	}
	if _, err := o.pub.Write(t.Context(), strings.NewReader("segment")); err != nil {
		t.Fatalf("publish an input segment to %s: %v", o.url, err)
	}
}

// TestOrchLiveRunnerHost: -liveAITrickleHostForRunner replaces the host of
// the four URLs the runner gets, not of those the gateway gets
// (server/ai_http.go:1139-1142,1367-1378).
func TestOrchLiveRunnerHost(t *testing.T) {
	const runnerHost = "172.17.0.1:8935"
	o := newLiveOrchestratorWith(t, liveEV, orchestrator.OffChain{}, 0, func(c *orchestrator.LiveConfig) { c.RunnerHost = runnerHost })
	status, _, body := o.post(t, "/live-video-to-video", nil, liveFile(t, "http/start_request_body.json"))
	if want := bytes.TrimSpace(liveFile(t, "http/start_response_body.json")); status != http.StatusOK || !bytes.Equal(body, want) {
		t.Fatalf("start: %d %s, want the service URI's URLs %s", status, body, want)
	}
	o.runner.mu.Lock()
	defer o.runner.mu.Unlock()
	want := strings.ReplaceAll(string(bytes.TrimSpace(liveFile(t, "http/runner_request_body.json"))), "orchestrator.example:8935", runnerHost)
	if len(o.runner.starts) != 1 || string(o.runner.starts[0]) != want {
		t.Errorf("runner start %q\nwant %s", o.runner.starts, want)
	}
}
