package resultsdb_test

import (
	"context"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/lpgauge/lpgauge/internal/chtest"
	"github.com/lpgauge/lpgauge/internal/results"
	"github.com/lpgauge/lpgauge/internal/results/resultsdb"
)

// roundsSuite writes a run round and a skipped one and reads them back the
// way an operator looking for missing rounds would.
func roundsSuite(t *testing.T, conn driver.Conn, db string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	slot := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	rows := []results.Round{
		{RoundID: "SIN/2026-03-01T12:00:00Z", Region: "SIN", TesterID: "0xaa", Slot: slot,
			StartedAt: slot.Add(8400 * time.Millisecond), FinishedAt: slot.Add(11900 * time.Millisecond),
			Planned: 10, Started: 9, Rows: 10, Excused: 3, TesterFaults: 2, Overran: true},
		{RoundID: "SIN/2026-03-01T12:00:12Z", Region: "SIN", TesterID: "0xaa", Slot: slot.Add(12 * time.Second),
			SkipReason: "previous_round_running"},
	}
	if err := resultsdb.InsertRounds(ctx, conn, db, rows); err != nil {
		t.Fatal(err)
	}
	q := "SELECT round_id, toUInt64(planned), toUInt64(started), toUInt64(result_rows), toUInt64(excused), toUInt64(tester_faults)," +
		" overran, skipped, skip_reason, toUInt64(started_at_ms), toUInt64(finished_at_ms)" +
		" FROM " + db + ".rounds WHERE region = 'SIN' ORDER BY slot"
	rs, err := conn.Query(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	var got []string
	for rs.Next() {
		var id, reason string
		var planned, started, n, excused, faults, sms, fms uint64
		var overran, skipped uint8
		if err := rs.Scan(&id, &planned, &started, &n, &excused, &faults, &overran, &skipped, &reason, &sms, &fms); err != nil {
			t.Fatal(err)
		}
		got = append(got, id+" "+reason)
		if id == rows[0].RoundID && (planned != 10 || started != 9 || n != 10 || excused != 3 || faults != 2 || overran != 1 || skipped != 0 || sms != 400 || fms != 900) {
			t.Errorf("run round read back as planned %d started %d rows %d excused %d faults %d overran %d skipped %d ms %d/%d",
				planned, started, n, excused, faults, overran, skipped, sms, fms)
		}
		if id == rows[1].RoundID && (skipped != 1 || reason != "previous_round_running") {
			t.Errorf("skipped round read back as skipped %d reason %q", skipped, reason)
		}
	}
	if len(got) != 2 {
		t.Errorf("read back %v, want both rounds", got)
	}
}

// On the ClickHouse 18.16 server.
func TestRoundsOnServer(t *testing.T) {
	db := chtest.NewDB(t)
	roundsSuite(t, db.Conn, db.Name)
}
