package lprpc_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/contracts/chaintest"
	"github.com/lpgauge/lpgauge/gateway"
	"github.com/lpgauge/lpgauge/gateway/discovery"
	"github.com/lpgauge/lpgauge/gateway/pm"
	"github.com/lpgauge/lpgauge/orchestrator"
	"github.com/lpgauge/lpgauge/orchestrator/aimodels"
	"github.com/lpgauge/lpgauge/orchestrator/cpurunner"
	"github.com/lpgauge/lpgauge/orchestrator/lprpc"
	"github.com/lpgauge/lpgauge/orchestrator/payment"
	"github.com/lpgauge/lpgauge/schemas/proto/lpnet"
)

const model = "test/model"

var jobBody = []byte(`{"model_id":"test/model","prompt":"a bear","width":64,"height":64}`)

const jobUnits = 64 * 64

// countingRunners puts a proxy in front of the real runners that counts
// the jobs that reach a runner.
type countingRunners struct {
	orchestrator.Runners
	jobs  atomic.Int64
	once  sync.Once
	proxy *http.Server
	url   string
}

type lease struct {
	orchestrator.Lease
	url string
}

func (l lease) URL() string { return l.url }

func (c *countingRunners) Reserve(ctx context.Context, p capability.Pipeline, m string) (orchestrator.Lease, error) {
	l, err := c.Runners.Reserve(ctx, p, m)
	if err != nil {
		return nil, err
	}
	c.once.Do(func() {
		target, _ := url.Parse(l.URL())
		rp := httputil.NewSingleHostReverseProxy(target)
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		c.url = "http://" + ln.Addr().String()
		c.proxy = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost {
				c.jobs.Add(1)
			}
			rp.ServeHTTP(w, r)
		}), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = c.proxy.Serve(ln) }()
	})
	return lease{Lease: l, url: c.url}, nil
}

// orch is one running reference orchestrator.
type orch struct {
	key     *ecdsa.PrivateKey
	uri     string
	recv    *payment.Receiver
	runners *countingRunners
}

func startOrch(t *testing.T, c *chaintest.Chain, key *ecdsa.PrivateKey, pcfg payment.Config) *orch {
	t.Helper()
	price := &aimodels.Price{}
	price.SetInt64(1000)
	cpu, err := cpurunner.New([]aimodels.Model{{Pipeline: "text-to-image", ModelID: model, Warm: true, Capacity: 1, PricePerUnit: price}}, cpurunner.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cpu.Close)
	runners := &countingRunners{Runners: cpu}
	t.Cleanup(func() {
		if runners.proxy != nil {
			_ = runners.proxy.Close()
		}
	})
	if key != nil {
		pcfg.Signer = pm.NewSigner(key)
	}
	if c != nil {
		pcfg.Chain = payment.ContractChain{L: c.L, Key: key}
	}
	recv, err := payment.NewReceiver(pcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(recv.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	uri := "https://" + ln.Addr().String()
	rpc := &lprpc.Server{URI: uri, Receiver: recv, States: runners.States, Version: "test"}
	cfg := orchestrator.Config{ServiceURI: uri, MaxBodyBytes: 1 << 20, MaxResponseBytes: 64 << 20, MaxQueue: 4, QueueTimeout: time.Second, RunnerTimeout: 30 * time.Second, ResultTTL: time.Minute}
	srv, err := orchestrator.New(cfg, runners, recv.Gate(rpc.Price))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	cert, err := lprpc.SelfSigned("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- lprpc.Serve(ctx, ln, lprpc.NewGRPC(rpc), srv.Handler(), cert) }()
	t.Cleanup(func() { cancel(); <-done })
	if c != nil {
		cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer ccancel()
		if err := c.L.RegisterTranscoder(cctx, c.Owner, crypto.PubkeyToAddress(key.PublicKey), big.NewInt(1e18)); err != nil {
			t.Fatal(err)
		}
		if err := c.L.SetServiceURI(cctx, key, uri); err != nil {
			t.Fatal(err)
		}
	}
	return &orch{key: key, uri: uri, recv: recv, runners: runners}
}

var httpClient = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}} //nolint:gosec // self-signed test orchestrators

func post(t *testing.T, uri, slug string, h http.Header) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := gateway.Submit(ctx, httpClient, uri, slug, "application/json", jobBody, h)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, string(b)
}

