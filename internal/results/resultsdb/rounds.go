package resultsdb

import (
	"context"
	"fmt"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/lpgauge/lpgauge/internal/chclient"
	"github.com/lpgauge/lpgauge/internal/results"
)

// RoundColumns is the column list of every INSERT into rounds.
const RoundColumns = "round_id, region, tester_id, slot, started_at, started_at_ms, finished_at, finished_at_ms, " +
	"planned, started, result_rows, excused, tester_faults, overran, skipped, skip_reason"

func ms(t time.Time) uint16 { return uint16(t.Nanosecond() / int(time.Millisecond)) }

// u32 is a count as its UInt32 column holds it, negative as 0.
func u32(n int) uint32 { return uint32(nonNeg(int64(n))) }

// InsertRounds writes round records in one batch.
func InsertRounds(ctx context.Context, conn driver.Conn, db string, rows []results.Round) error {
	if len(rows) == 0 {
		return nil
	}
	if !chclient.ValidIdent(db) {
		return fmt.Errorf("insert rounds: invalid database %q", db)
	}
	batch, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".rounds ("+RoundColumns+")")
	if err != nil {
		return fmt.Errorf("insert rounds: prepare: %w", err)
	}
	defer batch.Abort() //nolint:errcheck // no-op after Send
	for i, r := range rows {
		started, finished := r.StartedAt.UTC(), r.FinishedAt.UTC()
		if r.StartedAt.IsZero() {
			started = time.Unix(0, 0).UTC()
		}
		if r.FinishedAt.IsZero() {
			finished = time.Unix(0, 0).UTC()
		}
		if err := batch.Append(r.RoundID, r.Region, r.TesterID, r.Slot.UTC(), started, ms(started), finished, ms(finished),
			u32(r.Planned), u32(r.Started), u32(r.Rows), u32(r.Excused), u32(r.TesterFaults), b2u(r.Overran),
			b2u(r.SkipReason != ""), r.SkipReason); err != nil {
			return fmt.Errorf("insert rounds: append row %d: %w", i, err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("insert rounds: send %d rows: %w", len(rows), err)
	}
	return nil
}
