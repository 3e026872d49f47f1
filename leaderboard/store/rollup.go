package store

import (
	"context"
	"sort"
	"strings"
	"time"

	"github.com/lpgauge/lpgauge/internal/chclient"
	"github.com/lpgauge/lpgauge/regions"
)

// The read methods of ClickHouse answer from the hourly rollups
// (probe_rollup_hourly, migration 0003) for every whole hour of a window and
// from raw probe_results only for the partial hours at its edges, so the
// answer is the raw computation's, to the microsecond, whatever since/until
// a caller sends, while a 24 h request reads 22 rollup hours instead of
// every probe.

func (c *ClickHouse) rollupTable() string { return c.db + ".probe_rollup_hourly" }

// countsTable is probe_rollup_counts_hourly (migration 0008): the counts of
// rollupTable ordered by hour before region and orchestrator, so a window
// of one model (or of all) reads only its own hours.
func (c *ClickHouse) countsTable() string { return c.db + ".probe_rollup_counts_hourly" }

// byTimeTable is probe_results_by_time_fine (migration 0010; 0008's
// probe_results_by_time with 1,024-row granules): the raw columns a
// window's partial edge hours need, ordered by (pipeline, model,
// started_at), so an edge reads its own minutes, not the model's every row
// of those days as probe_results (started_at last in its key) would.
func (c *ClickHouse) byTimeTable() string { return c.db + "." + byTimeName }

const byTimeName = "probe_results_by_time_fine"

// byOrchestratorTable is probe_results_by_orchestrator (migration 0009):
// the raw columns of raw_stats and history ordered (orchestrator, pipeline,
// model, region, started_at) in 1,024-row granules, so one orchestrator's
// hour is read as one small granule, not one 8,192-row granule per region
// holding every orchestrator of the model as in probe_results.
func (c *ClickHouse) byOrchestratorTable() string { return c.db + ".probe_results_by_orchestrator" }

// orchestratorTable is probe_rollup_orchestrator_hourly (migration 0009): the
// hourly rollups one orchestrator's history and aggregates read, ordered by
// orchestrator first in 256-row granules.
func (c *ClickHouse) orchestratorTable() string { return c.db + ".probe_rollup_orchestrator_hourly" }

// edgeTable is where a read of f takes its raw edge rows: one
// orchestrator's lie together in probe_results_by_orchestrator, everyone's
// by time in probe_results_by_time_fine.
func (c *ClickHouse) edgeTable(f Filter, skipOrchestrator bool) string {
	if f.Orchestrator != "" && !skipOrchestrator {
		return c.byOrchestratorTable()
	}
	return c.byTimeTable()
}

// aggregatesTable is where Aggregates reads f's whole hours: one
// orchestrator's rows lie together in orchestratorTable, everyone's by hour
// in countsTable.
func (c *ClickHouse) aggregatesTable(f Filter) (table, name string) {
	if f.Orchestrator != "" {
		return c.orchestratorTable(), "probe_rollup_orchestrator_hourly"
	}
	return c.countsTable(), "probe_rollup_counts_hourly"
}

// span is a window cut at whole hours: [from, to) (unix seconds) is read from
// rollups; the rest of the window, when any, from raw rows.
type span struct {
	from, to uint32
	// edges reports whether part of the window lies outside [from, to).
	edges bool
}

func (s span) whole() bool { return s.from < s.to }

const hourMs = uint64(time.Hour / time.Millisecond)

// splitWindow finds the whole hours inside w. The window is inclusive at
// millisecond precision (like where), so hour H is whole when
// since ≤ H and H + 1 h − 1 ms ≤ until.
func splitWindow(w Window) span {
	since, until := unixMilli(w.Since), unixMilli(w.Until)
	if until < since {
		return span{edges: true}
	}
	from := (since + hourMs - 1) / hourMs * hourMs
	to := (until + 1) / hourMs * hourMs
	if from >= to {
		return span{edges: true}
	}
	return span{
		from:  uint32(from / 1000),
		to:    uint32(to / 1000),
		edges: since < from || until+1 > to,
	}
}

// rollupWhere is where for the rollup table: whole hours [s.from, s.to) and
// f's dimensions.
func rollupWhere(f Filter, s span, skipOrchestrator bool) (string, []any) {
	conds := []string{"hour >= toDateTime(?)", "hour < toDateTime(?)"}
	args := []any{s.from, s.to}
	return dimensions(conds, args, f, skipOrchestrator)
}

// edgeWhere is where for the raw rows of f's window outside the whole hours.
func edgeWhere(f Filter, s span, skipOrchestrator bool) (string, []any) {
	w, args := where(f, skipOrchestrator)
	if s.whole() {
		w += " AND (started_at < toDateTime(?) OR started_at >= toDateTime(?))"
		args = append(args, s.from, s.to)
	}
	return w, args
}

