package preparer

import (
	"context"
	"crypto/ecdsa"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/ethclient"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/contracts"
	"github.com/lpgauge/lpgauge/contracts/chaintest"
	"github.com/lpgauge/lpgauge/gateway"
	"github.com/lpgauge/lpgauge/gateway/pm"
	"github.com/lpgauge/lpgauge/internal/results"
	"github.com/lpgauge/lpgauge/orchestrator"
	"github.com/lpgauge/lpgauge/orchestrator/aimodels"
	"github.com/lpgauge/lpgauge/orchestrator/lprpc"
	"github.com/lpgauge/lpgauge/orchestrator/payment"
	"github.com/lpgauge/lpgauge/schemas/proto/lpnet"
	"github.com/lpgauge/lpgauge/tester/orchtest"
	"github.com/lpgauge/lpgauge/tester/probe"
)

// onChain is a simulated chain with a funded tester key and one with no
// TicketBroker funds.
type onChain struct {
	c            *chaintest.Chain
	tester, poor *ecdsa.PrivateKey
	eth          gateway.EthChain
}

func newOnChain(t *testing.T, orchKeys ...*ecdsa.PrivateKey) *onChain {
	t.Helper()
	tester, _ := crypto.GenerateKey()
	poor, _ := crypto.GenerateKey()
	c := chaintest.New(t, append(orchKeys, tester, poor)...)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := c.L.FundDepositAndReserve(ctx, tester, big.NewInt(1e17), big.NewInt(1e17)); err != nil {
		t.Fatal(err)
	}
	client, err := ethclient.DialContext(ctx, c.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	broker, err := contracts.New(client, big.NewInt(chaintest.ChainID), c.L.Addresses())
	if err != nil {
		t.Fatal(err)
	}
	return &onChain{c: c, tester: tester, poor: poor, eth: gateway.EthChain{Client: client, Broker: broker}}
}

// reference starts a reference orchestrator on the chain.
func (o *onChain) reference(t *testing.T, cfg orchtest.ReferenceConfig) *orchtest.Reference {
	t.Helper()
	if cfg.Key == nil {
		cfg.Key, _ = crypto.GenerateKey()
	}
	cfg.Chain = payment.ContractChain{L: o.c.L, Key: cfg.Key}
	return orchtest.NewReference(t, cfg)
}

// gateway is the tester's gateway with go-livepeer's default limits, as
// cmd/tester builds it.
func (o *onChain) gateway(key *ecdsa.PrivateKey) *gateway.Gateway {
	return &gateway.Gateway{
		Sender:      pm.NewSender(pm.NewSigner(key)),
		MaxTicketEV: gateway.DefaultMaxTicketEV, MaxTotalEV: gateway.DefaultMaxTotalEV,
		DepositMultiplier: gateway.DefaultDepositMultiplier,
		Chain:             o.eth, BlockCacheTTL: 10 * time.Millisecond,
	}
}

func probeOnce(t *testing.T, gw *gateway.Gateway, r *orchtest.Reference) results.Result {
	t.Helper()
	t2i, _ := probe.Lookup("text-to-image")
	p := probe.New(probe.Config{Preparer: Preparer{Gateway: gw}, Timeouts: probe.Timeouts{Total: 30 * time.Second, Server: 20 * time.Second}})
	return p.Run(context.Background(), probe.Job{Orchestrator: r.Address, ServiceURI: r.URI, Pipeline: t2i, Model: orchtest.DefaultModel, Seed: 1})
}

func price(wei int64) []aimodels.Model {
	p := &aimodels.Price{}
	p.SetInt64(wei)
	return []aimodels.Model{{Pipeline: "text-to-image", ModelID: orchtest.DefaultModel, Warm: true, Capacity: 1, PricePerUnit: p}}
}

// Every sender-side refusal of go-livepeer's gateway is made before a
// ticket is signed, and recorded as the tester's own fault (excused, never
// scored) with a code that says which limit: the orchestrator is not paid
// and sees no job.
func TestSenderSideRefusalsAreExcused(t *testing.T) {
	o := newOnChain(t)
	ok := o.reference(t, orchtest.ReferenceConfig{Payment: payment.Config{ParamsValidBlocks: 100000}})
	// EV 1e13 per ticket, over -maxTicketEV 3e12.
	highEV := o.reference(t, orchtest.ReferenceConfig{Payment: payment.Config{FaceValue: big.NewInt(1e15), TicketEV: big.NewInt(1e13), ParamsValidBlocks: 100000}})
	// 1e8 wei per pixel at EV 1e12: a 512×512+ image needs 27+ tickets,
	// 2.7e13+ wei of EV, over -maxTotalEV 2e13.
	dear := o.reference(t, orchtest.ReferenceConfig{Models: price(1e8), Payment: payment.Config{FaceValue: big.NewInt(1e13), TicketEV: big.NewInt(1e12), ParamsValidBlocks: 100000}})
	// Face value 2e17 against a 1e17 deposit.
	bigFace := o.reference(t, orchtest.ReferenceConfig{Payment: payment.Config{FaceValue: big.NewInt(2e17), TicketEV: big.NewInt(1e11), ParamsValidBlocks: 100000}})

	deadClient, err := ethclient.Dial("http://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	defer deadClient.Close()

	tests := []struct {
		name   string
		target *orchtest.Reference
		gw     func() *gateway.Gateway
		code   string
	}{
		{"ticket EV above -maxTicketEV", highEV, func() *gateway.Gateway { return o.gateway(o.tester) }, "ticket_ev_above_max"},
		{"total EV above -maxTotalEV", dear, func() *gateway.Gateway { return o.gateway(o.tester) }, "total_ev_above_max"},
		{"face value above deposit / -depositMultiplier", bigFace, func() *gateway.Gateway { return o.gateway(o.tester) }, "face_value_above_deposit"},
		{"face value above deposit / a large -depositMultiplier", ok, func() *gateway.Gateway {
			g := o.gateway(o.tester)
			g.DepositMultiplier = 1e6 // 1e17/1e6 = 1e11 < the 1e12 face value
			return g
		}, "face_value_above_deposit"},
		{"no TicketBroker deposit", ok, func() *gateway.Gateway { return o.gateway(o.poor) }, "sender_funds"},
		{"price above -maxPricePerUnit", ok, func() *gateway.Gateway {
			g := o.gateway(o.tester)
			g.MaxPricePerUnit = big.NewRat(999, 1) // the orchestrator asks 1000
			return g
		}, "price_above_max"},
		{"our chain RPC down", ok, func() *gateway.Gateway {
			g := o.gateway(o.tester)
			g.Chain = gateway.EthChain{Client: deadClient, Broker: o.eth.Broker}
			return g
		}, "chain_unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gw := tt.gw()
			r := probeOnce(t, gw, tt.target)
			if r.Outcome != results.Excused || r.ErrorClass != string(probe.ClassTester) || r.ErrorCode != tt.code {
				t.Fatalf("outcome %s %s/%s (%s), want excused tester/%s", r.Outcome, r.ErrorClass, r.ErrorCode, r.ErrorMessage, tt.code)
			}
			if r.HTTPStatus != 0 || r.Upload > 0 {
				t.Errorf("the job was sent: status %d, upload %s", r.HTTPStatus, r.Upload)
			}
			manifest := gateway.ManifestID(capability.TextToImage, orchtest.DefaultModel)
			if bal := tt.target.Receiver.Balance(gw.Sender.Address(), manifest); bal.Sign() != 0 {
				t.Errorf("orchestrator credited %s wei: the tester paid", bal.FloatString(0))
			}
		})
	}

	// The same gateway pays an orchestrator within every limit.
	if r := probeOnce(t, o.gateway(o.tester), ok); r.Outcome != results.Success {
		t.Fatalf("within the limits: %s %s/%s %s", r.Outcome, r.ErrorClass, r.ErrorCode, r.ErrorMessage)
	}
	manifest := gateway.ManifestID(capability.TextToImage, orchtest.DefaultModel)
	if ok.Receiver.Balance(crypto.PubkeyToAddress(o.tester.PublicKey), manifest).Sign() < 0 {
		t.Error("paid job left a negative balance")
	}
}

// With -reuse-sessions the tester keeps an orchestrator's info between
// probes (no GetOrchestrator, discovery 0) until its ticket params come
// within a block of expiry or its auth token within 180 s of expiry
// (gateway.AuthTokenRefresh, go-livepeer's rule); then it refreshes by
// itself and the probe still succeeds.
func TestReusedSessionsRefreshBeforeExpiry(t *testing.T) {
	o := newOnChain(t)
	// Blocks come every 20 ms: 50 blocks of validity is about a second.
	shortParams := o.reference(t, orchtest.ReferenceConfig{Payment: payment.Config{ParamsValidBlocks: 50}})
	shortToken := o.reference(t, orchtest.ReferenceConfig{Payment: payment.Config{ParamsValidBlocks: 100000, TokenTTL: gateway.AuthTokenRefresh + 10*time.Second}})

	for _, tt := range []struct {
		name  string
		r     *orchtest.Reference
		sleep time.Duration
	}{
		{"ticket params expire", shortParams, 1500 * time.Millisecond},
		// 10 s of reuse: a first probe under -race on a loaded machine
		// takes seconds.
		{"auth token ages", shortToken, 10 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			gw := o.gateway(o.tester)
			gw.ReuseSessions = true
			first := mustSucceed(t, gw, tt.r)
			if first.Discovery <= 0 {
				t.Errorf("first probe: discovery %s, want a GetOrchestrator", first.Discovery)
			}
			if again := mustSucceed(t, gw, tt.r); again.Discovery != 0 {
				t.Errorf("second probe right after: discovery %s, want the session reused", again.Discovery)
			}
			time.Sleep(tt.sleep)
			if later := mustSucceed(t, gw, tt.r); later.Discovery <= 0 {
				t.Errorf("after expiry: discovery %s, want a refresh", later.Discovery)
			}
		})
	}

	// The default: GetOrchestrator on every probe, timed.
	gw := o.gateway(o.tester)
	for i := 0; i < 2; i++ {
		if r := mustSucceed(t, gw, shortToken); r.Discovery <= 0 {
			t.Errorf("probe %d without reuse: discovery %s", i, r.Discovery)
		}
	}
}

