package conformance

// The gateway side of live-video-to-video (issue 16) against go-livepeer's
// own output: testdata/go-livepeer-live (README there, go-livepeer at
// 176aa415c). The start body was marshalled by go-livepeer's generated
// type, the payment vectors by its pm/core/net code with the fixed keys of
// the batch vectors (price 10 wei/pixel, ticket EV 8e9, O's mid f0e1d2c3).

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/gateway"
	"github.com/lpgauge/lpgauge/schemas/proto/lpnet"
)

const gwLiveMid = "f0e1d2c3" // L00 inputs.orchestrator_manifest_id

func gwLiveFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "go-livepeer-live", name))
	if err != nil {
		t.Fatalf("vector %s: %v", name, err)
	}
	return b
}

func gwLiveB64(t testing.TB, stem string) string {
	t.Helper()
	s := strings.TrimSpace(string(gwLiveFile(t, stem+".b64")))
	h, err := hex.DecodeString(strings.TrimSpace(string(gwLiveFile(t, stem+".hex"))))
	if err != nil || base64.StdEncoding.EncodeToString(h) != s {
		t.Fatalf("vector %s: .b64 and .hex differ (%v)", stem, err)
	}
	return s
}

func gwLiveBytes(t testing.TB, stem string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.TrimSpace(string(gwLiveFile(t, stem+".hex"))))
	if err != nil {
		t.Fatalf("vector %s: %v", stem, err)
	}
	return b
}

// gwLiveInfo is L02, O's GetOrchestrator answer for live noop, with its own
// auth token (expires 2027-01-01): Livepeer-Segment carries the token, so
// moving it would change the bytes. The gateways that pay against it run on
// gwLiveCaptured's clock (gwLiveGateway), so the vector is checked the same
// way after 2027 as before.
func gwLiveInfo(t testing.TB) *lpnet.OrchestratorInfo {
	t.Helper()
	var info lpnet.OrchestratorInfo
	if err := proto.Unmarshal(gwLiveBytes(t, "payment/L02_orchestrator_info_live_noop"), &info); err != nil {
		t.Fatal(err)
	}
	if info.GetAuthToken().GetExpiration() != vecExpiration {
		t.Fatalf("L02's auth token expires at %d, the vectors' fixed input is %d", info.GetAuthToken().GetExpiration(), vecExpiration)
	}
	return &info
}

// gwLiveCaptured is when O issued L02's auth token: go-livepeer's token is
// valid for authTokenValidPeriod, 30 minutes (server/rpc.go:47), and the
// vectors fix its expiry at vecExpiration (as vecReceiver issues it).
var gwLiveCaptured = time.Unix(vecExpiration, 0).Add(-30 * time.Minute)

// gwLiveGateway is gwGateway on a clock stopped at the moment the live
// vectors were captured.
func gwLiveGateway(t testing.TB) *gateway.Gateway {
	t.Helper()
	g := gwGateway(t, newGWChain())
	g.Now = func() time.Time { return gwLiveCaptured }
	return g
}

