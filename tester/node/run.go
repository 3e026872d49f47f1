package node

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/lpgauge/lpgauge/gateway"
	"github.com/lpgauge/lpgauge/internal/chstore"
	"github.com/lpgauge/lpgauge/internal/cli"
	"github.com/lpgauge/lpgauge/internal/httpserve"
	"github.com/lpgauge/lpgauge/internal/results"
	"github.com/lpgauge/lpgauge/internal/results/resultsdb"
	"github.com/lpgauge/lpgauge/schemas"
	"github.com/lpgauge/lpgauge/tester"
	"github.com/lpgauge/lpgauge/tester/preparer"
	"github.com/lpgauge/lpgauge/tester/probe"
	"github.com/lpgauge/lpgauge/tester/writer"
)

// Run is the whole tester: flags → Config → store, gateway, prober →
// rounds; cmd/tester only wires signals and the exit status.
// Shutdown order: stop scheduling → drain in-flight probes → flush the
// writer → close the store → stop HTTP.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// Progress lines come from concurrent probes and share the writer
	// with the log.
	stderr = &lockedWriter{w: stderr}
	fs := flag.NewFlagSet("tester", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c Config
	c.RegisterFlags(fs)
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	if err := c.Validate(); err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	p := c.parsed
	log := c.Log.New(stderr).With("region", p.region.Code)
	cli.WarnDeprecated(fs, log)
	if p.keyNote != "" {
		log.Warn(p.keyNote, "tester_id", p.testerID)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := tester.NewMetrics(reg, p.region.Code, p.testerID)

	// The store: migrate, then one batching writer.
	var sink tester.Sink = discard{}
	var w *writer.Writer
	var storeConn driver.Conn
	if !c.NoStore {
		octx, cancel := context.WithTimeout(ctx, c.CH.DialTimeout+5*time.Second)
		conn, err := chstore.Open(octx, c.CH)
		cancel()
		if err != nil {
			return fmt.Errorf("store (%s): %w", chstore.Describe(c.CH), err)
		}
		defer conn.Close()
		storeConn = conn
		if _, err := schemas.Migrate(ctx, conn, schemas.Options{Database: c.CH.Database}); err != nil {
			return fmt.Errorf("store: %w", err)
		}
		sp, err := writer.OpenSpool(c.SpoolDir, c.SpoolMax)
		if err != nil {
			return fmt.Errorf("%w (set -spool-dir to a writable directory)", err)
		}
		metrics.WatchSpool(c.SpoolDir)
		w = writer.NewSpooled(writer.Table{Conn: conn, DB: c.CH.Database}, sp, writer.Config{BatchSize: c.BatchSize, FlushInterval: c.FlushInterval}, log,
			writer.Hooks{
				Flushed: func(n int, took time.Duration) {
					metrics.RowsStored.Add(float64(n))
					metrics.FlushDuration.Observe(took.Seconds())
				},
				Failed: func(error) { metrics.StoreErrors.Inc() },
				Queued: func(d int) { metrics.QueueRows.Set(float64(d)) },
			})
		sink = w
	}

	if c.PostStatsURL != "" {
		ps, err := tester.NewPostStats(c.PostStatsURL, p.secret, log)
		if err != nil {
			return err
		}
		defer func() {
			pctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			if err := ps.Close(pctx); err != nil {
				log.Warn("post_stats", "err", err)
			}
		}()
		sink = tester.Tee{sink, ps}
	}

	var dial func(ctx context.Context, network, addr string) (net.Conn, error)
	if c.SimulateRTT {
		dial = SimulatedDial(p.region.SimulatedRTT)
	}
	// Off-chain the gateway is unsigned; on chain it signs discovery and
	// credentials with the tester key and pays with tickets, within its
	// sender-side limits.
	gws, releaseGW, err := c.Pay.gateways(ctx, c.Network, c.EthURL, p.senders, log)
	if err != nil {
		if w != nil {
			_ = w.Close(context.Background())
		}
		return err
	}
	defer releaseGW()
	for _, gw := range gws {
		// -simulate-rtt promises the distance on every connection: discovery's
		// GetOrchestrator dials too, not only the probe's job.
		gw.Dial = dial
	}
	var prep probe.Preparer // nil: probe.OffChain, no protocol
	if c.Network != "none" {
		pp := preparer.Preparer{Gateway: gws[0]}
		if c.TesterKeys != "" {
			pp = preparer.Preparer{Senders: gws}
			log.Info("sender keys", "keys", len(gws), "tester_id", p.testerID)
		}
		if c.Network == "onchain" {
			pp.Paid = senderCounter(reg, p.region.Code)
		}
		prep = pp
	}
	infoGW := func(ctx context.Context) *gateway.Gateway { return anyFunded(ctx, gws) }
	planner := tester.StaticPlan(p.plan)
	if c.Discovery != "static" || p.askModels {
		// Discovered once now, so a wrong source fails at start; then again
		// at the start of every round after the first.
		if p.plan, err = discoverPlan(ctx, &c, p, infoGW, nil, log); err != nil {
			if w != nil {
				_ = w.Close(context.Background())
			}
			return err
		}
		var prev []tester.Planned // the plan the last discovery made; rounds never overlap
		planner = func(ctx context.Context) ([]tester.Planned, error) {
			if prev == nil {
				prev = p.plan
				return prev, nil
			}
			ps, err := discoverPlan(ctx, &c, p, infoGW, prev, log)
			if err != nil {
				return nil, err
			}
			prev = ps
			return ps, nil
		}
	}
	prober := probe.New(probe.Config{Timeouts: c.Timeouts, MaxResponseBytes: c.MaxResponse, VerifyTLS: c.VerifyTLS, Dial: dial, Preparer: prep, StallAfter: c.StallAfter, Live: c.Live})

	// 0 when scheduled: the scheduler gives each round the period less a
	// margin, counted from the round's start (tick + region offset).
	deadline := c.RoundDeadline
	var spread time.Duration
	if !c.Once {
		// Cloudprober's rule: spread first probes over a tenth of the period.
		spread = min(p.period/10, time.Minute)
	}
	// Round records go to the rounds table; without a store they are
	// only logged.
	rounds := &roundStore{log: log}
	if w != nil {
		rounds.conn, rounds.db = storeConn, c.CH.Database
	}
	defer rounds.flush(context.Background(), 10*time.Second)
	sh, err := c.Shard.open(ctx, p.region.Code, deadline, p.period, log)
	if err != nil {
		if w != nil {
			_ = w.Close(context.Background())
		}
		return err
	}
	var claim tester.Claimer // nil: this instance probes everything
	if sh != nil {
		defer sh.Close()
		claim = sh
	}
	var done, total atomic.Int64
	total.Store(int64(len(p.plan)))
	t, err := tester.New(tester.Config{
		Region: p.region, TesterID: p.testerID, Prober: prober, Concurrency: c.Concurrency,
		Spread: spread, Deadline: deadline, Log: log, Control: p.control, Timeouts: p.timeouts, PlanTimeout: discoveryTimeout,
		Rounds: rounds.add, Claim: claim, Skipped: func(reason string) { metrics.RoundsSkipped.WithLabelValues(reason).Inc() },
		Observe: func(r results.Result) {
			metrics.Observe(r)
			if c.Once {
				n := done.Add(1)
				fmt.Fprintf(stderr, "[%d/%d] %s %s %s: %s %s %s\n", n, total.Load(), short(r.Orchestrator), r.Pipeline, r.Model,
					r.Outcome, r.ErrorClass, r.Total.Round(time.Millisecond))
			}
		},
	})
	if err != nil {
		return err
	}

	if sh != nil {
		// A claim made as ZooKeeper dropped, found ours later: its one row.
		sh.OnOrphan(func(slot time.Time, pl tester.Planned) {
			r := t.Excused(slot, pl, tester.CodeClaimUnconfirmed, "this instance's claim reached ZooKeeper as the connection dropped; it learned it held the claim after the probe's time")
			if err := sink.Write(context.WithoutCancel(ctx), r); err != nil {
				log.Error("result not queued", "probe_id", r.ProbeID, "err", err)
			}
		})
	}

	var health healthState
	// The metrics listener outlives the rounds: it stops last, after the
	// store is flushed, so a scrape during shutdown still answers.
	httpCtx, stopHTTP := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHTTP()
	waitHTTP, err := serveHTTP(httpCtx, c.Listen, reg, &health, p, log)
	if err != nil {
		if w != nil {
			_ = w.Close(context.Background())
		}
		return err
	}

	var runErr error
	if c.Once {
		log.Info("one round", "tester_id", p.testerID, "probes", len(p.plan))
		sum := t.RunRound(ctx, time.Now().Truncate(time.Second), p.plan, sink)
		health.round(sum)
		metrics.Round(sum)
		rounds.add(sum.Record(p.region.Code, p.testerID))
		printTable(stdout, sum)
		if sum.SinkErrs > 0 {
			runErr = fmt.Errorf("%d results could not be queued for the store", sum.SinkErrs)
		}
	} else {
		log.Info("tester running", "tester_id", p.testerID, "probes_per_round", len(p.plan), "period", p.period,
			"offset", time.Duration(p.region.Offset*float64(p.period)))
		t.SchedulePlanner(ctx, p.sched, p.period, planner, sink, func(s tester.Summary) { metrics.Round(s); health.round(s) })
		log.Info("scheduling stopped; in-flight probes drained")
	}

	if sh != nil {
		sh.Close() // leave the region, and write the rows of claims settled now, before the store closes
	}
	if w != nil {
		fctx, cancel := context.WithTimeout(context.Background(), c.ShutdownWait)
		if err := w.Close(fctx); err != nil {
			runErr = errors.Join(runErr, fmt.Errorf("store: %w", err))
		}
		cancel()
	}
	stopHTTP()
	if err := waitHTTP(); err != nil {
		log.Warn("metrics listener", "err", err)
	}
	return runErr
}

// lockedWriter serializes writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

type discard struct{}

func (discard) Write(context.Context, results.Result) error { return nil }

// SimulatedDial adds the region's network distance to every connection, so
// a local demo's regions measure different connect times (-simulate-rtt,
// and the demo's in-process testers).
func SimulatedDial(rtt time.Duration) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		t := time.NewTimer(rtt)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return d.DialContext(ctx, network, addr)
	}
}

