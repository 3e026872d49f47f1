package store

import (
	"context"

	"github.com/lpgauge/lpgauge/leaderboard/score"
)

// historyRollups is History answered from the hourly rollups plus raw rows
// for the window's partial edge hours; server_times keeps every successful
// server time, so the percentiles equal the raw ones exactly
// (TestServer/HistoryEqualsRaw holds it to historyRaw).
func (c *ClickHouse) historyRollups(ctx context.Context, f Filter, b Bucket) ([]HistoryPoint, error) {
	be, err := bucketExpr(b)
	if err != nil {
		return nil, err
	}
	s := splitWindow(f.Window)
	rollupBucket := "hour"
	if b == Day {
		rollupBucket = "toStartOfDay(hour)"
	}
	rw, rargs := rollupWhere(f, s, false)
	rollup := "SELECT " + regionColumn(f) + " AS reg, " + rollupBucket + " AS t," +
		" countIfMerge(probes) AS p, countIfMerge(successes) AS ok, sumIfMerge(rtt_sum_us) AS rs, countIfMerge(rtt_n) AS rn," +
		" groupArrayIfMerge(server_times) AS sv" +
		" FROM " + c.rollupTable() + rw + " GROUP BY reg, t"
	ew, eargs := edgeWhere(f, s, false)
	edge := "SELECT " + regionColumn(f) + " AS reg, " + be + " AS t," +
		" countIf(outcome != 'excused') AS p, countIf(outcome = 'success') AS ok," +
		" sumIf(total_us, outcome = 'success' AND total_us > 0) AS rs, countIf(outcome = 'success' AND total_us > 0) AS rn," +
		" groupArrayIf(server_us, outcome = 'success' AND server_us > 0) AS sv" +
		" FROM " + c.table() + ew + " GROUP BY reg, t"
	inner, args := unionAll(s, rollup, edge, rargs, eargs)
	q := "SELECT reg, t, sum(p) AS probes, sum(ok), sum(rs), sum(rn), arraySort(groupArrayArray(sv))" +
		" FROM (" + inner + ") GROUP BY reg, t HAVING probes > 0 ORDER BY reg, t"
	cctx, cancel := c.ctx(ctx)
	defer cancel()
	rows, err := c.conn.Query(cctx, q, args...)
	if err != nil {
		return nil, unavailable("history", err)
	}
	defer rows.Close()
	var out []HistoryPoint
	for rows.Next() {
		var p HistoryPoint
		var rttSum, rttN uint64
		var server []uint64
		if err := rows.Scan(&p.Region, &p.Start, &p.Probes, &p.Successes, &rttSum, &rttN, &server); err != nil {
			return nil, unavailable("history: scan", err)
		}
		p.Start = p.Start.UTC()
		if rttN > 0 {
			p.MeanRTTSeconds = float64(rttSum) / float64(rttN) / 1e6
		}
		xs := seconds(server)
		p.ServerP50, p.ServerP95 = score.Percentile(xs, 0.5), score.Percentile(xs, 0.95)
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable("history", err)
	}
	return out, nil
}