// L02's auth token is enforced on the gateway's clock: at the capture and
// up to its last second the start request is paid, from its expiry on the
// gateway refuses (ErrTokenExpired, go-livepeer's "auth token expired") and
// pays nothing; a periodic payment in the token's last AuthTokenRefresh
// first asks O again (server/broadcast.go:1637-1644), so an O that does not
// answer GetOrchestrator gets no payment.
func TestGatewayLiveTokenExpiry(t *testing.T) {
	exp := time.Unix(vecExpiration, 0)
	for _, tt := range []struct {
		name string
		at   time.Time
		ok   bool
	}{
		{"at the capture", gwLiveCaptured, true},
		{"one second before expiry", exp.Add(-time.Second), true},
		{"at expiry", exp, false},
		{"a year later", exp.AddDate(1, 0, 0), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := gwLiveGateway(t)
			g.Now = func() time.Time { return tt.at }
			h, n, err := g.LivePayer(gwLiveInfo(t), "noop").StartHeaders(context.Background())
			if tt.ok && (err != nil || n != 3) {
				t.Fatalf("start payment at %s: %d tickets, %v; want go-livepeer's 3", tt.at.UTC(), n, err)
			}
			if !tt.ok && (!errors.Is(err, gateway.ErrTokenExpired) || h != nil || n != 0) {
				t.Fatalf("start payment at %s with a token that expired at %s: %d tickets, %v; want ErrTokenExpired and nothing paid",
					tt.at.UTC(), exp.UTC(), n, err)
			}
		})
	}

	var posted atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// An empty PaymentResult: the session keeps L02. The refresh's
		// gRPC preface reaches here too and is not a payment.
		if r.Method == http.MethodPost && r.URL.Path == "/payment" {
			posted.Add(1)
		}
	}))
	defer srv.Close()
	info := gwLiveInfo(t)
	info.Transcoder = srv.URL // answers HTTP, not GetOrchestrator
	now := gwLiveCaptured
	g := gwLiveGateway(t)
	g.Now = func() time.Time { return now }
	p := g.LivePayer(info, "noop")
	if _, _, err := p.StartHeaders(context.Background()); err != nil {
		t.Fatal(err)
	}
	t0 := time.Unix(1_800_000_000, 0)
	p.Started(gwLiveMid, t0)
	if _, err := p.Pay(context.Background(), srv.Client(), p.Due(t0.Add(gateway.LivePaymentInterval))); err != nil || posted.Load() != 1 {
		t.Fatalf("payment 30 min before expiry: %v, %d POSTs; want paid without a refresh", err, posted.Load())
	}
	now = exp.Add(-gateway.AuthTokenRefresh + time.Second)
	if _, err := p.Pay(context.Background(), srv.Client(), p.Due(t0.Add(2*gateway.LivePaymentInterval))); err == nil || posted.Load() != 1 {
		t.Fatalf("payment in the token's last %s with no GetOrchestrator to refresh it: %v, %d POSTs; want an error and no payment",
			gateway.AuthTokenRefresh, err, posted.Load())
	}
}

// The start body is byte-identical to what go-livepeer's gateway marshals
// (server/ai_mediaserver.go:682-687 into ai/worker/runner.gen.go:315-343):
// publish_url and subscribe_url as "", control/events/manifest omitted, and
// "params":null when there are none.
func TestGatewayLiveStartBody(t *testing.T) {
	for _, tt := range []struct {
		file   string
		params map[string]any
	}{
		{"http/start_request_body.json", map[string]any{"prompt": "a watercolor city", "seed": 42}},
		{"http/start_request_body_no_params.json", nil},
	} {
		got, err := gateway.LiveStart{ModelID: "noop", Params: tt.params, GatewayRequestID: "5e6f7a8b", StreamID: "str_abc123"}.Body()
		if err != nil {
			t.Fatal(err)
		}
		if want := bytes.TrimSpace(gwLiveFile(t, tt.file)); !bytes.Equal(got, want) {
			t.Fatalf("%s:\n got %s\nwant %s", tt.file, got, want)
		}
	}
	if _, err := (gateway.LiveStart{}).Body(); err == nil {
		t.Fatal("a start body without model_id was built; go-livepeer's O panics on it (server/ai_http.go:1024)")
	}
}

// L01: the discovery request for live is DefaultCapabilities + 35 with the
// per-model constraint {} for the live pipeline name (server/ai_session.go:
// 445-470), signed as the batch requests are.
func TestGatewayLiveOrchestratorRequest(t *testing.T) {
	req, err := gateway.OrchestratorRequest(gwSigner(t), capability.LiveVideoToVideo, gateway.LiveDefaultModel)
	if err != nil {
		t.Fatal(err)
	}
	want := gwLiveBytes(t, "payment/L01_orchestrator_request_live_noop")
	if got := gwDeterministic(t, req); !bytes.Equal(got, want) {
		var w lpnet.OrchestratorRequest
		if err := proto.Unmarshal(want, &w); err != nil {
			t.Fatal(err)
		}
		gwSame(t, "live OrchestratorRequest", &w, req)
		t.Fatalf("live OrchestratorRequest bytes differ from go-livepeer's:\n got %x\nwant %x", got, want)
	}
	// The tester learns live models from the answer (L02): cap 35's models.
	offers := gateway.Offers(gwLiveInfo(t))
	if len(offers) != 1 || offers[0].Capability != capability.LiveVideoToVideo || offers[0].Model != "noop" || !offers[0].Warm {
		t.Fatalf("offers of L02: %+v, want live-video-to-video noop warm", offers)
	}
}

