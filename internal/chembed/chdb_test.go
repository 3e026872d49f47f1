//go:build chdb

package chembed

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/lpgauge/lpgauge/internal/results"
	"github.com/lpgauge/lpgauge/internal/results/resultsdb"
	"github.com/lpgauge/lpgauge/schemas"
)

const testDB = "lpgauge_test"

// open opens an embedded store in dir and closes it when the test ends.
func open(t *testing.T, dir string) driver.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	conn, err := Open(ctx, dir)
	if err != nil {
		t.Fatalf("Open(%q): %v", dir, err)
	}
	t.Cleanup(func() {
		if err := conn.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return conn
}

func migrate(t *testing.T, conn driver.Conn) {
	t.Helper()
	if _, err := schemas.Migrate(t.Context(), conn, schemas.Options{Database: testDB}); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
}

func sampleRows(start time.Time) []results.Result {
	return []results.Result{
		{
			ProbeID: results.ProbeID("FRA", "a"), RoundID: "FRA/1", Region: "fra", TesterID: "0xtester",
			Orchestrator: "0xABC", ServiceURI: "https://o.example:8935", Pipeline: "Text to image", Model: "m/1",
			Warm: true, StartedAt: start, Outcome: results.Success, HTTPStatus: 200,
			Upload: 1500 * time.Microsecond, Server: 2 * time.Second, Total: 2*time.Second + 1500*time.Microsecond,
			RequestBytes: 1 << 40, OutputUnits: 262144, InputParameters: `{"prompt":"a 'cat'\n"}`,
		},
		{
			ProbeID: results.ProbeID("FRA", "b"), RoundID: "FRA/1", Region: "FRA", TesterID: "0xtester",
			Orchestrator: "0xdef", Pipeline: "Text to image", Model: "m/1",
			StartedAt: start.Add(1500 * time.Millisecond), Outcome: results.Failure,
			ErrorClass: "http_5xx", ErrorMessage: "boom: \\ ' \" \x00 \t é", HTTPStatus: 503, Total: 3 * time.Second,
		},
	}
}

// TestResultsRoundTrip runs the real migrator and writer and reads the rows
// back with the types the leaderboard store scans into.
func TestResultsRoundTrip(t *testing.T) {
	ctx := t.Context()
	conn := open(t, "")
	migrate(t, conn)
	if applied, err := schemas.Migrate(ctx, conn, schemas.Options{Database: testDB}); err != nil || len(applied) != 0 {
		t.Fatalf("second Migrate applied %v, %v; want nothing", applied, err)
	}

	start := time.Date(2026, 3, 4, 5, 6, 7, 891_234_567, time.FixedZone("CET", 3600))
	rows := sampleRows(start)
	rows[0].BatchID, rows[1].BatchID = "batch-1", "batch-1"
	if err := resultsdb.Insert(ctx, conn, testDB, rows); err != nil {
		t.Fatalf("Insert: %v", err)
	}
	if n, err := resultsdb.BatchRows(ctx, conn, testDB, "batch-1"); err != nil || n != 2 {
		t.Fatalf("BatchRows = %d, %v; want 2", n, err)
	}
	if n, err := resultsdb.BatchRows(ctx, conn, testDB, "batch-2"); err != nil || n != 0 {
		t.Fatalf("BatchRows(unknown) = %d, %v; want 0", n, err)
	}

	r, err := conn.Query(ctx, "SELECT probe_id, orchestrator, region, warm, started_at, started_at_ms, outcome,"+
		" error_message, http_status, upload_us, server_us, total_us, request_bytes, output_units, input_parameters"+
		" FROM "+testDB+".probe_results WHERE pipeline = ? AND model = ? ORDER BY started_at", "Text to image", "m/1")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var got int
	for ; r.Next(); got++ {
		var (
			probeID, orch, region, msg, params string
			warm                               uint8
			startedAt                          time.Time
			ms, status                         uint16
			outcome                            results.Outcome
			upload, server, total, reqBytes    uint64
			units                              float64
		)
		if err := r.Scan(&probeID, &orch, &region, &warm, &startedAt, &ms, &outcome, &msg, &status, &upload, &server, &total, &reqBytes, &units, &params); err != nil {
			t.Fatalf("Scan: %v", err)
		}
		want := rows[got]
		want.Normalize()
		wantStart := want.StartedAt.Truncate(time.Second)
		if !startedAt.Equal(wantStart) || startedAt.Location().String() != "UTC" {
			t.Errorf("row %d: started_at = %v, want %v in UTC", got, startedAt, wantStart)
		}
		if int(ms) != want.StartedAt.Nanosecond()/1e6 {
			t.Errorf("row %d: started_at_ms = %d, want %d", got, ms, want.StartedAt.Nanosecond()/1e6)
		}
		if probeID != want.ProbeID || orch != want.Orchestrator || region != want.Region || outcome != want.Outcome ||
			msg != want.ErrorMessage || params != want.InputParameters || int(status) != want.HTTPStatus {
			t.Errorf("row %d: got %q %q %q %q %q %q %d", got, probeID, orch, region, outcome, msg, params, status)
		}
		if upload != uint64(want.Upload/time.Microsecond) || server != uint64(want.Server/time.Microsecond) ||
			total != uint64(want.Total/time.Microsecond) || reqBytes != uint64(want.RequestBytes) || units != want.OutputUnits ||
			(warm == 1) != want.Warm {
			t.Errorf("row %d: durations/sizes %d %d %d %d %v %d", got, upload, server, total, reqBytes, units, warm)
		}
	}
	if err := r.Err(); err != nil {
		t.Fatal(err)
	}
	if got != len(rows) {
		t.Fatalf("read %d rows, want %d", got, len(rows))
	}

	// Aggregates the way the leaderboard store reads them: quantile arrays,
	// max(DateTime), counts, with bound numeric arguments.
	var (
		qs     []float64
		last   time.Time
		probes uint64
	)
	err = conn.QueryRow(ctx, "SELECT quantiles(0.5, 0.9)(total_us), max(started_at), countIf(outcome != 'excused')"+
		" FROM "+testDB+".probe_results WHERE started_at >= toDateTime(?) AND (toUInt64(started_at) * 1000 + started_at_ms) <= ?",
		uint32(start.Unix()-10), uint64(start.Add(time.Hour).UnixMilli())).Scan(&qs, &last, &probes)
	if err != nil {
		t.Fatal(err)
	}
	if len(qs) != 2 || probes != 2 || !last.Equal(start.Add(1500*time.Millisecond).Truncate(time.Second)) {
		t.Fatalf("aggregates = %v %v %d", qs, last, probes)
	}

	// A UInt64 does not scan into *uint32 (clickhouse-go refuses it too).
	var narrow uint32
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+testDB+".probe_results").Scan(&narrow); err == nil {
		t.Error("UInt64 scanned into *uint32")
	}
}

