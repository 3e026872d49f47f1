package store

// The read methods of the additive endpoints. Each reads the raw
// probe_results table with its own query, kept apart from the compat
// methods in clickhouse.go so a rollup-backed version can replace any one of
// them without touching the others. Percentiles are computed in Go from the
// sorted samples so they match Postgres percentile_cont (score.Percentile).

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/lpgauge/lpgauge/internal/chclient"
	"github.com/lpgauge/lpgauge/internal/results"
	"github.com/lpgauge/lpgauge/leaderboard/score"
	"github.com/lpgauge/lpgauge/regions"
)

// regionColumn is region, or the constant GLOBAL when f pools regions.
func regionColumn(f Filter) string {
	if f.Region == regions.Global {
		return chclient.Quote(regions.Global)
	}
	return "region"
}

// probeMs is a probe's start time in unix milliseconds.
const probeMs = "(toUInt64(started_at) * 1000 + started_at_ms)"

// phaseColumns are the phases Latencies reports, in Phases field order.
var phaseColumns = []string{"server_us", "upload_us", "download_us", "total_us", "discovery_us", "ttft_us", "queue_us", "inference_us"}

// seconds converts microsecond samples to sorted seconds.
func seconds(us []uint64) []float64 {
	xs := make([]float64, len(us))
	for i, v := range us {
		xs[i] = float64(v) / 1e6
	}
	sort.Float64s(xs)
	return xs
}

func quantiles(us []uint64) Quantiles { return quantilesOf(seconds(us)) }

// quantilesOf summarises sorted samples.
func quantilesOf(xs []float64) Quantiles {
	return Quantiles{
		Samples: uint64(len(xs)),
		P50:     score.Percentile(xs, 0.5),
		P90:     score.Percentile(xs, 0.9),
		P99:     score.Percentile(xs, 0.99),
	}
}

// percentileSQL is score.Percentile (Postgres percentile_cont) of the
// sorted Float64 array a, in SQL, so only three numbers per phase leave the
// server instead of every sample.
func percentileSQL(a string, p float64) string {
	n := "toInt64(length(" + a + "))"
	rank := fmt.Sprintf("(%v * (%s - 1))", p, n)
	lo := "toInt64(floor(" + rank + "))"
	return "if(" + n + " = 0, 0., if(" + lo + " >= " + n + " - 1, " + a + "[" + n + "]," +
		" " + a + "[" + lo + " + 1] + (" + rank + " - " + lo + ") * (" + a + "[" + lo + " + 2] - " + a + "[" + lo + " + 1])))"
}