// L03, L04 and L00: the initial payment (60 s of 1280×720×30 at 10 wei =
// 16,588,800,000 wei, 3 tickets of EV 8e9, SegData manifest "35_noop") and
// the first periodic payment (5 s = 138,240,000 px, 1 ticket, SegData
// naming O's mid) are byte-identical to go-livepeer's; the later periodic
// payments send the ticket counts and keep the credit L00's timeline
// lists (0-ticket payments included).
func TestGatewayLivePayments(t *testing.T) {
	g := gwLiveGateway(t)
	p := g.LivePayer(gwLiveInfo(t), "noop")
	h, n, err := p.StartHeaders(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Fatalf("initial payment: %d tickets, go-livepeer sends 3", n)
	}
	if got, want := h.Get(gateway.PaymentHeader), gwLiveB64(t, "payment/L03_start_request_payment"); got != want {
		t.Fatalf("start Livepeer-Payment differs from go-livepeer's (server/ai_process.go:1075-1084)\n got %s\nwant %s", got, want)
	}
	if got, want := h.Get(gateway.SegmentHeader), gwLiveB64(t, "payment/L03_start_request_segdata"); got != want {
		t.Fatalf("start Livepeer-Segment differs from go-livepeer's\n got %s\nwant %s", got, want)
	}
	if h.Get("Authorization") != "Livepeer-AI-Worker-1.0" {
		t.Fatalf("Authorization %q", h.Get("Authorization"))
	}
	if p.Credit().Sign() != 0 {
		t.Fatalf("the initial payment left credit %s; go-livepeer counts it spent (CreditSpent)", p.Credit().FloatString(0))
	}

	t0 := time.Unix(1_800_000_000, 0)
	p.Started(gwLiveMid, t0)
	if u := p.Due(t0.Add(4999 * time.Millisecond)); u != 0 {
		t.Fatalf("payment due %d px before the 5 s interval", u)
	}
	units := p.Due(t0.Add(gateway.LivePaymentInterval))
	if units != 138_240_000 {
		t.Fatalf("first periodic payment for %d px, go-livepeer pays 138240000 (5 s × 27,648,000)", units)
	}
	h, n, err = p.PaymentHeaders(context.Background(), units)
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("first periodic payment: %d tickets, want 1", n)
	}
	if got, want := h.Get(gateway.PaymentHeader), gwLiveB64(t, "payment/L04_periodic_payment"); got != want {
		t.Fatalf("periodic Livepeer-Payment differs from go-livepeer's (server/live_payment.go:62-105)\n got %s\nwant %s", got, want)
	}
	if got, want := h.Get(gateway.SegmentHeader), gwLiveB64(t, "payment/L04_periodic_segdata"); got != want {
		t.Fatalf("periodic Livepeer-Segment differs from go-livepeer's (manifest id = O's mid)\n got %s\nwant %s", got, want)
	}
	// The ticket EV is a fraction a hair off 8e9, so credits compare as
	// go-livepeer prints them (FloatString(0)).
	if p.Credit().FloatString(0) != "6617600000" {
		t.Fatalf("credit after the first periodic payment %s, go-livepeer 6617600000", p.Credit().FloatString(0))
	}

	var sum struct {
		Timeline []struct {
			Interval int    `json:"interval"`
			Tickets  int    `json:"gateway_num_tickets_in_payment"`
			After    string `json:"gateway_balance_after_wei"`
		} `json:"timeline_periodic_payments"`
	}
	if err := json.Unmarshal(gwLiveFile(t, "payment/L00_live_payment_summary.json"), &sum); err != nil {
		t.Fatal(err)
	}
	if len(sum.Timeline) == 0 {
		t.Fatal("L00 has no periodic timeline")
	}
	at := t0.Add(gateway.LivePaymentInterval)
	for _, step := range sum.Timeline {
		at = at.Add(gateway.LivePaymentInterval)
		units := p.Due(at)
		_, n, err := p.PaymentHeaders(context.Background(), units)
		if err != nil {
			t.Fatal(err)
		}
		if n != step.Tickets || p.Credit().FloatString(0) != step.After {
			t.Fatalf("interval %d: %d tickets, credit %s; go-livepeer %d tickets, credit %s", step.Interval, n,
				p.Credit().FloatString(0), step.Tickets, step.After)
		}
	}
}

