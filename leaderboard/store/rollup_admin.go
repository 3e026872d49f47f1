package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrHourOpen is returned by RebuildRollups for a range reaching into an hour
// that has not ended: probes may still land there, and the view already
// keeps it current.
var ErrHourOpen = errors.New("store: rollups can only be rebuilt for closed hours")

// ErrRawGone is returned by RebuildRollups when rollups exist for the range
// but raw rows do not (retention dropped them): a rebuild would erase history
// it cannot restore.
var ErrRawGone = errors.New("store: no raw rows left for hours that have rollups (dropped by retention?)")

// rollupColumns and rollupSelect are the materialized view of migration 0003
// (probe_rollup_hourly_mv), kept in step with it; TestRebuildMatchesView
// fails when they drift.
const rollupColumns = "pipeline, model, region, orchestrator, hour, probes, successes, excused, rtt_sum_us, rtt_n, rtt_us," +
	" server_times, last_tested, warm_probes, warm_successes, warm_rtt_sum_us, warm_rtt_n, upload_q, server_q, download_q, total_q," +
	" server_n, server_few, server_pq"

const rollupSelect = "SELECT pipeline, model, region, orchestrator, toStartOfHour(started_at) AS hour," +
	" countIfState(outcome != 'excused') AS probes," +
	" countIfState(outcome = 'success') AS successes," +
	" countIfState(outcome = 'excused') AS excused," +
	" sumIfState(total_us, outcome = 'success' AND total_us > 0) AS rtt_sum_us," +
	" countIfState(outcome = 'success' AND total_us > 0) AS rtt_n," +
	// rtt_us and server_times are written empty since migration 0008
	// (bounded states): 18.16's view needs every column of its target.
	" groupArrayIfState(total_us, toUInt8(0)) AS rtt_us," +
	" groupArrayIfState(server_us, toUInt8(0)) AS server_times," +
	" maxState(started_at) AS last_tested," +
	" countIfState(warm = 1 AND outcome != 'excused') AS warm_probes," +
	" countIfState(warm = 1 AND outcome = 'success') AS warm_successes," +
	" sumIfState(total_us, warm = 1 AND outcome = 'success' AND total_us > 0) AS warm_rtt_sum_us," +
	" countIfState(warm = 1 AND outcome = 'success' AND total_us > 0) AS warm_rtt_n," +
	" quantilesTDigestIfState(0.5, 0.9, 0.99)(upload_us, outcome = 'success') AS upload_q," +
	" quantilesTDigestIfState(0.5, 0.9, 0.99)(server_us, outcome = 'success') AS server_q," +
	" quantilesTDigestIfState(0.5, 0.9, 0.99)(download_us, outcome = 'success') AS download_q," +
	" quantilesTDigestIfState(0.5, 0.9, 0.99)(total_us, outcome = 'success') AS total_q," +
	" countIfState(outcome = 'success' AND server_us > 0) AS server_n," +
	" groupArrayIfState(" + serverFewMax + ")(server_us, outcome = 'success' AND server_us > 0) AS server_few," +
	" quantilesTDigestIfState(0.5, 0.95)(server_us, outcome = 'success' AND server_us > 0) AS server_pq"

// modelColumns and modelSelect are the view probe_rollup_model_hourly_mv of
// migration 0008 (the network median's source), kept in step with it.
const modelColumns = "pipeline, model, region, hour, rtt_n, rtt_few, rtt_q"

const modelSelect = "SELECT pipeline, model, region, toStartOfHour(started_at) AS hour," +
	" countIfState(outcome = 'success' AND total_us > 0) AS rtt_n," +
	" groupArrayIfState(" + rttFewMax + ")(total_us, outcome = 'success' AND total_us > 0) AS rtt_few," +
	" quantileTDigestIfState(0.5)(total_us, outcome = 'success' AND total_us > 0) AS rtt_q"

// countsColumns and countsSelect are the view probe_rollup_counts_hourly_mv
// of migration 0008 (aggregated_stats and pipelines by hour), in step with it.
const countsColumns = "pipeline, model, hour, region, orchestrator, probes, successes, excused, rtt_sum_us, rtt_n, last_tested"

const countsSelect = "SELECT pipeline, model, toStartOfHour(started_at) AS hour, region, orchestrator," +
	" countIfState(outcome != 'excused') AS probes," +
	" countIfState(outcome = 'success') AS successes," +
	" countIfState(outcome = 'excused') AS excused," +
	" sumIfState(total_us, outcome = 'success' AND total_us > 0) AS rtt_sum_us," +
	" countIfState(outcome = 'success' AND total_us > 0) AS rtt_n," +
	" maxState(started_at) AS last_tested"

