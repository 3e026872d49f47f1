package store

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/lpgauge/lpgauge/internal/chclient"
	"github.com/lpgauge/lpgauge/internal/results"
	"github.com/lpgauge/lpgauge/regions"
)

// DefaultTimeout bounds a query whose context has no earlier deadline.
const DefaultTimeout = 10 * time.Second

// ClickHouse reads the probe_results table of one database and its hourly
// rollups (rollup.go; raw rows only for raw_stats and a window's edges). Queries are
// plain SQL that runs on ClickHouse 18.16 and current releases; values only
// ever travel as bound parameters.
type ClickHouse struct {
	conn    driver.Conn
	db      string
	timeout time.Duration
	// claims batches post_stats ingest and de-duplicates it (ingest.go).
	claims claimer
	limits Limits
	// cache holds the whole-hour part of recent rollup reads (rollup_cache.go).
	cache wholeHours
	// rawEngine remembers whether probe_results is a MergeTree (PREWHERE).
	rawEngine struct {
		sync.Mutex
		checked, mergeTree bool
	}
	// rollupEngine: the same for probe_rollup_hourly (history's PREWHERE).
	rollupEngine struct {
		sync.Mutex
		checked, mergeTree bool
	}
}

// NewClickHouse returns a Store over conn's database db. timeout bounds each
// query (DefaultTimeout when 0).
func NewClickHouse(conn driver.Conn, db string, timeout time.Duration) (*ClickHouse, error) {
	if !chclient.ValidIdent(db) {
		return nil, fmt.Errorf("store: invalid database name %q", db)
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	c := &ClickHouse{conn: conn, db: db, timeout: timeout}
	c.limits.defaults()
	c.claims.c = c
	c.claims.cfg.defaults()
	return c, nil
}

// Limits bound every query of this store, whatever a request asks for:
// ClickHouse refuses a query past them (ErrTooLarge) instead of the server or
// this process holding an unbounded answer. Settings of 18.16 and current
// releases; sent per query over the native protocol (the embedded chDB
// adapter ignores them).
type Limits struct {
	MaxMemoryUsage uint64 // bytes a query may use on the server (1 GiB)
	MaxResultRows  uint64 // rows an answer, or a subquery's, may have (1M)
	MaxResultBytes uint64 // bytes an answer may have (256 MiB)
}

func (l *Limits) defaults() {
	if l.MaxMemoryUsage == 0 {
		l.MaxMemoryUsage = 1 << 30
	}
	if l.MaxResultRows == 0 {
		l.MaxResultRows = 1_000_000
	}
	if l.MaxResultBytes == 0 {
		l.MaxResultBytes = 256 << 20
	}
}

// SetLimits replaces the per-query limits (zero fields keep the defaults).
func (c *ClickHouse) SetLimits(l Limits) {
	l.defaults()
	c.limits = l
}

// ErrTooLarge is a query refused for passing Limits: the request asked for
// more than one answer may hold (narrow the window).
var ErrTooLarge = errors.New("query exceeds the store's per-query limits")

func (c *ClickHouse) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx = clickhouse.Context(ctx, clickhouse.WithSettings(clickhouse.Settings{
		"max_memory_usage": int(c.limits.MaxMemoryUsage),
		"max_result_rows":  int(c.limits.MaxResultRows),
		"max_result_bytes": int(c.limits.MaxResultBytes),
	}))
	return context.WithTimeout(ctx, c.timeout)
}

func (c *ClickHouse) table() string { return c.db + ".probe_results" }

func unavailable(what string, err error) error {
	var ex *clickhouse.Exception
	if errors.As(err, &ex) {
		switch ex.Code {
		case 241, 158, 396: // MEMORY_LIMIT_EXCEEDED, TOO_MANY_ROWS, TOO_MANY_ROWS_OR_BYTES
			return fmt.Errorf("%w: %s: %w", ErrTooLarge, what, err)
		}
	}
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, what, err)
}