// TestBoundArgumentsAreLiterals sends hostile strings as ? arguments and as
// batch values: each must arrive as data, byte for byte.
func TestBoundArgumentsAreLiterals(t *testing.T) {
	ctx := t.Context()
	conn := open(t, "")
	if err := conn.Exec(ctx, "CREATE TABLE t (id UInt32, s String) ENGINE = MergeTree() ORDER BY id"); err != nil {
		t.Fatal(err)
	}
	hostile := []string{
		"plain", "it's", `back\slash`, `\'`, "' OR 1=1 --", "'); DROP TABLE t; --",
		"line\nbreak\r\n", "tab\tnul\x00end", "?", "$1", "{x:String}", "/* c */", "😀 é", strings.Repeat("\\'", 50),
	}
	b, err := conn.PrepareBatch(ctx, "INSERT INTO t (id, s)")
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range hostile {
		if err := b.Append(uint32(i), s); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
	for i, s := range hostile {
		var echo string
		if err := conn.QueryRow(ctx, "SELECT ?", s).Scan(&echo); err != nil || echo != s {
			t.Errorf("SELECT ? with %q = %q, %v", s, echo, err)
		}
		var id uint32
		var n uint64
		if err := conn.QueryRow(ctx, "SELECT any(id), count() FROM t WHERE s = ?", s).Scan(&id, &n); err != nil || n != 1 || id != uint32(i) {
			t.Errorf("lookup of %q = id %d count %d, %v; want id %d count 1", s, id, n, err, i)
		}
	}
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM t").Scan(&n); err != nil || n != uint64(len(hostile)) {
		t.Fatalf("table has %d rows, %v; want %d", n, err, len(hostile))
	}
	if err := conn.QueryRow(ctx, "SELECT id FROM t WHERE s = ?", "absent").Scan(new(uint32)); !errors.Is(err, sql.ErrNoRows) {
		t.Fatalf("no row: err = %v, want sql.ErrNoRows", err)
	}
}

