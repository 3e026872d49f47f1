package schemas_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/lpgauge/lpgauge/internal/chclient"
	"github.com/lpgauge/lpgauge/internal/chserver"
	"github.com/lpgauge/lpgauge/internal/results"
	"github.com/lpgauge/lpgauge/internal/results/resultsdb"
	"github.com/lpgauge/lpgauge/internal/zkserver"
	"github.com/lpgauge/lpgauge/schemas"
)

const clusterName = "lpgauge"

// TestClusterKeepsEveryResultWhileAReplicaIsDown is the promise of the
// replicated schema: testers keep writing while one replica is down, and
// when it returns every replica holds every result exactly once. Beside it
// runs the schema that does not keep the promise (one-server tables on each
// replica, the writer writing to every replica it can reach), and the same
// check must catch what that one loses.
func TestClusterKeepsEveryResultWhileAReplicaIsDown(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	zk := startZooKeeper(ctx, t)
	servers, err := chserver.StartCluster(ctx, clusterName, 2, []string{zk.Addr})
	if err != nil {
		t.Fatalf("start two ClickHouse replicas: %v", err)
	}
	a, b := servers[0], servers[1]
	t.Cleanup(func() { a.Stop(); b.Stop() }) // b is replaced after its restart
	connA, connB := open(ctx, t, a), open(ctx, t, b)

	const replicated, unreplicated = "cluster_replicated", "cluster_unreplicated"
	if _, err := schemas.Migrate(ctx, connA, schemas.Options{Database: replicated, Cluster: clusterName}); err != nil {
		t.Fatalf("migrate on the cluster: %v", err)
	}
	// ON CLUSTER reached B: it has the local table and the Distributed one.
	for _, table := range []string{"probe_results_local", "probe_results", "schema_migrations"} {
		if n := count(ctx, t, connB, "SELECT count() FROM system.tables WHERE database = '"+replicated+"' AND name = '"+table+"'"); n != 1 {
			t.Fatalf("replica B lacks %s.%s after migrating through A", replicated, table)
		}
	}
	for _, conn := range []driver.Conn{connA, connB} {
		if _, err := schemas.Migrate(ctx, conn, schemas.Options{Database: unreplicated}); err != nil {
			t.Fatalf("migrate one-server schema: %v", err)
		}
	}

	var all, whileDown []string
	write := func(conn driver.Conn, db string, rows []results.Result) {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if err := resultsdb.Insert(wctx, conn, db, rows); err != nil {
			t.Fatalf("insert %d rows into %s while a replica is down: %v", len(rows), db, err)
		}
	}

	// Both replicas up.
	rows := probeBatch(0, 50)
	write(connA, replicated, rows)
	write(connA, unreplicated, rows)
	write(connB, unreplicated, rows)
	all = append(all, ids(rows)...)

	// B down: the testers keep writing through A, and every write succeeds.
	b.Kill()
	connB.Close()
	for i := 1; i <= 5; i++ {
		rows := probeBatch(i, 50)
		write(connA, replicated, rows)
		write(connA, unreplicated, rows) // B's copy cannot be written
		all = append(all, ids(rows)...)
		whileDown = append(whileDown, ids(rows)...)
	}

	// B back: it catches up from A.
	if b, err = b.Restart(ctx); err != nil {
		t.Fatalf("restart replica B: %v", err)
	}
	connB = open(ctx, t, b)
	caughtUp := time.Now()
	waitForRows(ctx, t, connB, replicated+".probe_results_local", len(all))
	t.Logf("replica B caught up with %d rows (%d written while it was down) in %s", len(all), len(whileDown), time.Since(caughtUp).Round(time.Millisecond))

	// The migration history is the cluster's: B, asked directly, has nothing
	// left to apply.
	if again, err := schemas.Migrate(ctx, connB, schemas.Options{Database: replicated, Cluster: clusterName}); err != nil || len(again) != 0 {
		t.Errorf("migrate through replica B after its return: applied %v, err %v; want nothing to do", again, err)
	}

	for _, r := range []struct {
		name string
		conn driver.Conn
	}{{"A", connA}, {"B", connB}} {
		c := checkExactlyOnce(ctx, t, r.conn, replicated+".probe_results_local", all)
		if !c.ok() {
			t.Errorf("replicated schema, replica %s: %s", r.name, c)
		}
		if n := count(ctx, t, r.conn, "SELECT count() FROM "+replicated+".probe_results"); n != uint64(len(all)) {
			t.Errorf("replicated schema, replica %s: the Distributed table reads %d rows, want %d", r.name, n, len(all))
		}
	}

	// The hourly rollup is written by the view on the replica that took the
	// insert and reaches the other one by replication, never by the view
	// firing again on fetched parts: each replica counts every probe once.
	for _, r := range []struct {
		name string
		conn driver.Conn
	}{{"A", connA}, {"B", connB}} {
		waitForCount(ctx, t, r.conn, "SELECT countIfMerge(probes) FROM "+replicated+".probe_rollup_hourly_local", len(all))
	}

	// The schema that does not replicate loses on B exactly what was written
	// while B was down, and the check says so.
	if c := checkExactlyOnce(ctx, t, connA, unreplicated+".probe_results", all); !c.ok() {
		t.Errorf("one-server schema, replica A (never down): %s", c)
	}
	c := checkExactlyOnce(ctx, t, connB, unreplicated+".probe_results", all)
	slices.Sort(whileDown)
	if c.ok() || !slices.Equal(c.missing, whileDown) || len(c.duplicated) > 0 || len(c.unexpected) > 0 {
		t.Errorf("one-server schema, replica B: the check found %s; want exactly the %d rows written while B was down missing", c, len(whileDown))
	}
}