type healthState struct {
	mu   sync.Mutex
	last tester.Summary
	at   time.Time
}

func (h *healthState) round(s tester.Summary) {
	h.mu.Lock()
	h.last, h.at = s, time.Now()
	h.mu.Unlock()
}

// serveHTTP starts /metrics and /healthz until ctx ends; wait returns once
// the listener has drained. /healthz fails once no round has ended for three
// periods: the scheduler is stuck.
func serveHTTP(ctx context.Context, addr string, reg *prometheus.Registry, h *healthState, p *parsed, log *slog.Logger) (wait func() error, err error) {
	if addr == "" {
		return func() error { return nil }, nil
	}
	started := time.Now()
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		h.mu.Lock()
		at, last := h.at, h.last
		h.mu.Unlock()
		since := at
		if since.IsZero() {
			since = started
		}
		w.Header().Set("Content-Type", "application/json")
		if p.period > 0 && time.Since(since) > 3*p.period+time.Minute {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprintf(w, `{"region":%q,"tester_id":%q,"last_round":%q,"last_round_end":%q}`+"\n",
			p.region.Code, p.testerID, last.RoundID, at.UTC().Format(time.RFC3339))
	})
	_, wait, err = httpserve.Start(ctx, httpserve.NewServer(mux, 10*time.Second), addr, 5*time.Second, log.With("serves", "/metrics /healthz"))
	if err != nil {
		return nil, fmt.Errorf("-listen: %w", err)
	}
	return wait, nil
}