// TestPersistence closes a store and reopens its directory.
func TestPersistence(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
	conn, err := Open(ctx, dir)
	if err != nil {
		t.Fatal(err)
	}
	migrate(t, conn)
	rows := sampleRows(time.Now())
	if err := resultsdb.Insert(ctx, conn, testDB, rows); err != nil {
		t.Fatal(err)
	}
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	if err := conn.Ping(ctx); err == nil {
		t.Fatal("Ping after Close succeeded")
	}

	conn = open(t, dir)
	if applied, err := schemas.Migrate(ctx, conn, schemas.Options{Database: testDB}); err != nil || len(applied) != 0 {
		t.Fatalf("Migrate after reopen applied %v, %v; want nothing", applied, err)
	}
	var n uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+testDB+".probe_results").Scan(&n); err != nil || n != uint64(len(rows)) {
		t.Fatalf("after reopen: %d rows, %v; want %d", n, err, len(rows))
	}
}

// TestConcurrentQueries runs queries and inserts from several goroutines, as
// the leaderboard's HTTP handlers do (run with -race).
func TestConcurrentQueries(t *testing.T) {
	ctx := t.Context()
	conn := open(t, "")
	migrate(t, conn)
	const workers, each = 6, 5
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				rows := sampleRows(time.Now())
				for j := range rows {
					rows[j].ProbeID = fmt.Sprintf("w%d-%d-%d", w, i, j)
				}
				if err := resultsdb.Insert(ctx, conn, testDB, rows); err != nil {
					errs <- err
					return
				}
				var n uint64
				if err := conn.QueryRow(ctx, "SELECT count() FROM "+testDB+".probe_results WHERE probe_id LIKE ?", fmt.Sprintf("w%d-%%", w)).Scan(&n); err != nil {
					errs <- err
					return
				}
				if n != uint64((i+1)*len(rows)) {
					errs <- fmt.Errorf("worker %d: %d rows after %d inserts", w, n, i+1)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestConnBehaviour(t *testing.T) {
	ctx := t.Context()
	conn := open(t, "")

	if _, err := Open(ctx, ""); !errors.Is(err, ErrInUse) {
		t.Errorf("second Open = %v, want ErrInUse", err)
	}
	if err := conn.Ping(ctx); err != nil {
		t.Errorf("Ping: %v", err)
	}
	v, err := conn.ServerVersion()
	if err != nil || v.Version.Major < 20 {
		t.Errorf("ServerVersion = %+v, %v", v, err)
	}
	if err := conn.Exec(ctx, "SELEC nonsense"); err == nil {
		t.Error("bad SQL succeeded")
	}
	if _, err := conn.PrepareBatch(ctx, "INSERT INTO system.one"); err == nil {
		t.Error("PrepareBatch without a column list succeeded")
	}
	if _, err := conn.PrepareBatch(ctx, "INSERT INTO nosuch (a)"); err == nil {
		t.Error("PrepareBatch into a missing table succeeded")
	}
	if err := conn.Select(ctx, nil, "SELECT 1"); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Select = %v, want ErrUnsupported", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := conn.Ping(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Ping on cancelled context = %v", err)
	}

	r, err := conn.Query(ctx, "SELECT toNullable(toUInt32(1)) AS n, [1.5, nan] AS a, toDateTime('2026-01-02 03:04:05', 'UTC') AS ts WHERE 1")
	if err != nil {
		t.Fatal(err)
	}
	cols := r.ColumnTypes()
	if len(cols) != 3 || !cols[0].Nullable() || cols[1].DatabaseTypeName() != "Array(Float64)" || cols[2].DatabaseTypeName() != "DateTime('UTC')" {
		t.Errorf("column types: %v %v %v", cols[0].DatabaseTypeName(), cols[1].DatabaseTypeName(), cols[2].DatabaseTypeName())
	}
	if !r.Next() {
		t.Fatal("no row")
	}
	var n *uint32
	var a []float64
	var ts time.Time
	if err := r.Scan(&n, &a, &ts); err != nil {
		t.Fatal(err)
	}
	if n == nil || *n != 1 || len(a) != 2 || !math.IsNaN(a[1]) || ts.Unix() != 1767323045 {
		t.Errorf("scanned %v %v %v", n, a, ts)
	}
}

