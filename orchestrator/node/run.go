// Package node is the reference orchestrator program (binary orchestrator):
// its flags, the chain and payment set-up, the runners (in-process CPU
// runners or Docker containers) and the two listeners, started and shut
// down in order. cmd/orchestrator only wires signals and the exit status.
package node

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/lpgauge/lpgauge/gateway/trickle"
	"github.com/lpgauge/lpgauge/internal/cli"
	"github.com/lpgauge/lpgauge/internal/httpserve"
	"github.com/lpgauge/lpgauge/orchestrator"
	"github.com/lpgauge/lpgauge/orchestrator/aimodels"
	"github.com/lpgauge/lpgauge/orchestrator/cpurunner"
	"github.com/lpgauge/lpgauge/orchestrator/gpu"
	"github.com/lpgauge/lpgauge/orchestrator/lprpc"
	"github.com/lpgauge/lpgauge/orchestrator/payment"
	"github.com/lpgauge/lpgauge/schemas/proto/lpnet"
)

// defaultEthAddr derives a stable pseudo address from the service address,
// so an off-chain demo orchestrator keeps one identity across restarts.
func defaultEthAddr(serviceAddr string) string {
	sum := sha256.Sum256([]byte("lpgauge-orchestrator:" + serviceAddr))
	return "0x" + hex.EncodeToString(sum[:20])
}

// Run is the whole orchestrator: flags → config → chain, runners, payment
// receiver → serve until ctx ends. Shutdown order: the public port drains
// first, then the operator listener (so /metrics answers while jobs finish),
// then the server, the payment receiver (queued winners still submitted)
// and last the runners.
func Run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("orchestrator", flag.ContinueOnError)
	var c Config
	c.RegisterFlags(fs)
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	fs.Visit(func(f *flag.Flag) { c.tlsSet = c.tlsSet || f.Name == "tls" })
	if err := c.Validate(); err != nil { // before any runner starts
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	log := c.Log.New(os.Stderr)
	cli.WarnDeprecated(fs, log)
	return run(ctx, c, log)
}

