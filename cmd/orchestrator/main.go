// Command orchestrator is the reference AI orchestrator: go-livepeer's AI
// HTTP endpoints in front of CPU reference runners or external runner URLs.
// See README.md in this folder.
package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/lpgauge/lpgauge/orchestrator"
	"github.com/lpgauge/lpgauge/orchestrator/aimodels"
	"github.com/lpgauge/lpgauge/orchestrator/cpurunner"
	"github.com/lpgauge/lpgauge/orchestrator/gpu"
	"github.com/lpgauge/lpgauge/orchestrator/lprpc"
	"github.com/lpgauge/lpgauge/orchestrator/payment"
	"github.com/lpgauge/lpgauge/orchestrator/runner"
	"github.com/lpgauge/lpgauge/schemas/proto/lpnet"
)

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "orchestrator:", err)
		os.Exit(1)
	}
}

// defaultEthAddr derives a stable pseudo address from the service address,
// so an off-chain demo orchestrator keeps one identity across restarts.
func defaultEthAddr(serviceAddr string) string {
	sum := sha256.Sum256([]byte("lpgauge-orchestrator:" + serviceAddr))
	return "0x" + hex.EncodeToString(sum[:20])
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("orchestrator", flag.ContinueOnError)
	var cfg orchestrator.Config
	cfg.RegisterFlags(fs)
	httpAddr := fs.String("httpAddr", ":8935", "listen address of the one port: AI HTTP endpoints and gRPC GetOrchestrator")
	serviceAddr := fs.String("serviceAddr", "127.0.0.1:8935", "host:port gateways reach this orchestrator at")
	operatorAddr := fs.String("operatorAddr", "127.0.0.1:7935", "listen address of the operator endpoints (/status, /metrics, /healthz, and with -runners docker /status/runtime and /metrics/runtime), kept off the public port; loopback by default, as go-livepeer's CLI port; empty: not served")
	serviceURI := fs.String("serviceURI", "", "service URI advertised by GetOrchestrator (default http(s)://-serviceAddr) and base URL of result media URLs (default: the scheme and host of each request)")
	aiModels := fs.String("aiModels", "", "aiModels.json path, JSON array, or inline pipeline:model_id:warm,… (required)")
	ethAddr := fs.String("ethAddr", "", "offchain: the orchestrator's address, its identity (default derived from -serviceAddr); onchain: must match the key's address if given")
	network := fs.String("network", "offchain", "payment network: offchain (price 0, no tickets, no signatures) or onchain (tickets checked against the TicketBroker at -ethUrl, winners redeemed)")
	version := fs.String("livepeerVersion", lprpc.DefaultVersion, "version advertised as Capabilities.version, compared as semver against a gateway's -orchMinLivepeerVersion; default: the go-livepeer release whose wire behaviour this orchestrator conforms to")
	ticketStore := fs.String("ticketStore", "", "onchain: directory where winning tickets stay until redeemed, so a restart or crash loses none (default ~/.lpgauge/orchestrator-<address>/tickets; \"none\": memory only, queued winners lost at shutdown)")
	useTLS := fs.Bool("tls", false, "serve the port over TLS with a generated self-signed certificate, as go-livepeer (default true with -network onchain, false offchain, where h2c is served)")
	var chainCfg chainFlags
	chainCfg.register(fs)
	var lat runner.Latency
	fs.DurationVar(&lat.Mean, "meanServerTime", time.Second, "CPU runners: mean inference time per job")
	fs.DurationVar(&lat.Jitter, "serverTimeJitter", 200*time.Millisecond, "CPU runners: uniform ± jitter around the mean")
	fs.Float64Var(&lat.FailureRate, "failureRate", 0, "CPU runners: fraction of jobs that fail with a runner 500")
	fs.DurationVar(&lat.LoadTime, "loadTime", 0, "CPU runners: model load time before they take jobs")
	capacity := fs.Int("capacity", 1, "CPU runners per model for entries without a capacity field")
	runnersKind := fs.String("runners", "cpu", "where jobs run: cpu (in-process reference runners) or docker (runner containers on the Docker engine and GPUs; see -runtime.*)")
	var docker dockerFlags
	docker.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q: every setting is a flag (see -h)", fs.Args())
	}
	tlsSet := false
	fs.Visit(func(f *flag.Flag) { tlsSet = tlsSet || f.Name == "tls" })
	switch *network {
	case "offchain":
	case "onchain":
		if !tlsSet {
			*useTLS = true
		}
	default:
		return fmt.Errorf("-network %q: want offchain or onchain", *network)
	}
	if *aiModels == "" {
		return errors.New("-aiModels is required")
	}
	if *capacity < 1 {
		return errors.New("-capacity must be at least 1")
	}
	if err := lat.Validate(); err != nil {
		return fmt.Errorf("demo profile: %w", err)
	}
	if err := cfg.Validate(); err != nil { // before any runner starts
		return err
	}
	host, _, err := net.SplitHostPort(*serviceAddr)
	if err != nil {
		return fmt.Errorf("-serviceAddr %q: want host:port: %w", *serviceAddr, err)
	}
	if *ethAddr != "" && !common.IsHexAddress(*ethAddr) {
		return fmt.Errorf("-ethAddr %q: want a 0x address (40 hex digits)", *ethAddr)
	}
	models, err := aimodels.Parse(*aiModels)
	if err != nil {
		return err
	}
	prices, err := modelPrices(models)
	if err != nil {
		return err
	}

	// Payments: off-chain a receiver without chain or key (auth tokens
	// only); on-chain one bound to the TicketBroker with our key.
	pcfg := payment.Config{}
	if *network == "onchain" {
		if len(prices) == 0 {
			return errors.New("-network onchain: no aiModels entry has a price_per_unit, so no job would be paid; give prices in wei (or run -network offchain)")
		}
		oc, err := chainCfg.connect(ctx)
		if err != nil {
			return err
		}
		defer oc.close()
		pcfg = oc.pcfg
		keyAddr := crypto.PubkeyToAddress(oc.key.PublicKey)
		if *ethAddr != "" && common.HexToAddress(*ethAddr) != keyAddr {
			return fmt.Errorf("-ethAddr %s is not the key's address %s: on chain the key is the identity", *ethAddr, keyAddr.Hex())
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
	// Result URLs follow the request's host unless -serviceURI pins them;
	// GetOrchestrator must name one URI, so it falls back to -serviceAddr.
	cfg.ServiceURI = *serviceURI
	advertised := *serviceURI
	if advertised == "" {
		advertised = scheme + "://" + *serviceAddr
	}
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("eth_addr", cfg.EthAddr)
	cfg.Logger = log
	pcfg.Log = log

	var runners orchestrator.Runners
	var extra http.Handler
	switch *runnersKind {
	case "cpu":
		cpu, err := cpurunner.New(models, cpurunner.Config{
			Latency: lat, DefaultCapacity: *capacity, Logger: log,
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
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *operatorAddr != "" {
		opHandler := srv.OperatorHandler()
		if extra != nil {
			opHandler = withRuntimeRoutes(opHandler, extra)
		}
		opDone, err := serveOperator(ctx, *operatorAddr, opHandler, log)
		if err != nil {
			_ = ln.Close()
			return err
		}
		defer func() { stop(); <-opDone }()
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

// openTicketStore opens -ticketStore, by default one directory per
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
		return nil, fmt.Errorf("-ticketStore %s: %w", dir, err)
	}
	return st, nil
}

// serveOperator serves the operator endpoints on addr, plain HTTP, until ctx
// ends; the returned channel closes when the listener is shut down.
func serveOperator(ctx context.Context, addr string, h http.Handler, log *slog.Logger) (<-chan struct{}, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen -operatorAddr %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("operator listener stopped", "addr", addr, "err", err)
		}
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("operator endpoints listening", "addr", ln.Addr().String())
	return done, nil
}