func short(addr string) string {
	if len(addr) > 10 {
		return addr[:6] + "…" + addr[len(addr)-4:]
	}
	return addr
}

// printTable writes the round's results, one probe a line, sorted.
func printTable(out io.Writer, s tester.Summary) {
	rows := append([]results.Result(nil), s.Results...)
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].Orchestrator != rows[j].Orchestrator {
			return rows[i].Orchestrator < rows[j].Orchestrator
		}
		return rows[i].Pipeline+rows[i].Model < rows[j].Pipeline+rows[j].Model
	})
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	ms := func(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond)) }
	fmt.Fprintln(tw, "ORCHESTRATOR\tPIPELINE\tMODEL\tOUTCOME\tERROR\tDISCOVERY_MS\tCONNECT_MS\tUPLOAD_MS\tSERVER_MS\tORCH_MS\tDOWNLOAD_MS\tMEDIA_MS\tTOTAL_MS\tWALL_MS")
	for _, r := range rows {
		e := "-"
		if r.ErrorClass != "" {
			e = r.ErrorClass + "/" + r.ErrorCode
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Orchestrator, r.Pipeline, r.Model, r.Outcome, e,
			ms(r.Discovery), ms(r.Connect), ms(r.Upload), ms(r.Server), ms(r.OrchProcessing), ms(r.Download), ms(r.Media), ms(r.Total), ms(r.Wall))
	}
	_ = tw.Flush()
	c := s.Counts()
	fmt.Fprintf(out, "round %s: %d probes, %d success, %d failure, %d excused, %s\n", s.RoundID, len(s.Results),
		c[results.Success], c[results.Failure], c[results.Excused], s.Took.Round(time.Millisecond))
}

// roundStore writes round records to the rounds table. A record that cannot
// be written now is kept and tried again with the next one (and at exit),
// so a store outage delays the record instead of losing it.
type roundStore struct {
	log  *slog.Logger
	conn driver.Conn
	db   string

	mu      sync.Mutex
	pending []results.Round
}

func (s *roundStore) add(r results.Round) {
	s.mu.Lock()
	s.pending = append(s.pending, r)
	s.mu.Unlock()
	s.flush(context.Background(), 10*time.Second)
}

func (s *roundStore) flush(ctx context.Context, within time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) == 0 {
		return
	}
	if s.conn == nil {
		s.pending = nil
		return
	}
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	if err := resultsdb.InsertRounds(ctx, s.conn, s.db, s.pending); err != nil {
		s.log.Warn("round records not stored yet; retried with the next round", "rounds", len(s.pending), "err", err)
		if len(s.pending) > 10000 {
			s.pending = s.pending[len(s.pending)-10000:]
		}
		return
	}
	s.pending = nil
}
