package store

import (
	"context"
	"strings"
)

// historyRollups is History answered from the hourly rollups plus raw rows
// for the window's partial edge hours. Each rollup row keeps its first 64
// successful server times exactly and a t-digest of all of them (migration
// 0008): while every row of a bucket is complete the percentiles equal the
// raw ones exactly (TestServer/HistoryEqualsRaw holds it to historyRaw),
// past that they are the t-digest's.
//
// One orchestrator's history reads probe_rollup_orchestrator_hourly and
// probe_results_by_orchestrator (migration 0009), ordered by orchestrator
// first, so it reads its own rows' granules and no neighbour's states. The
// network's (no orchestrator) reads probe_rollup_hourly, with the filter as
// PREWHERE on a MergeTree: that table is ordered by (pipeline, model,
// region, orchestrator, hour), so without a region the key narrows only to
// the model; as PREWHERE only the narrow key columns are read for every
// row, the state columns only for granules that pass.
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
	table := c.rollupTable()
	if f.Orchestrator != "" {
		table = c.orchestratorTable()
	}
	rw, rargs := rollupWhere(f, s, false)
	if s.whole() {
		if mt, err := c.rollupIsMergeTree(ctx); err != nil {
			return nil, err
		} else if mt {
			rw = " PREWHERE " + strings.TrimPrefix(rw, " WHERE ")
		}
	}
	// One row per rollup row (unmerged parts merged here), so each row's
	// bounded array can be checked for completeness.
	rollup := "SELECT " + regionColumn(f) + " AS reg, " + rollupBucket + " AS t," +
		" countIfMerge(probes) AS p, countIfMerge(successes) AS ok, sumIfMerge(rtt_sum_us) AS rs, countIfMerge(rtt_n) AS rn," +
		" countIfMerge(server_n) AS sn, groupArrayIfMerge(" + serverFewMax + ")(server_few) AS sv," +
		" quantilesTDigestIfMergeState(0.5, 0.95)(server_pq) AS sq" +
		" FROM " + table + rw + " GROUP BY pipeline, model, region, orchestrator, hour"
	ew, eargs := edgeWhere(f, s, false)
	edge := "SELECT " + regionColumn(f) + " AS reg, " + be + " AS t," +
		" countIf(outcome != 'excused') AS p, countIf(outcome = 'success') AS ok," +
		" sumIf(total_us, outcome = 'success' AND total_us > 0) AS rs, countIf(outcome = 'success' AND total_us > 0) AS rn," +
		" countIf(outcome = 'success' AND server_us > 0) AS sn," +
		" groupArrayIf(server_us, outcome = 'success' AND server_us > 0) AS sv," +
		" quantilesTDigestIfState(0.5, 0.95)(server_us, outcome = 'success' AND server_us > 0) AS sq" +
		" FROM " + c.edgeTable(f, false) + ew + " GROUP BY reg, t"
	inner, args := unionAll(s, rollup, edge, rargs, eargs)
	q := "SELECT reg, t, sum(p) AS probes, sum(ok), sum(rs), sum(rn), min(length(sv) = sn) AS exact," +
		" arraySort(if(exact = 1, groupArrayArray(sv), emptyArrayUInt64())), quantilesTDigestIfMerge(0.5, 0.95)(sq)" +
		" FROM (" + inner + ") GROUP BY reg, t HAVING probes > 0 ORDER BY reg, t"
	return c.queryHistory(ctx, q, args)
}

// rollupIsMergeTree reports whether probe_rollup_hourly is a MergeTree on
// this server (not a cluster's Distributed table), read once.
func (c *ClickHouse) rollupIsMergeTree(ctx context.Context) (bool, error) {
	c.rollupEngine.Lock()
	defer c.rollupEngine.Unlock()
	if !c.rollupEngine.checked {
		cctx, cancel := c.ctx(ctx)
		defer cancel()
		var engine string
		if err := c.conn.QueryRow(cctx, "SELECT engine FROM system.tables WHERE database = ? AND name = 'probe_rollup_hourly'", c.db).Scan(&engine); err != nil {
			return false, unavailable("rollup engine", err)
		}
		c.rollupEngine.checked, c.rollupEngine.mergeTree = true, strings.HasSuffix(engine, "MergeTree")
	}
	return c.rollupEngine.mergeTree, nil
}
