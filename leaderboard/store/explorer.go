package store

// Aggregates the explorer-api needs beyond the Store interface: the server
// time percentiles its leaderboard rows show (p50/p95, which Latencies does
// not give) with the warm/cold probe split, and an orchestrator's newest
// probe ever, so a profile can say "last tested 3 days ago" instead of 404
// when the window is empty. Methods on *ClickHouse only, so the Store
// interface (and any second backend) is unchanged.

import (
	"context"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/lpgauge/lpgauge/leaderboard/score"
)

// ServerTime is one (orchestrator, region, pipeline, model)'s server-time
// percentiles over its successful probes, and how many of its scored probes
// found the model warm or cold.
type ServerTime struct {
	Orchestrator, Region, Pipeline, Model string
	// Samples counts successful probes with a measured server time.
	Samples uint64
	// P50 and P95 are percentile_cont of server time, seconds.
	P50, P95 float64
	// WarmProbes and ColdProbes count scored probes by model state.
	WarmProbes, ColdProbes uint64
}

// ServerTimes groups scored probes matching f per (orchestrator, region,
// pipeline, model); Region GLOBAL pools regions as in Aggregates.
func (c *ClickHouse) ServerTimes(ctx context.Context, f Filter) ([]ServerTime, error) {
	w, args := where(f, false)
	q := "SELECT orchestrator, " + regionColumn(f) + " AS reg, pipeline, model," +
		" groupArrayIf(server_us, outcome = 'success' AND server_us > 0)," +
		" countIf(outcome != 'excused' AND warm = 1), countIf(outcome != 'excused' AND warm = 0)" +
		" FROM " + c.table() + w + " AND outcome != 'excused'" +
		" GROUP BY orchestrator, reg, pipeline, model ORDER BY orchestrator, reg, pipeline, model"
	return queryRows(ctx, c, "server times", q, args, func(rows driver.Rows) (ServerTime, error) {
		var s ServerTime
		var us []uint64
		err := rows.Scan(&s.Orchestrator, &s.Region, &s.Pipeline, &s.Model, &us, &s.WarmProbes, &s.ColdProbes)
		xs := seconds(us)
		s.Samples = uint64(len(xs))
		s.P50, s.P95 = score.Percentile(xs, 0.5), score.Percentile(xs, 0.95)
		return s, err
	})
}

// LastProbe is the start time of orchestrator's newest probe of any outcome
// (excused included: it shows the tester tried), ever; zero when it was
// never probed.
func (c *ClickHouse) LastProbe(ctx context.Context, orchestrator string) (time.Time, error) {
	cctx, cancel := c.ctx(ctx)
	defer cancel()
	var n uint64
	var t time.Time
	err := c.conn.QueryRow(cctx, "SELECT count(), max(started_at) FROM "+c.table()+" WHERE orchestrator = ?", orchestrator).Scan(&n, &t)
	if err != nil {
		return time.Time{}, unavailable("last probe", err)
	}
	if n == 0 {
		return time.Time{}, nil
	}
	return t.UTC(), nil
}