// where builds the WHERE clause for f. The window is compared at millisecond
// precision (started_at + started_at_ms) so fractional since/until work; the
// coarse second bounds on started_at let ClickHouse prune partitions.
func where(f Filter, skipOrchestrator bool) (string, []any) {
	conds := []string{
		"started_at >= toDateTime(?)", "started_at <= toDateTime(?)",
		"(toUInt64(started_at) * 1000 + started_at_ms) >= ?", "(toUInt64(started_at) * 1000 + started_at_ms) <= ?",
	}
	args := []any{
		unixSec(f.Since), unixSec(f.Until), unixMilli(f.Since), unixMilli(f.Until),
	}
	return dimensions(conds, args, f, skipOrchestrator)
}

func unixSec(t time.Time) uint32 {
	s := t.Unix()
	switch {
	case s < 0:
		return 0
	case s > 1<<32-1:
		return 1<<32 - 1
	}
	return uint32(s)
}

func unixMilli(t time.Time) uint64 {
	ms := t.UnixMilli()
	if ms < 0 {
		return 0
	}
	return uint64(ms)
}

// aggregatesRaw is Aggregates computed from raw rows only: the reference the
// rollup path must equal, and the benchmark's baseline.
func (c *ClickHouse) aggregatesRaw(ctx context.Context, f Filter) ([]Aggregate, error) {
	regionCol := "region"
	if f.Region == regions.Global {
		regionCol = chclient.Quote(regions.Global)
	}
	w, args := where(f, false)
	q := "SELECT orchestrator, " + regionCol + " AS reg, pipeline, model," +
		" countIf(outcome != 'excused') AS probes," +
		" countIf(outcome = 'success') AS successes," +
		" countIf(outcome = 'excused') AS excused," +
		" sumIf(total_us, outcome = 'success' AND total_us > 0) AS rtt_sum," +
		" countIf(outcome = 'success' AND total_us > 0) AS rtt_n," +
		" max(started_at) AS last_tested" +
		" FROM " + c.table() + w +
		" GROUP BY orchestrator, reg, pipeline, model HAVING probes > 0" +
		" ORDER BY orchestrator, reg, pipeline, model"
	return c.scanAggregates(ctx, q, args)
}

// scanAggregates runs q, whose columns are orchestrator, region, pipeline,
// model, probes, successes, excused, rtt sum (µs), rtt count, last tested.
func (c *ClickHouse) scanAggregates(ctx context.Context, q string, args []any) ([]Aggregate, error) {
	return queryRows(ctx, c, "aggregates", q, args, func(rows driver.Rows) (Aggregate, error) {
		var a Aggregate
		var rttSum, rttN uint64
		err := rows.Scan(&a.Orchestrator, &a.Region, &a.Pipeline, &a.Model, &a.Probes, &a.Successes, &a.Excused, &rttSum, &rttN, &a.LastTested)
		if rttN > 0 {
			a.MeanRTTSeconds = float64(rttSum) / float64(rttN) / 1e6
		}
		a.LastTested = a.LastTested.UTC()
		return a, err
	})
}

// queryRows runs q and turns each row into a T with scan; what names the
// query in the errors (a store that does not answer is ErrUnavailable).
func queryRows[T any](ctx context.Context, c *ClickHouse, what, q string, args []any, scan func(driver.Rows) (T, error)) ([]T, error) {
	var out []T
	if err := queryEach(ctx, c, what, q, args, func(rows driver.Rows) error {
		v, err := scan(rows)
		out = append(out, v)
		return err
	}); err != nil {
		return nil, err
	}
	return out, nil
}