func dimensions(conds []string, args []any, f Filter, skipOrchestrator bool) (string, []any) {
	if f.Pipeline != "" {
		conds = append(conds, "pipeline = ?")
		args = append(args, f.Pipeline)
	}
	if f.Model != "" {
		conds = append(conds, "model = ?")
		args = append(args, f.Model)
	}
	if f.Region != "" && f.Region != regions.Global {
		conds = append(conds, "region = ?")
		args = append(args, f.Region)
	}
	if f.Orchestrator != "" && !skipOrchestrator {
		conds = append(conds, "orchestrator = ?")
		args = append(args, f.Orchestrator)
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// unionAll joins the parts that apply: UNION ALL of rollup and raw edges.
func unionAll(s span, rollup, edge string, rollupArgs, edgeArgs []any) (string, []any) {
	switch {
	case s.whole() && s.edges:
		return rollup + " UNION ALL " + edge, append(append([]any{}, rollupArgs...), edgeArgs...)
	case s.whole():
		return rollup, rollupArgs
	default:
		return edge, edgeArgs
	}
}

// Aggregates implements Store from rollups plus raw edges.
func (c *ClickHouse) Aggregates(ctx context.Context, f Filter) ([]Aggregate, error) {
	return c.aggregates(ctx, f, splitWindow(f.Window))
}

func (c *ClickHouse) aggregates(ctx context.Context, f Filter, s span) ([]Aggregate, error) {
	regionCol := "region"
	if f.Region == regions.Global {
		regionCol = chclient.Quote(regions.Global)
	}
	rollup, rargs := c.wholeSums(f, s)
	ew, eargs := edgeWhere(f, s, false)
	edge := "SELECT orchestrator, " + regionCol + " AS reg, pipeline, model," +
		" countIf(outcome != 'excused') AS p, countIf(outcome = 'success') AS ok, countIf(outcome = 'excused') AS ex," +
		" sumIf(total_us, outcome = 'success' AND total_us > 0) AS rs, countIf(outcome = 'success' AND total_us > 0) AS rn," +
		" max(started_at) AS lt" +
		" FROM " + c.edgeTable(f, false) + ew + " GROUP BY orchestrator, reg, pipeline, model"
	whole, cached, err := c.wholeFromCache(ctx, f, s)
	if err != nil {
		return nil, err
	}
	if cached {
		var edges []aggPartial
		if s.edges {
			if edges, err = c.scanPartials(ctx, edge, eargs); err != nil {
				return nil, err
			}
		}
		return sumPartials(whole, edges), nil
	}
	inner, args := unionAll(s, rollup, edge, rargs, eargs)
	q := "SELECT orchestrator, reg, pipeline, model, sum(p) AS probes, sum(ok), sum(ex), sum(rs), sum(rn), max(lt)" +
		" FROM (" + inner + ")" +
		" GROUP BY orchestrator, reg, pipeline, model HAVING probes > 0" +
		" ORDER BY orchestrator, reg, pipeline, model"
	return c.scanAggregates(ctx, q, args)
}

// wholeSums is the query of Aggregates' sums over f's whole hours.
func (c *ClickHouse) wholeSums(f Filter, s span) (string, []any) {
	regionCol := "region"
	if f.Region == regions.Global {
		regionCol = chclient.Quote(regions.Global)
	}
	table, _ := c.aggregatesTable(f)
	rw, rargs := rollupWhere(f, s, false)
	return "SELECT orchestrator, " + regionCol + " AS reg, pipeline, model," +
		" countIfMerge(probes) AS p, countIfMerge(successes) AS ok, countIfMerge(excused) AS ex," +
		" sumIfMerge(rtt_sum_us) AS rs, countIfMerge(rtt_n) AS rn, maxMerge(last_tested) AS lt" +
		" FROM " + table + rw + " GROUP BY orchestrator, reg, pipeline, model", rargs
}

// wholeFromCache gives Aggregates' sums over f's whole hours from the
// whole-hour cache (read and kept there on a miss) and true, or false when
// the cache does not apply (no whole hours, or not a MergeTree here).
func (c *ClickHouse) wholeFromCache(ctx context.Context, f Filter, s span) ([]aggPartial, bool, error) {
	if !s.whole() {
		return nil, false, nil
	}
	_, tableName := c.aggregatesTable(f)
	t, cached, err := c.wholeHoursToken(ctx, s, tableName)
	if err != nil || !cached {
		return nil, false, err
	}
	key := cacheKey("aggregates", f, s)
	if e := c.cache.get(key, t); e != nil {
		return e.aggs, true, nil
	}
	q, args := c.wholeSums(f, s)
	whole, err := c.scanPartials(ctx, q, args)
	if err != nil {
		return nil, false, err
	}
	c.cache.put(key, &wholeHoursEntry{token: t, aggs: whole, values: len(whole)})
	return whole, true, nil
}

// MedianRTTs implements Store from the model rollups (migration 0008) plus
// raw edges. Each (pipeline, model, region, hour) row keeps its first 4096
// successful times exactly and a t-digest of all of them. When every row of
// the window is complete the median is exact, interpolated the way Postgres
// percentile_cont(0.5) does it (leaderboard-serverless), as the raw
// computation is; otherwise it is the t-digest's median of the rows and the
// edges (leaderboard/README.md, "Rollups": error measured at the fleet size).
// Either way a 24 h window reads at most 24 × regions rows per model.
func (c *ClickHouse) MedianRTTs(ctx context.Context, f Filter) (map[Key]float64, error) {
	return c.medianRTTs(ctx, f, splitWindow(f.Window))
}

func (c *ClickHouse) modelTable() string { return c.db + ".probe_rollup_model_hourly" }

func (c *ClickHouse) medianRTTs(ctx context.Context, f Filter, s span) (map[Key]float64, error) {
	rw, rargs := rollupWhere(f, s, true)
	// One row per rollup row (parts not yet merged are merged here), so the
	// completeness of each row's bounded array can be checked.
	rollup := "SELECT pipeline, model, countIfMerge(rtt_n) AS rn, groupArrayIfMerge(" + rttFewMax + ")(rtt_few) AS v," +
		" quantileTDigestIfMergeState(0.5)(rtt_q) AS q" +
		" FROM " + c.modelTable() + rw + " GROUP BY pipeline, model, region, hour"
	ew, eargs := edgeWhere(f, s, true)
	edge := "SELECT pipeline, model, countIf(outcome = 'success' AND total_us > 0) AS rn," +
		" groupArrayIf(total_us, outcome = 'success' AND total_us > 0) AS v," +
		" quantileTDigestIfState(0.5)(total_us, outcome = 'success' AND total_us > 0) AS q" +
		" FROM " + c.edgeTable(f, true) + ew + " GROUP BY pipeline, model"
	inner, args := unionAll(s, rollup, edge, rargs, eargs)
	// exact: every row holds all its values; only then are the arrays
	// concatenated and sorted (an incomplete key sorts nothing).
	q := "SELECT pipeline, model, n," +
		" if(exact = 1, if(n % 2 = 1, toFloat64(a[intDiv(n + 1, 2)]), (toFloat64(a[intDiv(n, 2)]) + toFloat64(a[intDiv(n, 2) + 1])) / 2), toFloat64(d)) AS median_us" +
		" FROM (SELECT pipeline, model, sum(rn) AS n, min(length(v) = rn) AS exact," +
		" arraySort(if(exact = 1, groupArrayArray(v), emptyArrayUInt64())) AS a, quantileTDigestIfMerge(0.5)(q) AS d" +
		" FROM (" + inner + ") GROUP BY pipeline, model) WHERE n > 0"
	return c.scanMedians(ctx, q, args)
}

// Pipelines implements Store from rollups plus raw edges.
func (c *ClickHouse) Pipelines(ctx context.Context, f Filter) ([]Pipeline, error) {
	f.Pipeline, f.Model, f.Orchestrator = "", "", ""
	if f.Region == regions.Global {
		f.Region = ""
	}
	return c.pipelines(ctx, f, splitWindow(f.Window))
}

func (c *ClickHouse) pipelines(ctx context.Context, f Filter, s span) ([]Pipeline, error) {
	rw, rargs := rollupWhere(f, s, true)
	rollup := "SELECT pipeline, model, region FROM " + c.countsTable() + rw +
		" AND pipeline != '' GROUP BY pipeline, model, region HAVING countIfMerge(probes) > 0"
	ew, eargs := edgeWhere(f, s, true)
	edge := "SELECT pipeline, model, region FROM " + c.edgeTable(f, true) + ew +
		" AND outcome != 'excused' AND pipeline != '' GROUP BY pipeline, model, region"
	inner, args := unionAll(s, rollup, edge, rargs, eargs)
	q := "SELECT pipeline, arraySort(groupUniqArray(model)), arraySort(groupUniqArray(region))" +
		" FROM (" + inner + ") GROUP BY pipeline ORDER BY pipeline"
	ps, err := c.scanPipelines(ctx, q, args)
	for i := range ps {
		sort.Strings(ps[i].Models)
		sort.Strings(ps[i].Regions)
	}
	return ps, err
}