// An orchestrator restarted with a new secret refuses the auth token and
// ticket params a reusing tester cached. That is the tester's stale state,
// not the orchestrator's fault: the probe drops the session, fetches a fresh
// one and succeeds, its discovery the new GetOrchestrator, and the probes
// after it reuse the new session.
func TestReusedSessionSurvivesOrchestratorRestart(t *testing.T) {
	o := newOnChain(t)
	key, _ := crypto.GenerateKey()
	cfg := orchtest.ReferenceConfig{Key: key, Payment: payment.Config{ParamsValidBlocks: 100000}}
	before := o.reference(t, cfg)
	gw := o.gateway(o.tester)
	gw.ReuseSessions = true
	mustSucceed(t, gw, before)
	if r := mustSucceed(t, gw, before); r.Discovery != 0 {
		t.Fatalf("second probe: discovery %s, want the session reused", r.Discovery)
	}

	before.Close()
	cfg.Addr = strings.TrimPrefix(before.URI, "https://")
	after := o.reference(t, cfg) // same key and address, new secret
	r := probeOnce(t, gw, after)
	if r.Outcome != results.Success {
		t.Fatalf("first probe after the restart: %s %s/%s (%s), want success with a fresh session",
			r.Outcome, r.ErrorClass, r.ErrorCode, r.ErrorMessage)
	}
	if r.Discovery <= 0 {
		t.Errorf("first probe after the restart: discovery %s, want the fresh GetOrchestrator timed", r.Discovery)
	}
	// The scored total is the job as a gateway with a live session sees it:
	// discovery is timed beside it, not inside it (issue #13).
	if r.Total < r.Server {
		t.Errorf("total %s shorter than server %s", r.Total, r.Server)
	}
	if r := mustSucceed(t, gw, after); r.Discovery != 0 {
		t.Errorf("next probe: discovery %s, want the new session reused", r.Discovery)
	}
}

