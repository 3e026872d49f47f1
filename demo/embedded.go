package demo

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/lpgauge/lpgauge/gateway"
	"github.com/lpgauge/lpgauge/internal/chembed"
	"github.com/lpgauge/lpgauge/internal/httpserve"
	"github.com/lpgauge/lpgauge/leaderboard/api"
	"github.com/lpgauge/lpgauge/leaderboard/store"
	"github.com/lpgauge/lpgauge/regions"
	"github.com/lpgauge/lpgauge/schemas"
	"github.com/lpgauge/lpgauge/tester"
	"github.com/lpgauge/lpgauge/tester/node"
	"github.com/lpgauge/lpgauge/tester/preparer"
	"github.com/lpgauge/lpgauge/tester/probe"
	"github.com/lpgauge/lpgauge/tester/writer"

	explorerapi "github.com/lpgauge/lpgauge/explorer-api"
)

const demoDB = "lpgauge"

// demoLive is the demo testers' live stream: 3 s of 128x64 at 30 fps in
// 1 s segments, so a live probe (start, stream, the slow profile's 800 ms
// lag and stall) fits in a round beside the batch probe (the start request
// pays the session; a periodic payment needs ≥ 5 s).
var demoLive = probe.LiveConfig{Duration: 3 * time.Second, FPS: 30, Width: 128, Height: 64, Segment: time.Second}

// startEmbeddedStore runs the store side of the loop inside this process on
// embedded ClickHouse (chDB): no server to install or start. The regional
// testers write through the same spool-backed writer as the tester binary,
// and the leaderboard and explorer-api handlers read the same store. Only
// the orchestrators are separate processes, as they are on the network.
func startEmbeddedStore(ctx context.Context, dataDir, logDir string, fl fleetSpec, say func(string, ...any)) (func(), error) {
	dir := filepath.Join(dataDir, "chdb")
	say("opening embedded ClickHouse (chDB) in %s", dir)
	conn, err := chembed.Open(ctx, dir)
	if err != nil {
		return nil, err
	}
	if _, err := schemas.Migrate(ctx, conn, schemas.Options{Database: demoDB}); err != nil {
		conn.Close()
		return nil, fmt.Errorf("embedded store: %w", err)
	}
	logf, err := os.Create(filepath.Join(logDir, "embedded.log"))
	if err != nil {
		conn.Close()
		return nil, err
	}
	log := slog.New(slog.NewTextHandler(logf, nil))

	st, err := store.NewClickHouse(conn, demoDB, 8*time.Second)
	if err != nil {
		conn.Close()
		logf.Close()
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	// The two APIs stop last, after the testers' writers have flushed.
	srvCtx, stopServers := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var servers []func() error
	var writers []*writer.Writer
	stop := func() {
		cancel() // stop scheduling; Schedule returns once in-flight probes drained
		wg.Wait()
		for _, w := range writers {
			fctx, c := context.WithTimeout(context.Background(), 15*time.Second)
			if err := w.Close(fctx); err != nil {
				say("tester writer: %v", err)
			}
			c()
		}
		stopServers()
		for _, wait := range servers {
			_ = wait()
		}
		say("closing embedded store")
		conn.Close()
		logf.Close()
	}
	serve := func(addr string, h http.Handler) error {
		_, wait, err := httpserve.Start(srvCtx, httpserve.NewServer(h, 20*time.Second), addr, 5*time.Second, log)
		if err != nil {
			return err
		}
		servers = append(servers, wait)
		return nil
	}
	if err := serve(fl.lbAddr, api.New(api.Config{Logger: log}, st)); err != nil {
		return stop, fmt.Errorf("leaderboard: %w", err)
	}
	if err := serve(fl.webAddr, explorerapi.New(explorerapi.Config{Logger: log}, st)); err != nil {
		return stop, fmt.Errorf("explorer-api: %w", err)
	}

	targets, err := tester.ParseTargets(strings.Join(fl.targets, ","))
	if err != nil {
		return stop, err
	}
	models, err := tester.ParseModels(fl.models)
	if err != nil {
		return stop, err
	}
	plan, err := tester.Plan(targets, models)
	if err != nil {
		return stop, err
	}
	sched, period, err := tester.ParseSchedule("", fl.interval)
	if err != nil {
		return stop, err
	}
	for _, code := range fl.regions {
		region, err := regions.ForTester(code)
		if err != nil {
			return stop, err
		}
		sp, err := writer.OpenSpool(filepath.Join(dataDir, "spool-"+region.Code), 256<<20)
		if err != nil {
			return stop, err
		}
		rlog := log.With("region", region.Code)
		w := writer.NewSpooled(writer.Table{Conn: conn, DB: demoDB}, sp, writer.Config{BatchSize: 100, FlushInterval: time.Second}, rlog, writer.Hooks{})
		writers = append(writers, w)
		dial := node.SimulatedDial(region.SimulatedRTT)
		prober := probe.New(probe.Config{
			Timeouts: probe.DefaultTimeouts(),
			Dial:     dial,
			// The protocol path: GetOrchestrator (timed as discovery, over
			// the same simulated distance), then the job with segment
			// credentials; off-chain, so no tickets.
			Preparer: preparer.Preparer{Gateway: &gateway.Gateway{Dial: dial}},
			Live:     demoLive,
		})
		t, err := tester.New(tester.Config{
			Region: region, TesterID: demoTesterID(region.Code), Prober: prober,
			Spread: min(period/10, time.Minute), Deadline: period, Log: rlog,
		})
		if err != nil {
			return stop, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.Schedule(runCtx, sched, period, plan, w, nil)
		}()
		say("tester %s probing %d orchestrators every %s (in process)", region.Code, len(targets), fl.interval)
	}
	return stop, nil
}

// demoTesterID is a stable pseudo address per region (a real tester's id is
// the address of its key).
func demoTesterID(region string) string {
	sum := sha256.Sum256([]byte("lpgauge-demo-tester:" + region))
	return "0x" + hex.EncodeToString(sum[:20])
}