// The truncated pixels of a payment are paid later: the billing clock
// advances by the billed duration only (server/live_payment_processor.go:
// 86-92), so payments at 5 s + 37 ns and at 15 s pay exactly 15 s in all
// (the first one's extra pixel moves the clock, so 10 s is not yet due).
func TestGatewayLivePaymentCarriesRounding(t *testing.T) {
	p := gwLiveGateway(t).LivePayer(gwLiveInfo(t), "noop")
	t0 := time.Unix(1_800_000_000, 0)
	p.Started(gwLiveMid, t0)
	var total int64
	for _, at := range []time.Duration{5*time.Second + 37*time.Nanosecond, 10 * time.Second, 15 * time.Second} {
		u := p.Due(t0.Add(at))
		if u == 0 {
			continue
		}
		if _, _, err := p.PaymentHeaders(context.Background(), u); err != nil {
			t.Fatal(err)
		}
		total += u
	}
	if total != 15*gateway.LivePixelsPerSecond {
		t.Fatalf("paid %d px over 15 s, want %d", total, 15*gateway.LivePixelsPerSecond)
	}
}

// The start request on the wire: POST <transcoder>/live-video-to-video with
// exactly go-livepeer's headers and body (http/start_and_payment_http.json),
// the answer's URLs read (relative ones resolved against the transcoder
// URI, common/util.go:503-525), and every error form go-livepeer's gateway
// has: non-JSON-200 text minus its newline (server/ai_process.go:1111-1114),
// control_url missing (:1116-1118), the 5 s bound (:1103-1106).
func TestGatewayLiveStartRequest(t *testing.T) {
	var rec struct {
		method, path string
		header       http.Header
		body         []byte
	}
	answer := func(w http.ResponseWriter) {}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.method, rec.path, rec.header = r.Method, r.URL.Path, r.Header.Clone()
		rec.body, _ = io.ReadAll(r.Body)
		answer(w)
	}))
	defer srv.Close()

	var vec struct {
		Start struct {
			Headers map[string]string `json:"headers"`
		} `json:"start_request"`
	}
	if err := json.Unmarshal(gwLiveFile(t, "http/start_and_payment_http.json"), &vec); err != nil {
		t.Fatal(err)
	}
	g := gwLiveGateway(t)
	p := g.LivePayer(gwLiveInfo(t), "noop")
	h, _, err := p.StartHeaders(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	start := gateway.LiveStart{ModelID: "noop", Params: map[string]any{"prompt": "a watercolor city", "seed": 42}, GatewayRequestID: "5e6f7a8b", StreamID: "str_abc123"}

	answer = func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"control_url":"/ai/trickle/f0e1d2c3-control","events_url":"ai/trickle/f0e1d2c3-events","manifest_id":"f0e1d2c3","publish_url":"` +
			srv.URL + `/ai/trickle/f0e1d2c3","subscribe_url":"https://other.example:8935/ai/trickle/f0e1d2c3-out"}`))
	}
	urls, err := gateway.StartLive(context.Background(), srv.Client(), srv.URL, h, start)
	if err != nil {
		t.Fatal(err)
	}
	if rec.method != http.MethodPost || rec.path != "/live-video-to-video" {
		t.Fatalf("start request %s %s", rec.method, rec.path)
	}
	for k, v := range vec.Start.Headers {
		if rec.header.Get(k) != v {
			t.Fatalf("header %s = %q, go-livepeer sends %q", k, rec.header.Get(k), v)
		}
	}
	if !bytes.Equal(rec.body, bytes.TrimSpace(gwLiveFile(t, "http/start_request_body.json"))) {
		t.Fatalf("start body %s differs from go-livepeer's", rec.body)
	}
	want := gateway.LiveURLs{Publish: srv.URL + "/ai/trickle/f0e1d2c3", Subscribe: "https://other.example:8935/ai/trickle/f0e1d2c3-out",
		Control: srv.URL + "/ai/trickle/f0e1d2c3-control", Events: srv.URL + "/ai/trickle/f0e1d2c3-events", ManifestID: gwLiveMid}
	if urls != want {
		t.Fatalf("URLs %+v\nwant %+v", urls, want)
	}

	for _, tt := range []struct {
		name   string
		answer func(w http.ResponseWriter)
		check  func(error) bool
	}{
		{"503 insufficient capacity", func(w http.ResponseWriter) { http.Error(w, "insufficient capacity", http.StatusServiceUnavailable) },
			func(err error) bool {
				var e *gateway.LiveStartError
				return errors.As(err, &e) && e.Status == 503 && e.Message == "insufficient capacity"
			}},
		{"200 text is an error", func(w http.ResponseWriter) { _, _ = w.Write([]byte("ok\n")) },
			func(err error) bool {
				var e *gateway.LiveStartError
				return errors.As(err, &e) && e.Status == 200 && e.Message == "ok"
			}},
		{"control_url missing", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"events_url":"/e","publish_url":"/p","subscribe_url":"/s"}`))
		}, func(err error) bool {
			return errors.Is(err, gateway.ErrLiveStartAnswer) && strings.Contains(err.Error(), "control URL is missing")
		}},
		{"empty publish_url", func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"control_url":"/c","events_url":"/e","publish_url":"","subscribe_url":"/s"}`))
		}, func(err error) bool {
			return errors.Is(err, gateway.ErrLiveStartAnswer) && strings.Contains(err.Error(), "publish")
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			answer = tt.answer
			_, err := gateway.StartLive(context.Background(), srv.Client(), srv.URL, h, start)
			if !tt.check(err) {
				t.Fatalf("error %v", err)
			}
		})
	}

	t.Run("5 s bound", func(t *testing.T) {
		release := make(chan struct{})
		defer close(release)
		answer = func(http.ResponseWriter) { <-release }
		began := time.Now()
		_, err := gateway.StartLive(context.Background(), srv.Client(), srv.URL, h, start)
		if took := time.Since(began); err == nil || took < gateway.LiveStartTimeout || took > gateway.LiveStartTimeout+2*time.Second {
			t.Fatalf("a silent orchestrator: error %v after %s, want a timeout after 5 s", err, took)
		}
	})
}