// run starts the validated configuration and serves until ctx ends.
func run(ctx context.Context, c Config, log *slog.Logger) error {
	cfg := c.Server
	httpAddr, serviceAddr, operatorAddr, serviceURI := &c.HTTPAddr, &c.ServiceAddr, &c.OperatorAddr, &c.ServiceURI
	ethAddr, network, version, ticketStore, useTLS := &c.EthAddr, &c.Network, &c.Version, &c.TicketStore, &c.TLS
	chainCfg, lat, capacity, runnersKind, docker := c.Chain, c.Latency, &c.Capacity, &c.Runners, c.Docker
	models, prices, host := c.models, c.prices, c.host
	var err error

	// Payments: off-chain a receiver without chain or key (auth tokens
	// only); on-chain one bound to the TicketBroker with our key.
	pcfg := payment.Config{}
	if *network == "onchain" {
		oc, err := chainCfg.connect(ctx)
		if err != nil {
			return err
		}
		defer oc.close()
		pcfg = oc.pcfg
		keyAddr := crypto.PubkeyToAddress(oc.key.PublicKey)
		if *ethAddr != "" && common.HexToAddress(*ethAddr) != keyAddr {
			return fmt.Errorf("-eth.addr %s is not the key's address %s: on chain the key is the identity", *ethAddr, keyAddr.Hex())
		}
		cfg.EthAddr = strings.ToLower(keyAddr.Hex())
		if pcfg.Tickets, err = openTicketStore(*ticketStore, cfg.EthAddr); err != nil {
			return err
		}
	} else {
		cfg.EthAddr = *ethAddr
		if cfg.EthAddr == "" {
			cfg.EthAddr = defaultEthAddr(*serviceAddr)
		}
	}
	scheme := "http"
	if *useTLS {
		scheme = "https"
	}
	// Result URLs follow the request's host unless -service-uri pins them;
	// GetOrchestrator must name one URI, so it falls back to -serviceAddr.
	cfg.ServiceURI = *serviceURI
	advertised := *serviceURI
	if advertised == "" {
		advertised = scheme + "://" + *serviceAddr
	}
	log = log.With("eth_addr", cfg.EthAddr)
	cfg.Logger = log
	pcfg.Log = log

	var runners orchestrator.Runners
	var extra http.Handler
	switch *runnersKind {
	case "cpu":
		cpu, err := cpurunner.New(models, cpurunner.Config{
			Latency: lat, DefaultCapacity: *capacity, Logger: log, Live: c.LiveProfile,
		})
		if err != nil {
			return err
		}
		defer cpu.Close()
		runners = cpu
	case "docker":
		rt, routes, stopRuntime, err := docker.startDocker(ctx, models, cfg.EthAddr, log)
		if err != nil {
			return err
		}
		defer stopRuntime() // after the HTTP server has drained
		runners, extra = rt, routes
	default:
		return fmt.Errorf("-runners %q: want cpu or docker", *runnersKind)
	}
	recv, err := payment.NewReceiver(pcfg)
	if err != nil {
		return err
	}
	defer recv.Close() // after the server: queued winners are still submitted while it drains
	rpc := &lprpc.Server{URI: advertised, Receiver: recv, States: pricedStates(runners.States, prices), Version: *version,
		Models: models, Address: common.HexToAddress(cfg.EthAddr), Hardware: hardware(runners.States, log)}
	// Off-chain the gate admits every job, so plain runner-style clients
	// (no Livepeer headers) keep working; on chain every job is checked:
	// payment (402/400) and segment credentials (403).
	var gate orchestrator.Gate = orchestrator.OffChain{}
	if *network == "onchain" {
		gate = rpc.Gate()
	}
	if servesLive(models) {
		// One trickle server for every stream's four channels, on the
		// public port under /ai/trickle/ (go-livepeer server/ai_http.go:42);
		// stopped after the server has closed its streams.
		ts := trickle.NewServer(trickle.ServerConfig{BasePath: orchestrator.TrickleBasePath})
		defer ts.Stop()
		live := c.Live
		live.Channels = ts
		cfg.Live = &live
	}
	srv, err := orchestrator.New(cfg, runners, gate)
	if err != nil {
		return err
	}
	defer srv.Close()

	var cert *tls.Certificate
	if *useTLS {
		if cert, err = lprpc.SelfSigned(host, "localhost", "127.0.0.1"); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", *httpAddr, err)
	}
	if *operatorAddr != "" {
		opHandler := srv.OperatorHandler()
		if extra != nil {
			opHandler = withRuntimeRoutes(opHandler, extra)
		}
		// The operator listener stops after the public port has drained.
		opCtx, stopOp := context.WithCancel(context.WithoutCancel(ctx))
		_, waitOp, err := httpserve.Start(opCtx, httpserve.NewServer(opHandler, 30*time.Second), *operatorAddr, 5*time.Second, log.With("listener", "operator"))
		if err != nil {
			stopOp()
			_ = ln.Close()
			return fmt.Errorf("-operator-addr: %w", err)
		}
		defer func() {
			stopOp()
			if err := waitOp(); err != nil {
				log.Error("operator listener", "err", err)
			}
		}()
	}
	log.Info("orchestrator listening", "addr", ln.Addr().String(), "service_uri", advertised, "network", *network,
		"tls", *useTLS, "models", len(models))
	// GetOrchestrator shares the port with the HTTP endpoints, as on
	// go-livepeer: TLS with a self-signed certificate, or h2c.
	if err := lprpc.Serve(ctx, ln, lprpc.NewGRPC(rpc), srv.Handler(), cert, lprpc.WithBodyReadTimeout(cfg.BodyReadTimeout)); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// servesLive reports whether an aiModels entry is a live pipeline.
func servesLive(models []aimodels.Model) bool {
	for _, m := range models {
		if m.Pipeline == "live-video-to-video" {
			return true
		}
	}
	return false
}

// hardware reports the machine's GPUs (NVML) with every served model, as
// go-livepeer answers a GetOrchestrator without capabilities; nil without
// a GPU.
func hardware(states func() []orchestrator.ModelState, log *slog.Logger) func() []*lpnet.HardwareInformation {
	inv, err := gpu.OpenSystem()
	if err != nil {
		log.Info("no GPU inventory; GetOrchestrator sends no hardware", "reason", err.Error())
		return nil
	}
	return func() []*lpnet.HardwareInformation {
		gpus, err := inv.GPUs()
		if err != nil {
			return nil
		}
		return lprpc.HardwareFromGPUs(states(), gpus)
	}
}

// openTicketStore opens -ticket.store, by default one directory per
// orchestrator address under ~/.lpgauge (tickets name their recipient, and
// only its key can redeem them).
func openTicketStore(dir, addr string) (*payment.TicketStore, error) {
	switch dir {
	case "none":
		return nil, nil
	case "":
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, fmt.Errorf("-ticketStore: no home directory for the default (%w); give a directory", err)
		}
		dir = filepath.Join(home, ".lpgauge", "orchestrator-"+addr, "tickets")
	}
	st, err := payment.OpenTicketStore(dir)
	if err != nil {
		return nil, fmt.Errorf("-ticket.store %s: %w", dir, err)
	}
	return st, nil
}