// queryEach runs q and calls each for every row, under the store's query
// timeout; a failed query, row or scan is unavailable(what, …).
func queryEach(ctx context.Context, c *ClickHouse, what, q string, args []any, each func(driver.Rows) error) error {
	cctx, cancel := c.ctx(ctx)
	defer cancel()
	rows, err := c.conn.Query(cctx, q, args...)
	if err != nil {
		return unavailable(what, err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := each(rows); err != nil {
			return unavailable(what+": scan", err)
		}
	}
	if err := rows.Err(); err != nil {
		return unavailable(what, err)
	}
	return nil
}

// medianRTTsRaw is MedianRTTs from raw rows only. ClickHouse's median is not
// interpolated, so the two middle values of the sorted successful times are
// averaged here the way Postgres percentile_cont(0.5) does
// (leaderboard-serverless's median).
func (c *ClickHouse) medianRTTsRaw(ctx context.Context, f Filter) (map[Key]float64, error) {
	w, args := where(f, true)
	q := "SELECT pipeline, model, n," +
		" if(n % 2 = 1, toFloat64(a[intDiv(n + 1, 2)]), (toFloat64(a[intDiv(n, 2)]) + toFloat64(a[intDiv(n, 2) + 1])) / 2) AS median_us" +
		" FROM (SELECT pipeline, model, count() AS n, arraySort(groupArray(total_us)) AS a" +
		" FROM " + c.table() + w + " AND outcome = 'success' AND total_us > 0" +
		" GROUP BY pipeline, model)"
	return c.scanMedians(ctx, q, args)
}

// scanMedians runs q, whose columns are pipeline, model, n, median (µs).
func (c *ClickHouse) scanMedians(ctx context.Context, q string, args []any) (map[Key]float64, error) {
	out := map[Key]float64{}
	if err := queryEach(ctx, c, "median", q, args, func(rows driver.Rows) error {
		var k Key
		var n uint64
		var med float64
		if err := rows.Scan(&k.Pipeline, &k.Model, &n, &med); err != nil {
			return err
		}
		out[k] = med / 1e6
		return nil
	}); err != nil {
		return nil, err
	}
	return out, nil
}

// pipelinesRaw is Pipelines from raw rows only.
func (c *ClickHouse) pipelinesRaw(ctx context.Context, f Filter) ([]Pipeline, error) {
	f.Pipeline, f.Model, f.Orchestrator = "", "", ""
	if f.Region == regions.Global {
		f.Region = ""
	}
	w, args := where(f, true)
	q := "SELECT pipeline, arraySort(groupUniqArray(model)), arraySort(groupUniqArray(region))" +
		" FROM " + c.table() + w + " AND outcome != 'excused' AND pipeline != ''" +
		" GROUP BY pipeline ORDER BY pipeline"
	return c.scanPipelines(ctx, q, args)
}

// scanPipelines runs q, whose columns are pipeline, models, regions.
func (c *ClickHouse) scanPipelines(ctx context.Context, q string, args []any) ([]Pipeline, error) {
	return queryRows(ctx, c, "pipelines", q, args, func(rows driver.Rows) (Pipeline, error) {
		var p Pipeline
		err := rows.Scan(&p.ID, &p.Models, &p.Regions)
		sort.Strings(p.Models)
		sort.Strings(p.Regions)
		return p, err
	})
}

const rawColumns = "probe_id, batch_id, round_id, region, tester_id, source, orchestrator, service_uri, pipeline, model, warm," +
	" started_at, started_at_ms, toString(outcome), error_class, error_code, error_message, http_status," +
	" discovery_us, connect_us, tls_us, upload_us, server_us, download_us, media_us, total_us, orch_processing_us," +
	" conn_reused, request_bytes, response_bytes, ttft_us, output_units, input_parameters, queue_us, inference_us"

// Raw implements Store.
func (c *ClickHouse) Raw(ctx context.Context, f Filter, includeExcused bool, limit int) ([]results.Result, error) {
	if f.Region == regions.Global {
		f.Region = ""
	}
	w, args := where(f, false)
	if !includeExcused {
		w += " AND outcome != 'excused'"
	}
	if limit <= 0 {
		limit = 1000
	}
	cctx, cancel := c.ctx(ctx)
	defer cancel()
	// The filter as PREWHERE: ClickHouse reads its narrow columns first and
	// the 33 wide ones only for rows that pass. 18.16 does not move these
	// conditions by itself: one orchestrator's hour at 1M rows read 11.3 MB
	// (every column of 5 granules) as WHERE, 2.5 MB as PREWHERE. Only on a
	// MergeTree (a cluster's Distributed table keeps WHERE).
	if mt, err := c.rawIsMergeTree(cctx); err != nil {
		return nil, unavailable("raw", err)
	} else if mt {
		w = " PREWHERE " + strings.TrimPrefix(w, " WHERE ")
	}
	// One orchestrator's rows (raw_stats always names one) lie together in
	// probe_results_by_orchestrator (migration 0009).
	table := c.table()
	if f.Orchestrator != "" {
		table = c.byOrchestratorTable()
	}
	q := "SELECT " + rawColumns + " FROM " + table + w +
		" ORDER BY started_at DESC, started_at_ms DESC, probe_id LIMIT " + fmt.Sprint(limit)
	rows, err := c.conn.Query(cctx, q, args...)
	if err != nil {
		return nil, unavailable("raw", err)
	}
	defer rows.Close()
	var out []results.Result
	for rows.Next() {
		var r results.Result
		var warm, reused uint8
		var ms, status uint16
		var outcome string
		var disc, conn, tls, up, srv, down, media, total, orch, ttft, reqB, respB, queue, infer uint64
		if err := rows.Scan(&r.ProbeID, &r.BatchID, &r.RoundID, &r.Region, &r.TesterID, &r.Source, &r.Orchestrator, &r.ServiceURI, &r.Pipeline, &r.Model, &warm,
			&r.StartedAt, &ms, &outcome, &r.ErrorClass, &r.ErrorCode, &r.ErrorMessage, &status,
			&disc, &conn, &tls, &up, &srv, &down, &media, &total, &orch,
			&reused, &reqB, &respB, &ttft, &r.OutputUnits, &r.InputParameters, &queue, &infer); err != nil {
			return nil, unavailable("raw: scan", err)
		}
		r.Warm, r.ConnReused = warm == 1, reused == 1
		r.StartedAt = r.StartedAt.UTC().Add(time.Duration(ms) * time.Millisecond)
		r.Outcome = results.Outcome(outcome)
		r.HTTPStatus = int(status)
		d := func(us uint64) time.Duration { return time.Duration(us) * time.Microsecond }
		r.Discovery, r.Connect, r.TLS, r.Upload, r.Server = d(disc), d(conn), d(tls), d(up), d(srv)
		r.Download, r.Media, r.Total, r.OrchProcessing, r.TTFT = d(down), d(media), d(total), d(orch), d(ttft)
		r.RequestBytes, r.ResponseBytes = int64(reqB), int64(respB)
		r.Queue, r.Inference = d(queue), d(infer)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable("raw", err)
	}
	return out, nil
}

// rawIsMergeTree reports, once, whether probe_results is a MergeTree here
// (not a cluster's Distributed table), so PREWHERE applies.
func (c *ClickHouse) rawIsMergeTree(ctx context.Context) (bool, error) {
	c.rawEngine.Lock()
	defer c.rawEngine.Unlock()
	if !c.rawEngine.checked {
		var engine string
		if err := c.conn.QueryRow(ctx, "SELECT engine FROM system.tables WHERE database = ? AND name = 'probe_results'", c.db).Scan(&engine); err != nil {
			return false, fmt.Errorf("raw table engine: %w", err)
		}
		c.rawEngine.checked, c.rawEngine.mergeTree = true, strings.HasSuffix(engine, "MergeTree")
	}
	return c.rawEngine.mergeTree, nil
}

// Ping implements Store.
func (c *ClickHouse) Ping(ctx context.Context) error {
	cctx, cancel := c.ctx(ctx)
	defer cancel()
	var n uint64
	if err := c.conn.QueryRow(cctx, "SELECT count() FROM system.tables WHERE database = ? AND name = 'probe_results'", c.db).Scan(&n); err != nil {
		return unavailable("ping", err)
	}
	if n == 0 {
		return fmt.Errorf("%w: table %s missing (run migrations)", ErrUnavailable, c.table())
	}
	return nil
}