func mustSucceed(t *testing.T, gw *gateway.Gateway, r *orchtest.Reference) results.Result {
	t.Helper()
	res := probeOnce(t, gw, r)
	if res.Outcome != results.Success {
		t.Fatalf("probe: %s %s/%s %s", res.Outcome, res.ErrorClass, res.ErrorCode, res.ErrorMessage)
	}
	return res
}

// mangler is a real lprpc server whose ticket params are then broken, as a
// buggy or hostile orchestrator would send them.
type mangler struct {
	*lprpc.Server
	mangle func(*lpnet.OrchestratorInfo)
}

func (m mangler) GetOrchestrator(ctx context.Context, req *lpnet.OrchestratorRequest) (*lpnet.OrchestratorInfo, error) {
	info, err := m.Server.GetOrchestrator(ctx, req)
	if err == nil {
		m.mangle(info)
	}
	return info, err
}

// Terms the orchestrator got wrong are its payment fault (scored), not the
// tester's: malformed ticket params, a malformed price, and params that
// are already expiring when freshly issued (its chain view is stale),
// which the tester fetches once more before giving up.
func TestOrchestratorPaymentFaultsAreScored(t *testing.T) {
	o := newOnChain(t)
	tests := []struct {
		name        string
		mangle      func(*lpnet.OrchestratorInfo)
		code        string
		discoveries int64
	}{
		{"recipient not an address", func(i *lpnet.OrchestratorInfo) { i.TicketParams.Recipient = []byte{1, 2, 3} }, "ticket_params_invalid", 1},
		{"win probability 0", func(i *lpnet.OrchestratorInfo) { i.TicketParams.WinProb = nil }, "ticket_params_invalid", 1},
		{"price per 0 units", func(i *lpnet.OrchestratorInfo) { i.PriceInfo.PixelsPerUnit = 0 }, "price_invalid", 1},
		{"params already expired", func(i *lpnet.OrchestratorInfo) { i.TicketParams.ExpirationBlock = big.NewInt(1).Bytes() }, "ticket_params_expired", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, _ := crypto.GenerateKey()
			recv, err := payment.NewReceiver(payment.Config{Signer: pm.NewSigner(key), Chain: payment.ContractChain{L: o.c.L, Key: key}, ParamsValidBlocks: 100000})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(recv.Close)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			uri := "http://" + ln.Addr().String()
			t2i, _ := capability.ByID(capability.TextToImage)
			var calls, jobs atomic.Int64
			srv := &lprpc.Server{URI: uri, Receiver: recv, States: func() []orchestrator.ModelState {
				return []orchestrator.ModelState{{Pipeline: t2i, Model: orchtest.DefaultModel, Warm: true, Capacity: 1, PricePerUnit: 1000, PixelsPerUnit: 1}}
			}}
			m := mangler{Server: srv, mangle: func(i *lpnet.OrchestratorInfo) { calls.Add(1); tt.mangle(i) }}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() {
				done <- lprpc.Serve(ctx, ln, lprpc.NewGRPC(m), http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
					jobs.Add(1)
					http.Error(w, "no", http.StatusTeapot)
				}), nil)
			}()
			t.Cleanup(func() { cancel(); <-done })

			ref := &orchtest.Reference{URI: uri, Address: crypto.PubkeyToAddress(key.PublicKey).Hex(), Receiver: recv}
			r := probeOnce(t, o.gateway(o.tester), ref)
			if r.Outcome != results.Failure || r.ErrorClass != string(probe.ClassPayment) || r.ErrorCode != tt.code {
				t.Fatalf("outcome %s %s/%s (%s), want failure payment/%s", r.Outcome, r.ErrorClass, r.ErrorCode, r.ErrorMessage, tt.code)
			}
			if calls.Load() != tt.discoveries || jobs.Load() != 0 {
				t.Errorf("%d GetOrchestrator calls, %d jobs sent; want %d and 0", calls.Load(), jobs.Load(), tt.discoveries)
			}
		})
	}
}