// Latencies implements Store. Percentiles are taken on the server from each
// split's sorted samples (seconds, like score.Percentile), the pooled "all"
// split by a second grouping without warm: what reaches this process is a
// few numbers per (orchestrator, region, pipeline, model), whatever the
// window.
func (c *ClickHouse) Latencies(ctx context.Context, f Filter) ([]Latency, error) {
	w, args := where(f, false)
	arrays := make([]string, 0, len(phaseColumns)+1)
	for _, col := range phaseColumns {
		// A phase counts where it was measured (> 0), except the queue: an
		// idle orchestrator's jobs wait 0, and leaving those out would make
		// every orchestrator look busy. The queue counts wherever the split
		// was reported at all, which inference_us > 0 marks.
		measured := col + " > 0"
		if col == "queue_us" {
			measured = "inference_us > 0"
		}
		arrays = append(arrays, "arraySort(arrayMap(x -> toFloat64(x) / 1000000, groupArrayIf("+col+", outcome = 'success' AND "+measured+")))")
	}
	// LLM generation speed: completion tokens over the streaming time
	// after the first token arrived (download), per successful probe.
	arrays = append(arrays, "arraySort(groupArrayIf(output_units * 1000000 / download_us, outcome = 'success' AND ttft_us > 0 AND download_us > 0 AND output_units > 0))")
	split := func(warmExpr, group string) string {
		q := "SELECT orchestrator, " + regionColumn(f) + " AS reg, pipeline, model, " + warmExpr + " AS w," +
			" countIf(outcome != 'excused') AS probes, countIf(outcome = 'success') AS successes"
		for i, a := range arrays {
			q += fmt.Sprintf(", %s AS a%d", a, i)
		}
		return q + " FROM " + c.table() + w + " GROUP BY " + group + " HAVING probes > 0"
	}
	// The percentiles are one expression over the list of arrays, not one
	// per (array, percentile): current releases' analyzer (chDB, what
	// `make demo` runs) took 2-12 s to plan the 27 spelled-out copies, even
	// on an empty window, and the profile page asks this twice per request.
	names := make([]string, len(arrays))
	for i := range arrays {
		names[i] = fmt.Sprintf("a%d", i)
	}
	list := "[" + strings.Join(names, ", ") + "]"
	q := "SELECT orchestrator, reg, pipeline, model, w, probes, successes," +
		" arrayMap(a -> toUInt64(length(a)), " + list + ")," +
		" arrayMap(a -> [" + percentileSQL("a", 0.5) + ", " + percentileSQL("a", 0.9) + ", " + percentileSQL("a", 0.99) + "], " + list + ")"
	q += " FROM (" + split("toUInt8(warm)", "orchestrator, reg, pipeline, model, w") +
		" UNION ALL " + split("toUInt8(2)", "orchestrator, reg, pipeline, model") + ")" +
		" ORDER BY orchestrator, reg, pipeline, model, w"
	args = append(append([]any{}, args...), args...)
	cctx, cancel := c.ctx(ctx)
	defer cancel()
	rows, err := c.conn.Query(cctx, q, args...)
	if err != nil {
		return nil, unavailable("latencies", err)
	}
	defer rows.Close()
	type key struct{ o, r, p, m string }
	byKey := map[key]*Latency{}
	var order []key
	for rows.Next() {
		var k key
		var warm uint8
		var probes, successes uint64
		var samples []uint64
		var ps [][]float64
		if err := rows.Scan(&k.o, &k.r, &k.p, &k.m, &warm, &probes, &successes, &samples, &ps); err != nil {
			return nil, unavailable("latencies: scan", err)
		}
		if len(samples) != len(arrays) || len(ps) != len(arrays) {
			return nil, unavailable("latencies: scan", fmt.Errorf("%d sample counts and %d percentile lists, want %d", len(samples), len(ps), len(arrays)))
		}
		var qs [9]Quantiles
		for i := range qs {
			if len(ps[i]) != 3 {
				return nil, unavailable("latencies: scan", fmt.Errorf("%d percentiles, want 3", len(ps[i])))
			}
			qs[i] = Quantiles{Samples: samples[i], P50: ps[i][0], P90: ps[i][1], P99: ps[i][2]}
		}
		l := byKey[k]
		if l == nil {
			l = &Latency{Orchestrator: k.o, Region: k.r, Pipeline: k.p, Model: k.m}
			byKey[k] = l
			order = append(order, k)
		}
		sp := Split{Probes: probes, Successes: successes, TokensPerSecond: qs[8],
			Phases: Phases{Server: qs[0], Upload: qs[1], Download: qs[2], Total: qs[3], Discovery: qs[4], TTFT: qs[5], Queue: qs[6], Inference: qs[7]}}
		switch warm {
		case 1:
			l.Warm = sp
		case 0:
			l.Cold = sp
		default:
			l.All = sp
		}
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable("latencies", err)
	}
	out := make([]Latency, 0, len(order))
	for _, k := range order {
		out = append(out, *byKey[k])
	}
	return out, nil
}

// RegionsWithData implements Store.
func (c *ClickHouse) RegionsWithData(ctx context.Context, f Filter) ([]string, error) {
	f.Region = ""
	w, args := where(f, false)
	q := "SELECT DISTINCT region FROM " + c.table() + w + " AND outcome != 'excused' ORDER BY region"
	var out []string
	if err := queryEach(ctx, c, "regions", q, args, func(rows driver.Rows) error {
		var r string
		if err := rows.Scan(&r); err != nil {
			return err
		}
		out = append(out, r)
		return nil
	}); err != nil {
		return nil, err
	}
	return out, nil
}

func bucketExpr(b Bucket) (string, error) {
	switch b {
	case Hour:
		return "toStartOfHour(started_at)", nil
	case Day:
		return "toStartOfDay(started_at)", nil
	}
	return "", fmt.Errorf("store: unknown bucket %q", b)
}

// History implements Store: whole hours from the rollups, the window's
// partial edge hours from raw rows (historyRollups).
func (c *ClickHouse) History(ctx context.Context, f Filter, b Bucket) ([]HistoryPoint, error) {
	return c.historyRollups(ctx, f, b)
}

// historyRaw answers History from raw rows only: the reference the rollup
// path is held to in tests and the baseline of the benchmark.
func (c *ClickHouse) historyRaw(ctx context.Context, f Filter, b Bucket) ([]HistoryPoint, error) {
	be, err := bucketExpr(b)
	if err != nil {
		return nil, err
	}
	w, args := where(f, false)
	q := "SELECT " + regionColumn(f) + " AS reg, " + be + " AS t," +
		" countIf(outcome != 'excused') AS probes, countIf(outcome = 'success')," +
		" sumIf(total_us, outcome = 'success' AND total_us > 0), countIf(outcome = 'success' AND total_us > 0)," +
		" toUInt8(1), arraySort(groupArrayIf(server_us, outcome = 'success' AND server_us > 0))," +
		" quantilesTDigestIf(0.5, 0.95)(server_us, outcome = 'success' AND server_us > 0)" +
		" FROM " + c.table() + w +
		" GROUP BY reg, t HAVING probes > 0 ORDER BY reg, t"
	return c.queryHistory(ctx, q, args)
}