func startZooKeeper(ctx context.Context, t *testing.T) *zkserver.Server {
	t.Helper()
	zk, err := zkserver.Start(ctx, zkserver.Options{})
	if errors.Is(err, zkserver.ErrNotInstalled) && os.Getenv("CI") != "true" {
		t.Skipf("SKIPPING the replicated-cluster test: %v", err)
	}
	if err != nil {
		t.Fatalf("start ZooKeeper: %v", err)
	}
	t.Cleanup(zk.Stop)
	return zk
}

func open(ctx context.Context, t *testing.T, s *chserver.Server) driver.Conn {
	t.Helper()
	conn, err := chclient.Open(ctx, chclient.Config{Addr: s.TCPAddr, ReadTimeout: 60 * time.Second})
	if err != nil {
		t.Fatalf("connect to %s: %v", s.TCPAddr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func probeBatch(batch, n int) []results.Result {
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).Add(time.Duration(batch) * time.Minute)
	rows := make([]results.Result, n)
	for i := range rows {
		slot := strconv.Itoa(batch) + "/" + strconv.Itoa(i)
		rows[i] = results.Result{
			ProbeID:      results.ProbeID("FRA", "0xtester", slot, "0xorch", "Text to image", "sd"),
			RoundID:      "FRA/" + slot,
			Region:       "FRA",
			TesterID:     "0xtester",
			Orchestrator: "0xorch",
			Pipeline:     "Text to image",
			Model:        "sd",
			StartedAt:    start.Add(time.Duration(i) * time.Second),
			Outcome:      results.Success,
			Total:        time.Duration(1+i) * time.Millisecond,
		}
	}
	id := results.BatchID(rows)
	for i := range rows {
		rows[i].BatchID = id
	}
	return rows
}

func ids(rows []results.Result) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		out[i] = r.ProbeID
	}
	return out
}

func count(ctx context.Context, t *testing.T, conn driver.Conn, q string) uint64 {
	t.Helper()
	qctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var n uint64
	if err := conn.QueryRow(qctx, q).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// waitForRows waits until table holds want rows: replication is
// asynchronous, and a returning replica first fetches the parts it missed.
func waitForRows(ctx context.Context, t *testing.T, conn driver.Conn, table string, want int) {
	t.Helper()
	waitForCount(ctx, t, conn, "SELECT count() FROM "+table, want)
}

// waitForCount waits up to 45 s for query to return want, and fails on
// anything else then (more than want included: that is a double count).
func waitForCount(ctx context.Context, t *testing.T, conn driver.Conn, query string, want int) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	var n uint64
	var err error
	for time.Now().Before(deadline) {
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = conn.QueryRow(qctx, query).Scan(&n)
		cancel()
		if err == nil && n >= uint64(want) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil || n != uint64(want) {
		t.Fatalf("%s = %d (err %v) after waiting, want %d", query, n, err, want)
	}
}

// completeness is what one replica holds against what was written.
type completeness struct {
	missing, duplicated, unexpected []string // sorted probe ids
}

func (c completeness) ok() bool {
	return len(c.missing)+len(c.duplicated)+len(c.unexpected) == 0
}

func (c completeness) String() string {
	return fmt.Sprintf("%d missing, %d stored more than once, %d never written", len(c.missing), len(c.duplicated), len(c.unexpected))
}

// checkExactlyOnce counts the rows of table by probe id and compares them
// with the ids that were written.
func checkExactlyOnce(ctx context.Context, t *testing.T, conn driver.Conn, table string, written []string) completeness {
	t.Helper()
	qctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	rows, err := conn.Query(qctx, "SELECT probe_id, count() FROM "+table+" GROUP BY probe_id")
	if err != nil {
		t.Fatalf("count %s by probe_id: %v", table, err)
	}
	defer rows.Close()
	want := map[string]bool{}
	for _, id := range written {
		want[id] = true
	}
	seen := map[string]bool{}
	var c completeness
	for rows.Next() {
		var id string
		var n uint64
		if err := rows.Scan(&id, &n); err != nil {
			t.Fatal(err)
		}
		seen[id] = true
		switch {
		case !want[id]:
			c.unexpected = append(c.unexpected, id)
		case n > 1:
			c.duplicated = append(c.duplicated, id)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for id := range want {
		if !seen[id] {
			c.missing = append(c.missing, id)
		}
	}
	slices.Sort(c.missing)
	slices.Sort(c.duplicated)
	slices.Sort(c.unexpected)
	return c
}