// byTimeColumns are probe_results_by_time_fine's (migration 0010), copied from
// probe_results by its view.
const byTimeColumns = "pipeline, model, started_at, started_at_ms, region, orchestrator, outcome, total_us"

// byOrchestratorColumns are probe_results_by_orchestrator's (migration 0009),
// copied from probe_results by its view.
const byOrchestratorColumns = "orchestrator, pipeline, model, region, started_at, started_at_ms, probe_id, batch_id, round_id, tester_id, source," +
	" service_uri, warm, outcome, error_class, error_code, error_message, http_status, discovery_us, connect_us, tls_us," +
	" upload_us, server_us, download_us, media_us, total_us, orch_processing_us, conn_reused, request_bytes, response_bytes," +
	" ttft_us, output_units, input_parameters, queue_us, inference_us"

// orchestratorColumns and orchestratorSelect are the view
// probe_rollup_orchestrator_hourly_mv of migration 0009 (one orchestrator's
// history and aggregates), kept in step with it.
const orchestratorColumns = "orchestrator, pipeline, model, region, hour, probes, successes, excused, rtt_sum_us, rtt_n, last_tested," +
	" server_n, server_few, server_pq"

const orchestratorSelect = "SELECT orchestrator, pipeline, model, region, toStartOfHour(started_at) AS hour," +
	" countIfState(outcome != 'excused') AS probes," +
	" countIfState(outcome = 'success') AS successes," +
	" countIfState(outcome = 'excused') AS excused," +
	" sumIfState(total_us, outcome = 'success' AND total_us > 0) AS rtt_sum_us," +
	" countIfState(outcome = 'success' AND total_us > 0) AS rtt_n," +
	" maxState(started_at) AS last_tested," +
	" countIfState(outcome = 'success' AND server_us > 0) AS server_n," +
	" groupArrayIfState(" + serverFewMax + ")(server_us, outcome = 'success' AND server_us > 0) AS server_few," +
	" quantilesTDigestIfState(0.5, 0.95)(server_us, outcome = 'success' AND server_us > 0) AS server_pq"

// The bounds of the exact arrays of migration 0008: a rollup row keeps at
// most this many values exactly (the rest only in its t-digest).
const (
	rttFewMax    = "4096" // per (pipeline, model, region, hour)
	serverFewMax = "64"   // per (pipeline, model, region, orchestrator, hour)
)