// A periodic payment on the wire: POST <transcoder>/payment with only the
// two payment headers and no body (server/live_payment.go:96-110); the
// PaymentResult answer (L05) replaces the session's info; a refusal is a
// *LivePaymentError with O's text.
func TestGatewayLivePaymentRequest(t *testing.T) {
	var got *http.Request
	var body []byte
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Clone(context.Background())
		body, _ = io.ReadAll(r.Body)
		if status != http.StatusOK {
			http.Error(w, "insufficient balance", status)
			return
		}
		_, _ = w.Write(gwLiveBytes(t, "payment/L05_payment_result"))
	}))
	defer srv.Close()
	info := gwLiveInfo(t)
	info.Transcoder = srv.URL
	p := gwLiveGateway(t).LivePayer(info, "noop")
	if _, _, err := p.StartHeaders(context.Background()); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().Add(-5 * time.Second)
	p.Started(gwLiveMid, t0)
	n, err := p.Pay(context.Background(), srv.Client(), p.Due(t0.Add(5*time.Second)))
	if err != nil || n != 1 {
		t.Fatalf("payment: %d tickets, %v", n, err)
	}
	if got.Method != http.MethodPost || got.URL.Path != "/payment" || len(body) != 0 {
		t.Fatalf("payment request %s %s with %d body bytes", got.Method, got.URL.Path, len(body))
	}
	if got.Header.Get(gateway.PaymentHeader) != gwLiveB64(t, "payment/L04_periodic_payment") ||
		got.Header.Get(gateway.SegmentHeader) != gwLiveB64(t, "payment/L04_periodic_segdata") {
		t.Fatal("periodic payment headers differ from go-livepeer's L04")
	}
	if got.Header.Get("Authorization") != "" || got.Header.Get("Content-Type") != "" {
		t.Fatalf("payment carries Authorization %q / Content-Type %q; go-livepeer sets neither", got.Header.Get("Authorization"), got.Header.Get("Content-Type"))
	}
	res, err := gateway.DecodePaymentResult(gwLiveBytes(t, "payment/L05_payment_result"))
	if err != nil || res.GetTranscoder() == "" {
		t.Fatalf("L05 decodes to %v, %v", res, err)
	}
	status = http.StatusBadRequest
	// L05's info names orchestrator.example as transcoder: a new session here.
	p = gwLiveGateway(t).LivePayer(info, "noop")
	p.Started(gwLiveMid, t0)
	_, err = p.Pay(context.Background(), srv.Client(), gateway.LivePixelsPerSecond*5)
	var e *gateway.LivePaymentError
	if !errors.As(err, &e) || e.Status != 400 || e.Message != "insufficient balance" {
		t.Fatalf("refused payment: %v", err)
	}
}
