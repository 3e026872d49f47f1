package tester

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/internal/chclient"
	"github.com/lpgauge/lpgauge/internal/chtest"
	"github.com/lpgauge/lpgauge/tester/orchtest"
	"github.com/lpgauge/lpgauge/tester/writer"
)

// ClickHouse killed for several rounds and then restarted: every probe of
// every round ends up stored exactly once, none lost while the store was
// down and none doubled by the retries that followed.
func TestStoreDownForRoundsThenRestart(t *testing.T) {
	srv := chtest.Server(t) // private even when LPGAUGE_CLICKHOUSE_ADDR is set: killed below
	db := chtest.NewDB(t)
	var targets []string
	for i := 0; i < 3; i++ {
		targets = append(targets, orchtest.New(t, orchtest.Behaviour{}).Target())
	}
	broken := orchtest.New(t, orchtest.Behaviour{Status: 500, Body: "boom"})
	ts, err := ParseTargets(strings.Join(append(targets, broken.Target()), ","))
	if err != nil {
		t.Fatal(err)
	}
	ms, _ := ParseModels("text-to-image:a,text-to-image:b")
	plan, _ := Plan(ts, ms)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cfg := db.Config()
	cfg.ReadTimeout = 3 * time.Second
	conn, err := chclient.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sp, err := writer.OpenSpool(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	w := writer.NewSpooled(writer.Table{Conn: conn, DB: db.Name}, sp,
		writer.Config{BatchSize: 5, FlushInterval: 50 * time.Millisecond, InsertTimeout: 2 * time.Second, MaxBackoff: 300 * time.Millisecond}, nil, writer.Hooks{})

	tt := newTester(t, nil)
	// One round lands while the store is up, three while it is down.
	slot := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	sum := tt.RunRound(ctx, slot, plan, w)
	if sum.SinkErrs != 0 {
		t.Fatalf("%d results refused", sum.SinkErrs)
	}
	srv.Kill()
	for i := 1; i <= 3; i++ {
		if sum := tt.RunRound(ctx, slot.Add(time.Duration(i)*time.Minute), plan, w); sum.SinkErrs != 0 {
			t.Fatalf("round %d: %d results refused while the store was down", i, sum.SinkErrs)
		}
	}
	time.Sleep(500 * time.Millisecond) // let the writer fail and back off a few times
	ns, err := srv.Restart(ctx)
	if err != nil {
		t.Fatalf("restart ClickHouse: %v", err)
	}
	chtest.ReplaceServer(ns)
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}

	check, err := chclient.Open(ctx, db.Config())
	if err != nil {
		t.Fatal(err)
	}
	defer check.Close()
	var ids, total, rounds uint64
	if err := check.QueryRow(ctx, "SELECT uniqExact(probe_id), count(), uniqExact(round_id) FROM "+db.Name+".probe_results").Scan(&ids, &total, &rounds); err != nil {
		t.Fatal(err)
	}
	want := uint64(4 * len(plan))
	if ids != want || total != want || rounds != 4 {
		t.Errorf("stored %d rows, %d probe ids, %d rounds; want %d, %d, 4", total, ids, rounds, want, want)
	}
}