// RebuildRollups recomputes the rollups of the whole hours in [from, to)
// from raw rows, for example after a materialized-view failure (the raw rows
// were stored, the rollup rows were not), after a raw back-fill, or once after
// migration 0003, 0008 or 0010 on a database that already held probes. Every
// rollup table is rebuilt (probe_rollup_hourly and, since 0008,
// probe_rollup_model_hourly and probe_rollup_counts_hourly, since 0009
// probe_rollup_orchestrator_hourly), and the raw copies
// probe_results_by_time_fine (0010) and probe_results_by_orchestrator (0009)
// for the range.
//
// An hour cannot be targeted by DROP PARTITION (rollups are partitioned by
// month, and raw retention may already have dropped the month's older days),
// so the hours are deleted with one ALTER DELETE mutation, the mutation is
// awaited, and the hours are inserted again with INSERT … SELECT from raw.
// Running it again gives the same rows: it is idempotent. While it runs,
// readers may briefly see the range empty, never counted twice. Only closed
// hours are accepted (ErrHourOpen): a probe landing in the range while it
// runs would be counted by the view and by the rebuild.
//
// from is rounded down and to up to whole hours. It returns the number of
// rollup rows written.
func (c *ClickHouse) RebuildRollups(ctx context.Context, from, to time.Time, now time.Time) (uint64, error) {
	from, to = from.UTC().Truncate(time.Hour), to.UTC()
	if t := to.Truncate(time.Hour); !t.Equal(to) {
		to = t.Add(time.Hour)
	}
	if !from.Before(to) {
		return 0, fmt.Errorf("store: rebuild: empty range %s/%s", from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	if to.After(now.UTC().Truncate(time.Hour)) {
		return 0, fmt.Errorf("%w: %s ends after %s", ErrHourOpen, to.Format(time.RFC3339), now.UTC().Truncate(time.Hour).Format(time.RFC3339))
	}
	f, t := unixSec(from), unixSec(to)
	var rawN, rollN uint64
	if err := c.queryRow(ctx, "SELECT count() FROM "+c.table()+" WHERE started_at >= toDateTime(?) AND started_at < toDateTime(?)", []any{f, t}, &rawN); err != nil {
		return 0, unavailable("rebuild: count raw", err)
	}
	if err := c.queryRow(ctx, "SELECT count() FROM "+c.rollupTable()+" WHERE hour >= toDateTime(?) AND hour < toDateTime(?)", []any{f, t}, &rollN); err != nil {
		return 0, unavailable("rebuild: count rollups", err)
	}
	if rawN == 0 && rollN > 0 {
		return 0, fmt.Errorf("%w: %s/%s", ErrRawGone, from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	// Every rollup table is deleted and rebuilt: the tables of 0008 may
	// hold the range even where the hourly one does not, or the reverse.
	for _, tbl := range []string{"probe_rollup_hourly", "probe_rollup_model_hourly", "probe_rollup_counts_hourly", "probe_rollup_orchestrator_hourly",
		byTimeName, "probe_results_by_orchestrator"} {
		col := "hour"
		if strings.HasPrefix(tbl, "probe_results_") {
			col = "started_at"
		}
		// Values are formatted, not bound: ALTER is not a SELECT and the
		// server's parser takes the literal either way; both are integers.
		del := fmt.Sprintf("ALTER TABLE %s.%s DELETE WHERE %s >= toDateTime(%d) AND %s < toDateTime(%d)", c.db, tbl, col, f, col, t)
		if err := c.exec(ctx, del); err != nil {
			return 0, unavailable("rebuild: delete", err)
		}
		if err := c.awaitMutations(ctx, tbl); err != nil {
			return 0, err
		}
	}
	ins := fmt.Sprintf("INSERT INTO %s (%s) %s FROM %s WHERE started_at >= toDateTime(%d) AND started_at < toDateTime(%d)"+
		" GROUP BY pipeline, model, region, orchestrator, hour", c.rollupTable(), rollupColumns, rollupSelect, c.table(), f, t)
	if err := c.exec(ctx, ins); err != nil {
		return 0, unavailable("rebuild: insert", err)
	}
	ins = fmt.Sprintf("INSERT INTO %s (%s) %s FROM %s WHERE started_at >= toDateTime(%d) AND started_at < toDateTime(%d)"+
		" GROUP BY pipeline, model, region, hour", c.modelTable(), modelColumns, modelSelect, c.table(), f, t)
	if err := c.exec(ctx, ins); err != nil {
		return 0, unavailable("rebuild: insert model rollups", err)
	}
	ins = fmt.Sprintf("INSERT INTO %s (%s) %s FROM %s WHERE started_at >= toDateTime(%d) AND started_at < toDateTime(%d)"+
		" GROUP BY pipeline, model, hour, region, orchestrator", c.countsTable(), countsColumns, countsSelect, c.table(), f, t)
	if err := c.exec(ctx, ins); err != nil {
		return 0, unavailable("rebuild: insert count rollups", err)
	}
	ins = fmt.Sprintf("INSERT INTO %s (%s) SELECT %[2]s FROM %s WHERE started_at >= toDateTime(%d) AND started_at < toDateTime(%d)",
		c.byTimeTable(), byTimeColumns, c.table(), f, t)
	if err := c.exec(ctx, ins); err != nil {
		return 0, unavailable("rebuild: insert raw rows by time", err)
	}
	ins = fmt.Sprintf("INSERT INTO %s (%s) %s FROM %s WHERE started_at >= toDateTime(%d) AND started_at < toDateTime(%d)"+
		" GROUP BY orchestrator, pipeline, model, region, hour", c.orchestratorTable(), orchestratorColumns, orchestratorSelect, c.table(), f, t)
	if err := c.exec(ctx, ins); err != nil {
		return 0, unavailable("rebuild: insert orchestrator rollups", err)
	}
	ins = fmt.Sprintf("INSERT INTO %s (%s) SELECT %[2]s FROM %s WHERE started_at >= toDateTime(%d) AND started_at < toDateTime(%d)",
		c.byOrchestratorTable(), byOrchestratorColumns, c.table(), f, t)
	if err := c.exec(ctx, ins); err != nil {
		return 0, unavailable("rebuild: insert raw rows by orchestrator", err)
	}
	var n uint64
	if err := c.queryRow(ctx, "SELECT count() FROM (SELECT 1 FROM "+c.rollupTable()+" WHERE hour >= toDateTime(?) AND hour < toDateTime(?)"+
		" GROUP BY pipeline, model, region, orchestrator, hour)", []any{f, t}, &n); err != nil {
		return 0, unavailable("rebuild: count", err)
	}
	return n, nil
}

// awaitMutations waits until table has no unfinished mutation. 18.16 has no
// mutations_sync, so the state is polled.
func (c *ClickHouse) awaitMutations(ctx context.Context, table string) error {
	tick := 50 * time.Millisecond
	for {
		var pending uint64
		if err := c.queryRow(ctx, "SELECT count() FROM system.mutations WHERE database = ? AND table = ? AND is_done = 0", []any{c.db, table}, &pending); err != nil {
			return unavailable("await mutation", err)
		}
		if pending == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return unavailable("await mutation", ctx.Err())
		case <-time.After(tick):
		}
		if tick < time.Second {
			tick *= 2
		}
	}
}

// Dropped names one partition Retention dropped.
type Dropped struct {
	Table, Partition string
	// Newest is the newest time stored in it.
	Newest time.Time
}

// Retention drops the partitions of probe_results (and its copies by time,
// probe_results_by_time_fine and 0008's probe_results_by_time, no longer fed
// since 0010, and by orchestrator, probe_results_by_orchestrator) whose newest
// probe is older than now − raw, and of the rollup tables
// (probe_rollup_hourly, probe_rollup_model_hourly, probe_rollup_counts_hourly,
// probe_rollup_orchestrator_hourly) whose newest hour is
// older than now − rollups (a zero duration keeps that table forever). Raw is
// partitioned by day and rollups by month, so a partition goes only once all
// of it is past the limit; 18.16 has no TTL. DROP PARTITION is instant and
// idempotent, so a schedule may run it as often as it likes.
func (c *ClickHouse) Retention(ctx context.Context, now time.Time, raw, rollups time.Duration) ([]Dropped, error) {
	var out []Dropped
	for _, t := range []struct {
		name string
		keep time.Duration
	}{{"probe_results", raw}, {byTimeName, raw}, {"probe_results_by_time", raw}, {"probe_results_by_orchestrator", raw},
		{"probe_rollup_hourly", rollups}, {"probe_rollup_model_hourly", rollups}, {"probe_rollup_counts_hourly", rollups}, {"probe_rollup_orchestrator_hourly", rollups}} {
		if t.keep <= 0 {
			continue
		}
		cutoff := now.Add(-t.keep)
		parts, err := c.oldPartitions(ctx, t.name, cutoff)
		if err != nil {
			return out, err
		}
		for _, p := range parts {
			if err := c.exec(ctx, "ALTER TABLE "+c.db+"."+t.name+" DROP PARTITION "+p.Partition); err != nil {
				return out, unavailable("retention: drop "+t.name+" "+p.Partition, err)
			}
			out = append(out, p)
		}
	}
	return out, nil
}

func (c *ClickHouse) oldPartitions(ctx context.Context, table string, cutoff time.Time) ([]Dropped, error) {
	rows, err := c.conn.Query(ctx, "SELECT partition, max(max_time) AS newest FROM system.parts"+
		" WHERE database = ? AND table = ? AND active GROUP BY partition HAVING newest < toDateTime(?) ORDER BY partition",
		c.db, table, unixSec(cutoff))
	if err != nil {
		return nil, unavailable("retention: list "+table, err)
	}
	defer rows.Close()
	var out []Dropped
	for rows.Next() {
		d := Dropped{Table: table}
		if err := rows.Scan(&d.Partition, &d.Newest); err != nil {
			return nil, unavailable("retention: scan", err)
		}
		// Both tables partition by an integer (toYYYYMMDD, toYYYYMM); the
		// id is spliced into DROP PARTITION, so anything else is refused.
		if d.Partition == "" || strings.Trim(d.Partition, "0123456789") != "" {
			return nil, fmt.Errorf("store: retention: unexpected partition %q of %s", d.Partition, table)
		}
		d.Newest = d.Newest.UTC()
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable("retention: list "+table, err)
	}
	return out, nil
}

// exec and queryRow run admin statements under the caller's deadline, not
// the per-request one: a rebuild of weeks of probes takes longer than a read.
func (c *ClickHouse) exec(ctx context.Context, q string) error {
	return c.conn.Exec(ctx, q)
}

func (c *ClickHouse) queryRow(ctx context.Context, q string, args []any, dest ...any) error {
	return c.conn.QueryRow(ctx, q, args...).Scan(dest...)
}