// runJob discovers, pays and runs one text-to-image job, then fetches the
// result image.
func runJob(t *testing.T, g *gateway.Gateway, uri string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, rtt, err := g.Discover(ctx, uri, capability.TextToImage, model)
	if err != nil {
		t.Fatalf("discover %s: %v", uri, err)
	}
	if rtt <= 0 {
		t.Errorf("discovery round trip not measured")
	}
	if mc, ok := gateway.Model(info, capability.TextToImage, model); !ok || !mc.GetWarm() || mc.GetCapacity() != 1 {
		t.Fatalf("model not advertised warm with capacity 1: %v", mc)
	}
	h, err := g.JobHeaders(info, capability.TextToImage, model, jobUnits)
	if err != nil {
		t.Fatal(err)
	}
	status, body := post(t, uri, "text-to-image", h)
	if status != http.StatusOK {
		t.Fatalf("job: %d %s", status, body)
	}
	var out struct {
		Images []struct{ URL string } `json:"images"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil || len(out.Images) == 0 {
		t.Fatalf("job response %q: %v", body, err)
	}
	resp, err := httpClient.Get(out.Images[0].URL)
	if err != nil {
		t.Fatal(err)
	}
	img, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(img) == 0 {
		t.Fatalf("result %s: %d, %d bytes", out.Images[0].URL, resp.StatusCode, len(img))
	}
}

func TestEndToEndOnChain(t *testing.T) {
	gwKey, _ := crypto.GenerateKey()
	var keys []*ecdsa.PrivateKey
	for i := 0; i < 3; i++ {
		k, _ := crypto.GenerateKey()
		keys = append(keys, k)
	}
	c := chaintest.New(t, append(keys, gwKey)...)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.L.FundDepositAndReserve(ctx, gwKey, big.NewInt(1e17), big.NewInt(1e17)); err != nil {
		t.Fatal(err)
	}
	face := big.NewInt(1e15)
	var orchs []*orch
	for i, k := range keys {
		cfg := payment.Config{FaceValue: face, ParamsValidBlocks: 100000}
		if i == 0 {
			// Win probability ~1 (1 − 1e-15): this orchestrator's tickets
			// win. EV must stay below the face value, as go-livepeer's
			// gateway refuses EV ≥ face value (pm/sender.go:182-230).
			cfg.TicketEV = new(big.Int).Sub(face, big.NewInt(1))
		}
		orchs = append(orchs, startOrch(t, c, k, cfg))
	}

	found, err := discovery.Chain{L: c.L}.Orchestrators(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 3 {
		t.Fatalf("discovered %d orchestrators, want 3", len(found))
	}
	before, _ := c.Sim.Client().BalanceAt(ctx, crypto.PubkeyToAddress(keys[0].PublicKey), nil)

	g := &gateway.Gateway{Sender: pm.NewSender(pm.NewSigner(gwKey))}
	for _, o := range found {
		if !o.Active {
			t.Errorf("%s not active", o.Address.Hex())
		}
		for j := 0; j < 2; j++ {
			runJob(t, g, o.ServiceURI)
		}
	}
	for _, o := range orchs {
		if n := o.runners.jobs.Load(); n != 2 {
			t.Errorf("%s: runner saw %d jobs, want 2", o.uri, n)
		}
	}
	orchs[0].recv.WaitRedemptions()
	deadline := time.Now().Add(10 * time.Second)
	for {
		after, _ := c.Sim.Client().BalanceAt(ctx, crypto.PubkeyToAddress(keys[0].PublicKey), nil)
		// Redemption gas is far below the 1e15 face value, so a won
		// ticket shows as growth.
		if after.Cmp(before) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("orchestrator balance did not grow: before %v after %v", before, after)
		}
		time.Sleep(50 * time.Millisecond)
	}
	info, err := c.L.SenderInfo(ctx, crypto.PubkeyToAddress(gwKey.PublicKey))
	if err != nil {
		t.Fatal(err)
	}
	if info.Deposit.Cmp(big.NewInt(1e17)) >= 0 {
		t.Errorf("gateway deposit not debited by redemption: %v", info.Deposit)
	}
}

func TestEndToEndOffChain(t *testing.T) {
	var uris []string
	var orchs []*orch
	for i := 0; i < 3; i++ {
		o := startOrch(t, nil, nil, payment.Config{})
		orchs = append(orchs, o)
		uris = append(uris, o.uri)
	}
	found, err := discovery.Static(uris).Orchestrators(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	g := &gateway.Gateway{}
	for _, o := range found {
		runJob(t, g, o.ServiceURI)
	}
	for _, o := range orchs {
		if n := o.runners.jobs.Load(); n != 1 {
			t.Errorf("runner saw %d jobs, want 1", n)
		}
	}
}

func TestRejections(t *testing.T) {
	gwKey, _ := crypto.GenerateKey()
	oKey, _ := crypto.GenerateKey()
	expKey, _ := crypto.GenerateKey()
	c := chaintest.New(t, gwKey, oKey, expKey)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.L.FundDepositAndReserve(ctx, gwKey, big.NewInt(1e17), big.NewInt(1e17)); err != nil {
		t.Fatal(err)
	}
	o := startOrch(t, c, oKey, payment.Config{FaceValue: big.NewInt(1e15), ParamsValidBlocks: 100000})
	exp := startOrch(t, c, expKey, payment.Config{FaceValue: big.NewInt(1e15), ParamsValidBlocks: 2})

	gw := &gateway.Gateway{Sender: pm.NewSender(pm.NewSigner(gwKey))}
	strangerKey, _ := crypto.GenerateKey()
	stranger := &gateway.Gateway{Sender: pm.NewSender(pm.NewSigner(strangerKey))}
	discover := func(g *gateway.Gateway, uri string) *lpnet.OrchestratorInfo {
		info, _, err := g.Discover(ctx, uri, capability.TextToImage, model)
		if err != nil {
			t.Fatal(err)
		}
		return info
	}
	headers := func(g *gateway.Gateway, info *lpnet.OrchestratorInfo) http.Header {
		h, err := g.JobHeaders(info, capability.TextToImage, model, jobUnits)
		if err != nil {
			t.Fatal(err)
		}
		return h
	}
	gwAddr := crypto.PubkeyToAddress(gwKey.PublicKey)
	manifest := gateway.ManifestID(capability.TextToImage, model)

	tests := []struct {
		name   string
		target *orch
		header func() http.Header
		status int
		msg    string
	}{
		// As go-livepeer: no header is an empty Payment, whose zero sender
		// fails the segment signature (ai_http.go:1380-1392).
		{"missing payment", o, func() http.Header {
			h := headers(gw, discover(gw, o.uri))
			h.Del(gateway.PaymentHeader)
			return h
		}, 403, "payment sender 0x0000000000000000000000000000000000000000"},
		{"malformed payment", o, func() http.Header {
			h := headers(gw, discover(gw, o.uri))
			h.Set(gateway.PaymentHeader, "%%%not-base64")
			return h
		}, 402, "invalid payment"},
		{"missing segment credentials", o, func() http.Header {
			h := headers(gw, discover(gw, o.uri))
			h.Del(gateway.SegmentHeader)
			return h
		}, 403, "missing segment credentials"},
		{"segment signed by someone else", o, func() http.Header {
			info := discover(gw, o.uri)
			h := headers(gw, info)
			sh := headers(stranger, discover(stranger, o.uri))
			h.Set(gateway.SegmentHeader, sh.Get(gateway.SegmentHeader))
			return h
		}, 403, "signature"},
		{"forged auth token", o, func() http.Header {
			info := discover(gw, o.uri)
			info.AuthToken.Expiration += 3600
			return headers(gw, info)
		}, 403, "invalid auth token"},
		{"ticket signed by someone else", o, func() http.Header {
			info := discover(gw, o.uri)
			h := headers(gw, info)
			var p lpnet.Payment
			if err := pm.DecodeHeader(h.Get(gateway.PaymentHeader), &p); err != nil {
				t.Fatal(err)
			}
			sig, _ := pm.NewSigner(strangerKey).Sign(make([]byte, 32))
			p.TicketSenderParams[0].Sig = sig
			v, _ := pm.EncodeHeader(&p)
			h.Set(gateway.PaymentHeader, v)
			return h
		}, 400, "invalid ticket signature"},
		{"ticket params not issued to this sender", o, func() http.Header {
			// The stranger's params, signed by us: the recipient rand was
			// derived for the stranger's address, so it cannot match.
			info := discover(stranger, o.uri)
			return headers(gw, info)
		}, 400, "invalid recipientRand"},
		{"insufficient balance", o, func() http.Header {
			info := discover(gw, o.uri)
			h := headers(gw, info)
			// No tickets at all, at the advertised price: the balance
			// (none) is below one ticket's EV.
			p := &lpnet.Payment{Sender: gwAddr.Bytes(), TicketParams: info.TicketParams, ExpectedPrice: info.PriceInfo}
			v, _ := pm.EncodeHeader(p)
			h.Set(gateway.PaymentHeader, v)
			return h
		}, 400, "Insufficient balance"},
		{"expired ticket params", exp, func() http.Header {
			info := discover(gw, exp.uri)
			h := headers(gw, info)
			time.Sleep(300 * time.Millisecond) // > 2 blocks at the 20 ms miner
			return h
		}, 400, "TicketParams expired"},
		{"oversized payment header", o, func() http.Header {
			h := headers(gw, discover(gw, o.uri))
			h.Set(gateway.PaymentHeader, strings.Repeat("A", pm.MaxHeaderBytes*2))
			return h
		}, 402, "limit"},
		{"headers over the server limit", o, func() http.Header {
			h := headers(gw, discover(gw, o.uri))
			h.Set("X-Padding", strings.Repeat("A", lprpc.MaxHeaderBytes+64<<10))
			return h
		}, 431, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.header()
			jobs := tt.target.runners.jobs.Load()
			bal := tt.target.recv.Balance(gwAddr, manifest)
			status, body := post(t, tt.target.uri, "text-to-image", h)
			if status != tt.status || !strings.Contains(body, tt.msg) {
				t.Fatalf("got %d %q, want %d containing %q", status, body, tt.status, tt.msg)
			}
			if n := tt.target.runners.jobs.Load(); n != jobs {
				t.Errorf("runner saw %d jobs for a refused request", n-jobs)
			}
			if b := tt.target.recv.Balance(gwAddr, manifest); b.Cmp(bal) < 0 {
				t.Errorf("balance went down from %v to %v on a refused job", bal, b)
			}
		})
	}

	t.Run("replayed nonce", func(t *testing.T) {
		h := headers(gw, discover(gw, o.uri))
		if status, body := post(t, o.uri, "text-to-image", h); status != 200 {
			t.Fatalf("first use: %d %s", status, body)
		}
		jobs := o.runners.jobs.Load()
		status, body := post(t, o.uri, "text-to-image", h)
		if status != 400 || !strings.Contains(body, "invalid ticket senderNonce: already seen") {
			t.Fatalf("replay: %d %q", status, body)
		}
		if o.runners.jobs.Load() != jobs {
			t.Error("runner saw the replayed job")
		}
	})

	t.Run("unknown capability", func(t *testing.T) {
		// go-livepeer answers and lets the gateway decide: CompatibleWith
		// is false for a capability it does not serve.
		info, _, err := gw.Discover(ctx, o.uri, capability.LLM, "some/llm")
		if err != nil {
			t.Fatalf("GetOrchestrator for LLM: %v", err)
		}
		if capability.CompatibleWith(gateway.Capabilities(capability.LLM, "some/llm"), info.GetCapabilities()) {
			t.Fatal("an orchestrator without llm is compatible with an llm request")
		}
		jobs := o.runners.jobs.Load()
		// go-livepeer refuses a body its pipeline's schema rejects with 400,
		// and a pipeline it does not serve with 503 insufficient capacity
		// (CheckAICapacity), which gateways retry elsewhere; which comes
		// first depends on whether the body is read before the gate.
		status, body := post(t, o.uri, "llm", headers(gw, discover(gw, o.uri)))
		if status != http.StatusBadRequest && (status != http.StatusServiceUnavailable || !strings.Contains(body, "insufficient capacity")) {
			t.Fatalf("llm job on an orchestrator without llm: %d %q, want 400 or 503 insufficient capacity", status, body)
		}
		if o.runners.jobs.Load() != jobs {
			t.Error("runner saw a job for an unserved capability")
		}
	})

	t.Run("bad GetOrchestrator signature", func(t *testing.T) {
		req, _ := gateway.OrchestratorRequest(pm.NewSigner(gwKey), capability.TextToImage, model)
		req.Address = crypto.PubkeyToAddress(strangerKey.PublicKey).Bytes()
		_, err := gateway.GetOrchestrator(ctx, o.uri, req)
		if err == nil || !strings.Contains(err.Error(), "sig check failed") {
			t.Fatalf("got %v", err)
		}
		if errors.Is(err, gateway.ErrNotWorking) {
			t.Fatal("wrong error class")
		}
	})
}