// queryHistory runs a history query, raw or rollup, whose rows are (region,
// bucket start, scored probes, successes, RTT sum µs, RTT count, whether the
// server times are complete, the sorted successful server times µs, their
// t-digest p50 and p95), and turns them into points: percentiles exact
// (interpolated, score.Percentile) from complete times, else the t-digest's.
func (c *ClickHouse) queryHistory(ctx context.Context, q string, args []any) ([]HistoryPoint, error) {
	return queryRows(ctx, c, "history", q, args, func(rows driver.Rows) (HistoryPoint, error) {
		var p HistoryPoint
		var rttSum, rttN uint64
		var exact uint8
		var server []uint64
		var digest []float32
		err := rows.Scan(&p.Region, &p.Start, &p.Probes, &p.Successes, &rttSum, &rttN, &exact, &server, &digest)
		p.Start = p.Start.UTC()
		if rttN > 0 {
			p.MeanRTTSeconds = float64(rttSum) / float64(rttN) / 1e6
		}
		if exact == 1 || len(digest) != 2 {
			xs := seconds(server)
			p.ServerP50, p.ServerP95 = score.Percentile(xs, 0.5), score.Percentile(xs, 0.95)
		} else {
			p.ServerP50, p.ServerP95 = float64(digest[0])/1e6, float64(digest[1])/1e6
		}
		return p, err
	})
}

// BucketMedians implements Store.
func (c *ClickHouse) BucketMedians(ctx context.Context, f Filter, b Bucket) (map[time.Time]float64, error) {
	be, err := bucketExpr(b)
	if err != nil {
		return nil, err
	}
	w, args := where(f, true)
	q := "SELECT " + be + " AS t, groupArray(total_us) FROM " + c.table() + w +
		" AND outcome = 'success' AND total_us > 0 GROUP BY t"
	out := map[time.Time]float64{}
	if err := queryEach(ctx, c, "bucket medians", q, args, func(rows driver.Rows) error {
		var t time.Time
		var us []uint64
		if err := rows.Scan(&t, &us); err != nil {
			return err
		}
		out[t.UTC()] = quantiles(us).P50
		return nil
	}); err != nil {
		return nil, err
	}
	return out, nil
}

// Errors implements Store.
func (c *ClickHouse) Errors(ctx context.Context, f Filter) ([]ErrorGroup, error) {
	w, args := where(f, false)
	q := "SELECT toString(outcome) AS o, " + regionColumn(f) + " AS reg, pipeline, model, error_class, error_code," +
		" count() AS n, argMax(error_message, " + probeMs + "), max(started_at)" +
		" FROM " + c.table() + w + " AND outcome != 'success'" +
		" GROUP BY o, reg, pipeline, model, error_class, error_code" +
		" ORDER BY n DESC, o, reg, pipeline, model, error_class, error_code"
	return queryRows(ctx, c, "errors", q, args, func(rows driver.Rows) (ErrorGroup, error) {
		var g ErrorGroup
		var o string
		err := rows.Scan(&o, &g.Region, &g.Pipeline, &g.Model, &g.ErrorClass, &g.ErrorCode, &g.Count, &g.LastMessage, &g.LastSeen)
		g.Outcome, g.LastSeen = results.Outcome(o), g.LastSeen.UTC()
		return g, err
	})
}

// FailureStreaks implements Store.
func (c *ClickHouse) FailureStreaks(ctx context.Context, f Filter) (map[string]uint64, error) {
	w, args := where(f, false)
	// One pass, no JOIN: the failures newer than the newest success (0 when
	// none). The old form joined an unaliased subquery, which 18.16 accepts
	// and current releases refuse (Code 206, ALIAS_REQUIRED), so the profile
	// page failed on the embedded store.
	// (18.16 loses a subquery column that only a lambda reads, so the
	// aggregates sit inside the lambda's call.)
	q := "SELECT orchestrator, toUInt64(arrayCount(x -> x > maxIf(" + probeMs + ", outcome = 'success')," +
		" groupArrayIf(" + probeMs + ", outcome = 'failure'))) FROM " + c.table() + w +
		" AND outcome != 'excused' GROUP BY orchestrator"
	out := map[string]uint64{}
	if err := queryEach(ctx, c, "failure streaks", q, args, func(rows driver.Rows) error {
		var o string
		var n uint64
		if err := rows.Scan(&o, &n); err != nil {
			return err
		}
		out[o] = n
		return nil
	}); err != nil {
		return nil, err
	}
	return out, nil
}

// ServiceURIs implements Store.
func (c *ClickHouse) ServiceURIs(ctx context.Context, f Filter) (map[string]string, error) {
	w, args := where(f, false)
	q := "SELECT orchestrator, argMax(service_uri, " + probeMs + ") FROM " + c.table() + w +
		" AND service_uri != '' GROUP BY orchestrator"
	out := map[string]string{}
	if err := queryEach(ctx, c, "service uris", q, args, func(rows driver.Rows) error {
		var o, uri string
		if err := rows.Scan(&o, &uri); err != nil {
			return err
		}
		out[o] = uri
		return nil
	}); err != nil {
		return nil, err
	}
	return out, nil
}
