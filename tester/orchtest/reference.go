package orchtest

import (
	"context"
	"crypto/ecdsa"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/lpgauge/lpgauge/gateway/pm"
	"github.com/lpgauge/lpgauge/gateway/trickle"
	"github.com/lpgauge/lpgauge/orchestrator"
	"github.com/lpgauge/lpgauge/orchestrator/aimodels"
	"github.com/lpgauge/lpgauge/orchestrator/cpurunner"
	"github.com/lpgauge/lpgauge/orchestrator/lprpc"
	"github.com/lpgauge/lpgauge/orchestrator/payment"
)

// Reference is a real reference orchestrator (CPU runners, the payment
// gate, GetOrchestrator) on one TLS port: what the tester meets on chain.
type Reference struct {
	URI      string // https://127.0.0.1:port
	Address  string // lower-case 0x; the key's address on chain
	Receiver *payment.Receiver
	stop     func()
}

// Close stops the orchestrator before the test ends (a restart: start
// another on the same Addr).
func (r *Reference) Close() { r.stop() }

// ReferenceConfig configures a Reference.
type ReferenceConfig struct {
	// Models served; default one warm text-to-image model priced 1000 wei
	// per pixel.
	Models []aimodels.Model
	// Key and Chain make it an on-chain orchestrator; both nil: off chain.
	Key   *ecdsa.PrivateKey
	Chain payment.Chain
	// Payment tunes the receiver (face value, ticket EV, …).
	Payment payment.Config
	// Addr is the listen address (default 127.0.0.1:0: a free port).
	Addr string
}

// DefaultModel is the model a Reference serves by default.
const DefaultModel = "test/model"

// NewReference starts a reference orchestrator, stopped when t ends.
func NewReference(t testing.TB, cfg ReferenceConfig) *Reference {
	t.Helper()
	if cfg.Models == nil {
		price := &aimodels.Price{}
		price.SetInt64(1000)
		cfg.Models = []aimodels.Model{{Pipeline: "text-to-image", ModelID: DefaultModel, Warm: true, Capacity: 1, PricePerUnit: price}}
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cpu, err := cpurunner.New(cfg.Models, cpurunner.Config{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cpu.Close)
	pcfg := cfg.Payment
	pcfg.Chain = cfg.Chain
	pcfg.Log = quiet
	if cfg.Key != nil {
		pcfg.Signer = pm.NewSigner(cfg.Key)
	}
	recv, err := payment.NewReceiver(pcfg)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		t.Fatal(err)
	}
	uri := "https://" + ln.Addr().String()
	addr := RandomAddress()
	if cfg.Key != nil {
		addr = strings.ToLower(crypto.PubkeyToAddress(cfg.Key.PublicKey).Hex())
	}
	rpc := &lprpc.Server{URI: uri, Receiver: recv, States: cpu.States, Version: lprpc.DefaultVersion, Address: common.HexToAddress(addr)}
	ocfg := orchestrator.Config{
		ServiceURI: uri, MaxBodyBytes: 16 << 20, MaxResponseBytes: 64 << 20, MaxQueue: 4,
		QueueTimeout: 5 * time.Second, RunnerTimeout: 30 * time.Second, ResultTTL: time.Minute, EthAddr: addr, Logger: quiet,
	}
	for _, m := range cfg.Models {
		if m.Pipeline == "live-video-to-video" {
			// Live models: the trickle server under /ai/trickle/, as
			// orchestrator/node wires it.
			ts := trickle.NewServer(trickle.ServerConfig{BasePath: orchestrator.TrickleBasePath})
			t.Cleanup(ts.Stop)
			ocfg.Live = &orchestrator.LiveConfig{Channels: ts, HealthPoll: 100 * time.Millisecond}
			break
		}
	}
	srv, err := orchestrator.New(ocfg, cpu, rpc.Gate())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := lprpc.SelfSigned("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- lprpc.Serve(ctx, ln, lprpc.NewGRPC(rpc), srv.Handler(), cert) }()
	// Server, then receiver (queued redemptions); runners last (cleanup).
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			<-done
			srv.Close()
			recv.Close()
		})
	}
	t.Cleanup(stop)
	return &Reference{URI: uri, Address: addr, Receiver: recv, stop: stop}
}
