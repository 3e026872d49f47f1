package conformance

import (
	"context"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/lpgauge/lpgauge/capability"
	"github.com/lpgauge/lpgauge/gateway/pm"
	"github.com/lpgauge/lpgauge/orchestrator"
	"github.com/lpgauge/lpgauge/orchestrator/aimodels"
	"github.com/lpgauge/lpgauge/orchestrator/cpurunner"
	"github.com/lpgauge/lpgauge/orchestrator/lprpc"
	"github.com/lpgauge/lpgauge/orchestrator/payment"
	"github.com/lpgauge/lpgauge/orchestrator/runner"
	"github.com/lpgauge/lpgauge/schemas/proto/lpnet"
)

// The fixed inputs of the go-livepeer vectors (testdata/go-livepeer/README.md §0).
const (
	vecDir        = "testdata/go-livepeer"
	vecGatewayKey = "1111111111111111111111111111111111111111111111111111111111111111"
	vecOrchKey    = "2222222222222222222222222222222222222222222222222222222222222222"
	vecURI        = "https://orchestrator.example:8935"
	vecSessionID  = "0a1b2c3d"
	vecExpiration = 1798761600 // 2027-01-01T00:00:00Z
	vecBlock      = 21000000
	vecRound      = 3600
	vecSeed       = "8709f67c5fee975d11f4c3ec486625fcebf830e55d09b3a76e38290c66efca74"
	vecRoundHash  = "9f69b7ce0f22514226e1e282d07c86cbac754c9526080a585646745ada44c933"
	vecPrice      = 4768371
	sdxl          = "ByteDance/SDXL-Lightning"
	llama         = "meta-llama/Meta-Llama-3.1-8B-Instruct"
)

var (
	vecGateway = common.HexToAddress("0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A")
	vecOrch    = common.HexToAddress("0x1563915e194D8CfBA1943570603F7606A3115508")
	// vecFaceValue is what go-livepeer's face value rule gives for §0's
	// chain state: redeemGas 1.2e6 × gas price 1e7 × txCostMultiplier 100.
	vecFaceValue = big.NewInt(1_200_000_000_000_000)
	t2i, _       = capability.ByID(capability.TextToImage)
	llm, _       = capability.ByID(capability.LLM)
)

// vecAIModels is the orchestrator's -aiModels of §2.
const vecAIModels = `[{"pipeline":"text-to-image","model_id":"ByteDance/SDXL-Lightning","warm":true,"price_per_unit":4768371,"pixels_per_unit":1},
  {"pipeline":"llm","model_id":"meta-llama/Meta-Llama-3.1-8B-Instruct","warm":true,"capacity":2,"url":"http://llm-runner:8000","price_per_unit":4768371,"pixels_per_unit":1}]`

func vecFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(vecDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// vecMsg decodes a vector's .hex protobuf bytes into m.
func vecMsg[M proto.Message](t testing.TB, name string, m M) M {
	t.Helper()
	b, err := hex.DecodeString(strings.TrimSpace(string(vecFile(t, name))))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if err := proto.Unmarshal(b, m); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return m
}

// vecHeader is a vector's .b64 file: the HTTP header value as sent.
func vecHeader(t testing.TB, name string) string {
	t.Helper()
	return strings.TrimSpace(string(vecFile(t, name)))
}

func mustKey(t testing.TB, h string) *pm.Signer {
	t.Helper()
	k, err := crypto.HexToECDSA(h)
	if err != nil {
		t.Fatal(err)
	}
	return pm.NewSigner(k)
}

// standIn is §0's chain state: last seen L1 block 21000000, round 3600 and
// its block hash, a sender with deposit and reserve 1e17 and no unlock.
type standIn struct{}

func (standIn) BlockNumber(context.Context) (uint64, error) { return vecBlock, nil }
func (standIn) CurrentRound(context.Context) (int64, common.Hash, error) {
	return vecRound, common.HexToHash(vecRoundHash), nil
}
func (standIn) Sender(context.Context, common.Address) (payment.SenderInfo, error) {
	e17 := big.NewInt(1e17)
	return payment.SenderInfo{Deposit: e17, Reserve: e17, WithdrawRound: new(big.Int)}, nil
}
func (standIn) Redeem(context.Context, *pm.Ticket, []byte, *big.Int) error { return nil }

// vecReceiver is an orchestrator receiver with §0's key, secrets, seed,
// session id, token expiry and chain, and ticketEV ev.
func vecReceiver(t testing.TB, ev int64) *payment.Receiver {
	t.Helper()
	secret := make([]byte, 32)
	for i := range secret {
		secret[i] = byte(i + 1)
	}
	seed, _ := hex.DecodeString(vecSeed)
	r, err := payment.NewReceiver(payment.Config{
		Signer:     mustKey(t, vecOrchKey),
		Chain:      standIn{},
		Secret:     secret,
		AuthSecret: []byte(strings.Repeat("\x44", 32)),
		FaceValue:  vecFaceValue,
		TicketEV:   big.NewInt(ev),
		Seed:       func() []byte { return append([]byte(nil), seed...) },
		SessionID:  func() string { return vecSessionID },
		// 30 minutes before the vectors' token expiry: the token issued
		// now expires exactly at vecExpiration, as in 02b.
		Now: func() time.Time { return time.Unix(vecExpiration, 0).Add(-30 * time.Minute) },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// vecStates is what the runners of §2 report: both up, runner 0.14.1.
func vecStates(t2iPrice int64) func() []orchestrator.ModelState {
	return func() []orchestrator.ModelState {
		return []orchestrator.ModelState{
			{Pipeline: t2i, Model: sdxl, Warm: true, Capacity: 1, RunnerVersion: "0.14.1", PricePerUnit: t2iPrice, PixelsPerUnit: 1},
			{Pipeline: llm, Model: llama, Warm: true, Capacity: 2, RunnerVersion: "0.14.1", PricePerUnit: vecPrice, PixelsPerUnit: 1},
		}
	}
}

func vecModels(t testing.TB, js string) []aimodels.Model {
	t.Helper()
	m, err := aimodels.Parse(js)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// vecServer is the §2 orchestrator's gRPC face.
func vecServer(t testing.TB, ev, t2iPrice int64) *lprpc.Server {
	return &lprpc.Server{
		URI: vecURI, Receiver: vecReceiver(t, ev), States: vecStates(t2iPrice),
		Models: vecModels(t, vecAIModels), Version: "0.9.1",
	}
}

// serve runs rpc and h on one loopback port (h2c, as off TLS go-livepeer)
// until the test ends and returns a gRPC client and the base URL.
func serve(t testing.TB, rpc lpnet.OrchestratorServer, h http.Handler) (lpnet.OrchestratorClient, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	if h == nil {
		h = http.NotFoundHandler()
	}
	go func() { done <- lprpc.Serve(ctx, ln, lprpc.NewGRPC(rpc), h, nil) }()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return lpnet.NewOrchestratorClient(conn), "http://" + ln.Addr().String()
}

// jobOrchestrator is the §2 orchestrator with its text-to-image model on a
// CPU reference runner, serving gRPC and the AI HTTP endpoints on one port.
type jobOrchestrator struct {
	rpc     *lprpc.Server
	client  lpnet.OrchestratorClient
	url     string
	runners *cpurunner.Runners
}

func newJobOrchestrator(t testing.TB, ev, t2iPrice int64) *jobOrchestrator {
	t.Helper()
	js := `[{"pipeline":"text-to-image","model_id":"ByteDance/SDXL-Lightning","warm":true,"price_per_unit":` +
		big.NewInt(t2iPrice).String() + `,"pixels_per_unit":1}]`
	models := vecModels(t, js)
	cpu, err := cpurunner.New(models, cpurunner.Config{Latency: runner.Latency{Mean: time.Millisecond}, DefaultCapacity: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cpu.Close)
	rpc := &lprpc.Server{URI: vecURI, Receiver: vecReceiver(t, ev), States: cpu.States, Models: models, Version: "0.9.1"}
	srv, err := orchestrator.New(orchestrator.Config{
		MaxBodyBytes: 1 << 20, MaxResponseBytes: 64 << 20, MaxQueue: 4, QueueTimeout: time.Second,
		RunnerTimeout: time.Minute, ResultTTL: time.Minute,
	}, cpu, rpc.Gate())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	c, url := serve(t, rpc, srv.Handler())
	deadline := time.Now().Add(10 * time.Second)
	for cpu.States()[0].Capacity == 0 {
		if time.Now().After(deadline) {
			t.Fatal("CPU runner never became ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return &jobOrchestrator{rpc: rpc, client: c, url: url, runners: cpu}
}

var httpClient = &http.Client{Timeout: time.Minute, Transport: &http.Transport{TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12}}}

// postT2I sends the vectors' 1024×1024 text-to-image job with the given
// Livepeer-Payment and Livepeer-Segment headers.
func (o *jobOrchestrator) postT2I(t testing.TB, paymentHdr, segmentHdr string) (int, string) {
	t.Helper()
	body := `{"prompt":"a lighthouse","model_id":"` + sdxl + `","height":1024,"width":1024}`
	req, err := http.NewRequest(http.MethodPost, o.url+"/text-to-image", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Livepeer-AI-Worker-1.0")
	if paymentHdr != "" {
		req.Header.Set("Livepeer-Payment", paymentHdr)
	}
	if segmentHdr != "" {
		req.Header.Set("Livepeer-Segment", segmentHdr)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sb strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			break
		}
	}
	return resp.StatusCode, sb.String()
}

// served is how many jobs reached the text-to-image runner.
func (o *jobOrchestrator) served() int64 { return o.runners.Served(t2i, sdxl) }

func pj(m proto.Message) string {
	b, _ := protojson.Marshal(m)
	var v any
	_ = json.Unmarshal(b, &v)
	out, _ := json.MarshalIndent(v, "", " ")
	return string(out)
}

// ratOf parses the "num/denom (~x)" rationals of the vectors' summaries.
func ratOf(t testing.TB, s string) *big.Rat {
	t.Helper()
	s, _, _ = strings.Cut(s, " ")
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		t.Fatalf("not a rational: %q", s)
	}
	return r
}
