package store

import (
	"context"
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
	return c.queryHistory(ctx, q, args)
}
