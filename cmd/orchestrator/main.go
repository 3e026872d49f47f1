// Command orchestrator is the reference AI orchestrator: go-livepeer's AI
// HTTP endpoints in front of CPU reference runners or external runner URLs.
// See README.md in this folder.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"

	"github.com/lpgauge/lpgauge/orchestrator"
	"github.com/lpgauge/lpgauge/orchestrator/lprpc"
	"github.com/lpgauge/lpgauge/orchestrator/payment"
	"github.com/lpgauge/lpgauge/orchestrator/runner"
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
	httpAddr := fs.String("httpAddr", ":8935", "listen address of the AI HTTP server")
	serviceAddr := fs.String("serviceAddr", "127.0.0.1:8935", "host:port gateways reach this orchestrator at")
	serviceURI := fs.String("serviceURI", "", "base URL of result media URLs (default: the scheme and host of each request)")
	aiModels := fs.String("aiModels", "", "aiModels.json path, JSON array, or inline pipeline:model_id:warm,… (required)")
	ethAddr := fs.String("ethAddr", "", "the orchestrator's address, its identity (default derived from -serviceAddr)")
	network := fs.String("network", "offchain", "payment network; only offchain (no payments; GetOrchestrator served on the same port) for now")
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
	if *network != "offchain" {
		return fmt.Errorf("-network %q: only offchain is supported so far", *network)
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
	cfg.EthAddr = *ethAddr
	if cfg.EthAddr == "" {
		cfg.EthAddr = defaultEthAddr(*serviceAddr)
	}
	cfg.ServiceURI = *serviceURI
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil)).With("eth_addr", cfg.EthAddr)
	cfg.Logger = log

	models, err := orchestrator.ParseAIModels(*aiModels)
	if err != nil {
		return err
	}
	var runners orchestrator.Runners
	var extra http.Handler
	switch *runnersKind {
	case "cpu":
		cpu, err := orchestrator.NewCPURunners(models, orchestrator.CPURunnersConfig{
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
	srv, err := orchestrator.New(cfg, runners, orchestrator.OffChain{})
	if err != nil {
		return err
	}
	defer srv.Close()

	ln, err := net.Listen("tcp", *httpAddr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", *httpAddr, err)
	}
	handler := srv.Handler()
	if extra != nil {
		handler = withRuntimeRoutes(handler, extra)
	}
	// GetOrchestrator shares the port with the HTTP endpoints, as on
	// go-livepeer (gRPC over h2c on a plain listener). Off-chain it
	// advertises price 0 and no ticket params.
	recv, err := payment.NewReceiver(payment.Config{Log: log})
	if err != nil {
		return err
	}
	defer recv.Close()
	rpc := &lprpc.Server{URI: "http://" + *serviceAddr, Receiver: recv, States: runners.States, Version: "lpgauge"}
	if cfg.ServiceURI != "" {
		rpc.URI = cfg.ServiceURI
	}
	handler = h2c.NewHandler(lprpc.Handler(lprpc.NewGRPC(rpc), handler), &http2.Server{})
	hs := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: lprpc.MaxHeaderBytes}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	log.Info("orchestrator listening", "addr", ln.Addr().String(), "service_addr", *serviceAddr, "models", len(models))
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hs.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}
