package store

import (
	"context"
	"strings"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/lpgauge/lpgauge/internal/chclient"
	"github.com/lpgauge/lpgauge/regions"
)

// ScoreReader answers what scoring one filter needs, Aggregates and
// MedianRTTs, in one read (ClickHouse.AggregatesAndMedians).
type ScoreReader interface {
	AggregatesAndMedians(ctx context.Context, f Filter) ([]Aggregate, map[Key]float64, error)
}

// ScoreInputs is what aggregated_stats, perf_scores and the Explorer's
// leaderboard score: Aggregates(f) and, when any, MedianRTTs(f). A store
// that is a ScoreReader answers both in one read; any other is asked twice,
// the median only when there is an aggregate to score against it. medians
// is nil when aggs is empty.
func ScoreInputs(ctx context.Context, st interface {
	Aggregates(context.Context, Filter) ([]Aggregate, error)
	MedianRTTs(context.Context, Filter) (map[Key]float64, error)
}, f Filter) (aggs []Aggregate, medians map[Key]float64, err error) {
	if r, ok := st.(ScoreReader); ok {
		return r.AggregatesAndMedians(ctx, f)
	}
	if aggs, err = st.Aggregates(ctx, f); err != nil || len(aggs) == 0 {
		return aggs, nil, err
	}
	medians, err = st.MedianRTTs(ctx, f)
	return aggs, medians, err
}

// AggregatesAndMedians is Aggregates(f) and MedianRTTs(f) (nil when there
// is no aggregate), the raw edge rows of f's window read once for both: one
// query (scoreQuery) reads probe_results_by_time_fine's edge rows, grouped
// per (orchestrator, region, pipeline, model) with the sums Aggregates adds
// up and the t-digest MedianRTTs merges, the whole hours' sums from
// probe_rollup_counts_hourly (or the whole-hour cache) and the model rows'
// counts and t-digests from probe_rollup_model_hourly. Where every time of
// a model is kept exactly (no rollup row past its bound: small fleets, short
// windows) the median must be the exact one, and MedianRTTs' query reads
// it; at the fleet size that is never the case, and one query answers.
// Until this, aggregated_stats read its edge rows twice, once per method,
// and every model row's exact times though the t-digest answered
// (leaderboard/README.md, "Benchmark"). With an orchestrator the two read
// different rows (its own for the sums, everyone's for the median), so it
// asks the two methods.
func (c *ClickHouse) AggregatesAndMedians(ctx context.Context, f Filter) ([]Aggregate, map[Key]float64, error) {
	if f.Orchestrator != "" {
		aggs, err := c.Aggregates(ctx, f)
		if err != nil || len(aggs) == 0 {
			return aggs, nil, err
		}
		medians, err := c.MedianRTTs(ctx, f)
		return aggs, medians, err
	}
	s := splitWindow(f.Window)
	// The whole hours' sums from the cache when it applies (the same entry
	// as Aggregates'); otherwise the query reads them.
	whole, cached, err := c.wholeFromCache(ctx, f, s)
	if err != nil {
		return nil, nil, err
	}
	q, args := c.scoreQuery(f, s, !cached)
	var parts []aggPartial
	medians := map[Key]float64{}
	exact := map[Key]bool{}
	if err := queryEach(ctx, c, "aggregates and median", q, args, func(rows driver.Rows) error {
		var p aggPartial
		var has, ex uint8
		var n uint64
		var med float64
		if err := rows.Scan(&p.pipeline, &p.model, &has, &p.orchestrator, &p.region,
			&p.probes, &p.successes, &p.excused, &p.rttSum, &p.rttN, &p.lastTested, &n, &ex, &med); err != nil {
			return err
		}
		if has == 1 {
			parts = append(parts, p)
		}
		k := Key{p.pipeline, p.model}
		switch {
		case n > 0 && ex == 1:
			exact[k] = true
		case n > 0:
			medians[k] = med / 1e6
		}
		return nil
	}); err != nil {
		return nil, nil, err
	}
	aggs := sumPartials(whole, parts)
	if len(aggs) == 0 {
		return nil, nil, nil
	}
	if len(exact) > 0 {
		// Every time of these models is at hand (no rollup row past its
		// bound): the exact median, read as MedianRTTs reads it.
		m, err := c.medianRTTs(ctx, f, s)
		if err != nil {
			return nil, nil, err
		}
		for k := range exact {
			if v, ok := m[k]; ok {
				medians[k] = v
			}
		}
	}
	return aggs, medians, nil
}