// TestMissingLibraryIsAnError: a chdb build whose libchdb.so is not where
// CHDB_LIB_PATH says gets an error naming `make deps` and CHDB_LIB_PATH from
// Open, never a panic before main (chdb-go's package init used to panic, so
// `bin/demo` run by hand died with a Go stack trace). Run in a child process:
// the library is loaded once per process.
func TestMissingLibraryIsAnError(t *testing.T) {
	if os.Getenv("CHEMBED_MISSING_LIB_CHILD") == "1" {
		_, err := Open(context.Background(), t.TempDir())
		fmt.Printf("OPEN-ERROR: %v\n", err)
		if !errors.Is(err, ErrNoLibrary) {
			os.Exit(3)
		}
		return
	}
	missing := filepath.Join(t.TempDir(), "nowhere", "libchdb.so")
	cmd := exec.Command(os.Args[0], "-test.run=^TestMissingLibraryIsAnError$", "-test.count=1")
	cmd.Env = append(os.Environ(), "CHEMBED_MISSING_LIB_CHILD=1", "CHDB_LIB_PATH="+missing)
	out, err := cmd.CombinedOutput()
	text := string(out)
	if err != nil || strings.Contains(text, "panic") {
		t.Fatalf("child with CHDB_LIB_PATH=%s: %v\n%s", missing, err, text)
	}
	for _, want := range []string{"make deps", "CHDB_LIB_PATH", missing} {
		if !strings.Contains(text, want) {
			t.Errorf("error does not name %q:\n%s", want, text)
		}
	}
}

// TestTuplesAndNaN: what Grafana panels return — arrays of (name, value)
// tuples and 0/0 ratios — scans as clickhouse-go scans it ([]any per tuple,
// NaN as a float).
func TestTuplesAndNaN(t *testing.T) {
	conn := open(t, "")
	rows, err := conn.Query(t.Context(), "SELECT [('a', toUInt64(1)), ('b', toUInt64(2))] AS g, 0/0 AS n, -(0/0) AS m, 1/0 AS i")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	if !rows.Next() {
		t.Fatal("no row")
	}
	var g [][]any
	var n, m, i float64
	if err := rows.Scan(&g, &n, &m, &i); err != nil {
		t.Fatal(err)
	}
	if len(g) != 2 || g[1][0] != "b" || g[1][1] != uint64(2) || !math.IsNaN(n) || !math.IsNaN(m) || !math.IsInf(i, 1) {
		t.Errorf("got %v %v %v %v", g, n, m, i)
	}
}