// A paid live session end to end on chain (issue 16): the start request
// carries 60 s of 1280×720×30 in tickets, the reference orchestrator
// credits them to the stream's mid and accepts; while the stream runs the
// tester pays every 5 s on POST /payment with that mid, and the
// orchestrator accepts each payment and debits the stream without running
// out. Each accepted payment is counted on the row.
func TestLivePaymentsAcceptedOnChain(t *testing.T) {
	o := newOnChain(t)
	p := &aimodels.Price{}
	p.SetInt64(10)
	ref := o.reference(t, orchtest.ReferenceConfig{Models: []aimodels.Model{
		{Pipeline: "live-video-to-video", ModelID: "noop", Warm: true, Capacity: 1, PricePerUnit: p}}})
	live, _ := probe.Lookup("live-video-to-video")
	pr := probe.New(probe.Config{Preparer: Preparer{Gateway: o.gateway(o.tester)}, Timeouts: probe.Timeouts{Total: 60 * time.Second},
		Live: probe.LiveConfig{Duration: 7 * time.Second, FPS: 10, Width: 64, Height: 32, Segment: 500 * time.Millisecond}})
	r := pr.Run(context.Background(), probe.Job{Orchestrator: ref.Address, ServiceURI: ref.URI, Pipeline: live, Model: "noop", Seed: 1})
	if r.Outcome != results.Success {
		t.Fatalf("paid live session: %s %s/%s (%s); %+v", r.Outcome, r.ErrorClass, r.ErrorCode, r.ErrorMessage, r.Live)
	}
	// The start's payment and at least one periodic one (due 5 s in).
	if r.Live.PaymentsOK < 2 || r.Live.PaymentsRefused != 0 {
		t.Fatalf("payments accepted %d, refused %d; want the start's and a periodic one accepted", r.Live.PaymentsOK, r.Live.PaymentsRefused)
	}
	if r.Live.FramesOut != r.Live.FramesIn {
		t.Fatalf("frames %d in, %d out", r.Live.FramesIn, r.Live.FramesOut)
	}
}