// scoreQuery is AggregatesAndMedians' one query for f (no orchestrator):
// one row per aggregate partial (has = 1: the edges' sums, and the whole
// hours' when counts) of each (pipeline, model), each row carrying the
// model's successful-time count, whether its median can be exact, and the
// t-digest's median; a model with no partial gets one row with has = 0.
//
// Its parts, UNION ALL'ed with the same columns:
//   - counts: probe_rollup_counts_hourly's whole hours, as Aggregates reads
//     them (no times: an empty t-digest);
//   - model: probe_rollup_model_hourly's whole hours, one row per (region,
//     hour) as MedianRTTs reads them, without their exact times (rtt_few):
//     a row holds them all exactly when its count is at most the bound
//     (groupArrayIf(4096) keeps the first 4096), so the count says whether
//     the median can be exact without reading them. At 1,000 orchestrators
//     × 10 models × 4 regions every row is past the bound, and a day's rows
//     (one granule, read whole) hold 27 MB of rtt_few uncompressed;
//   - edges: the raw rows outside the whole hours, grouped per
//     (orchestrator, region, pipeline, model): sums and t-digest.
//
// They are summed per (pipeline, model, orchestrator, region), then per
// (pipeline, model): the t-digests merged, the partials kept as arrays,
// which LEFT ARRAY JOIN turns back into rows.
func (c *ClickHouse) scoreQuery(f Filter, s span, counts bool) (string, []any) {
	regionCol := "region"
	if f.Region == regions.Global {
		regionCol = chclient.Quote(regions.Global)
	}
	var parts []string
	var args []any
	if s.whole() && counts {
		rw, rargs := rollupWhere(f, s, false)
		parts = append(parts, "SELECT orchestrator, "+regionCol+" AS reg, pipeline, model, toUInt8(1) AS agg,"+
			" countIfMerge(probes) AS p, countIfMerge(successes) AS ok, countIfMerge(excused) AS ex,"+
			" sumIfMerge(rtt_sum_us) AS rs, countIfMerge(rtt_n) AS rn, maxMerge(last_tested) AS lt,"+
			" toUInt64(0) AS mn, toUInt8(1) AS mx, quantileTDigestIfState(0.5)(toUInt64(0), toUInt8(0)) AS q"+
			" FROM "+c.countsTable()+rw+" GROUP BY orchestrator, reg, pipeline, model")
		args = append(args, rargs...)
	}
	if s.whole() {
		rw, rargs := rollupWhere(f, s, true)
		parts = append(parts, "SELECT '' AS orchestrator, '' AS reg, pipeline, model, toUInt8(0) AS agg,"+
			" toUInt64(0) AS p, toUInt64(0) AS ok, toUInt64(0) AS ex, toUInt64(0) AS rs, toUInt64(0) AS rn, toDateTime(0, 'UTC') AS lt,"+
			" mn, toUInt8(mn <= "+rttFewMax+") AS mx, q"+
			" FROM (SELECT pipeline, model, countIfMerge(rtt_n) AS mn, quantileTDigestIfMergeState(0.5)(rtt_q) AS q"+
			" FROM "+c.modelTable()+rw+" GROUP BY pipeline, model, region, hour)")
		args = append(args, rargs...)
	}
	if s.edges {
		ew, eargs := edgeWhere(f, s, false)
		parts = append(parts, "SELECT orchestrator, "+regionCol+" AS reg, pipeline, model, toUInt8(1) AS agg,"+
			" countIf(outcome != 'excused') AS p, countIf(outcome = 'success') AS ok, countIf(outcome = 'excused') AS ex,"+
			" sumIf(total_us, outcome = 'success' AND total_us > 0) AS rs, countIf(outcome = 'success' AND total_us > 0) AS rn,"+
			" max(started_at) AS lt,"+
			" countIf(outcome = 'success' AND total_us > 0) AS mn, toUInt8(1) AS mx,"+
			" quantileTDigestIfState(0.5)(total_us, outcome = 'success' AND total_us > 0) AS q"+
			" FROM "+c.byTimeTable()+ew+" GROUP BY orchestrator, reg, pipeline, model")
		args = append(args, eargs...)
	}
	perKey := "SELECT pipeline, model, orchestrator, reg, max(agg) AS a_agg, sum(p) AS a_p, sum(ok) AS a_ok, sum(ex) AS a_ex," +
		" sum(rs) AS a_rs, sum(rn) AS a_rn, max(lt) AS a_lt," +
		" sum(mn) AS m_n, min(mx) AS m_x, quantileTDigestIfMergeState(0.5)(q) AS m_q" +
		" FROM (" + strings.Join(parts, " UNION ALL ") + ") GROUP BY pipeline, model, orchestrator, reg"
	perModel := "SELECT pipeline, model," +
		" groupArrayIf(orchestrator, a_agg = 1) AS os, groupArrayIf(reg, a_agg = 1) AS rgs," +
		" groupArrayIf(a_p, a_agg = 1) AS ps, groupArrayIf(a_ok, a_agg = 1) AS oks, groupArrayIf(a_ex, a_agg = 1) AS exs," +
		" groupArrayIf(a_rs, a_agg = 1) AS rss, groupArrayIf(a_rn, a_agg = 1) AS rns, groupArrayIf(a_lt, a_agg = 1) AS lts," +
		" sum(m_n) AS n, min(m_x) AS exact, toFloat64(quantileTDigestIfMerge(0.5)(m_q)) AS d" +
		" FROM (" + perKey + ") GROUP BY pipeline, model"
	q := "SELECT pipeline, model, toUInt8(notEmpty(os)) AS has, o, r, pr, su, exc, rsum, rcnt, last, n, exact, d" +
		" FROM (" + perModel + ")" +
		" LEFT ARRAY JOIN os AS o, rgs AS r, ps AS pr, oks AS su, exs AS exc, rss AS rsum, rns AS rcnt, lts AS last"
	return q, args
}
