package store

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/lpgauge/lpgauge/internal/chtest"
)

// TestAggregatedStatsReadsAFractionOfTheWindow: aggregated_stats over the
// last 24 h (Aggregates + MedianRTTs, cold: no in-process cache) of one
// model on a fleet of 500 orchestrators × 2 regions probed every 5 minutes
// reads less than half of the model's raw rows in the window, counted by
// ClickHouse itself (the native protocol's progress packets). Before
// migration 0008 its partial edge hours came from probe_results, whose key
// has started_at last, so each edge read every row of the model in the
// window's days and the request read more rows than raw rows alone would.
// Server only: the embedded adapter sends no progress packets.
func TestAggregatedStatsReadsAFractionOfTheWindow(t *testing.T) {
	db := chtest.NewDB(t)
	ctx := context.Background()
	now := time.Now().UTC()
	const orchs, regs, round = 500, 2, 300
	combos := orchs * regs
	n := combos * (26 * 3600 / round) // 26 h of rounds
	load := fmt.Sprintf("INSERT INTO %[1]s.probe_results"+
		" (probe_id, region, orchestrator, pipeline, model, warm, started_at, started_at_ms, outcome, total_us, server_us, source)"+
		" SELECT toString(number), ['FRA', 'LAX'][combo %% %[2]d + 1], concat('0xreads', toString(intDiv(combo, %[2]d))),"+
		" 'Text to image', 'm', 1, toDateTime(%[3]d - intDiv(number, %[4]d) * %[5]d - combo %% %[5]d), toUInt16(h %% 1000),"+
		" CAST(if(h %% 10 = 0, 'failure', 'success') AS Enum8('success' = 1, 'failure' = 2, 'excused' = 3)),"+
		" 500000 + h %% 9500000, 100000 + h %% 900000, 'test'"+
		" FROM (SELECT number, number %% %[4]d AS combo, intHash64(number) AS h FROM system.numbers LIMIT %[6]d)",
		db.Name, regs, now.Unix(), combos, round, n)
	if err := db.Conn.Exec(ctx, load); err != nil {
		t.Fatalf("load %d rows: %v", n, err)
	}
	f := Filter{Window: Window{now.Add(-24 * time.Hour), now}, Pipeline: "Text to image", Model: "m"}
	st := newStore(t, db)
	st.cache.checked, st.cache.enabled = true, false // cold: every request reads the rollups
	var inWindow uint64
	if err := db.Conn.QueryRow(ctx, "SELECT count() FROM "+db.Name+".probe_results WHERE started_at >= toDateTime(?) AND started_at <= toDateTime(?)",
		unixSec(f.Since), unixSec(f.Until)).Scan(&inWindow); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var read uint64
	pctx := clickhouse.Context(ctx, clickhouse.WithProgress(func(p *clickhouse.Progress) {
		mu.Lock()
		read += p.Rows
		mu.Unlock()
	}))
	aggs, err := st.Aggregates(pctx, f)
	if err != nil {
		t.Fatal(err)
	}
	med, err := st.MedianRTTs(pctx, f)
	if err != nil {
		t.Fatal(err)
	}
	if len(aggs) != combos || med[Key{"Text to image", "m"}] == 0 {
		t.Fatalf("fixture: %d aggregates (want %d), medians %v", len(aggs), combos, med)
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("aggregated_stats 24 h read %d rows; %d raw rows in the window", read, inWindow)
	if read == 0 || read > inWindow/2 {
		t.Errorf("aggregated_stats 24 h read %d rows, want under half of the %d raw rows in the window", read, inWindow)
	}
}
