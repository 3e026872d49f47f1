package store

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/internal/chtest"
	"github.com/lpgauge/lpgauge/internal/results"
	"github.com/lpgauge/lpgauge/internal/results/resultsdb"
)

// backend gives a test a fresh, migrated database. The same suite runs on
// the ClickHouse server (serverDB, here) and on embedded chDB (suite_chdb_test.go,
// -tags chdb), so SQL that one of them refuses fails the build.
type backend func(t *testing.T) *chtest.DB

func serverDB(t *testing.T) *chtest.DB { return chtest.NewDB(t) }

// suite is every store test that must hold on both backends.
var suite = []struct {
	name string
	run  func(t *testing.T, newDB backend)
}{
	{"AggregatesAndMedian", testAggregatesAndMedian},
	{"MedianInterpolatesOddAndEven", testMedianInterpolatesOddAndEven},
	{"PipelinesAndRaw", testPipelinesAndRaw},
	{"RollupsEqualRaw", testRollupsEqualRaw},
	{"GoldenMedianFromRollups", testGoldenMedianFromRollups},
	{"RebuildMatchesView", testRebuildMatchesView},
	{"Retention", testRetention},
	{"HistoryEqualsRaw", testHistoryEqualsRaw},
	{"BoundedRollupState", testBoundedRollupState},
	{"CachedWholeHoursSeeLateProbes", testCachedWholeHoursSeeLateProbes},
	{"InsightQueries", testInsightQueries},
	{"ProfileAndIngestQueries", testProfileAndIngestQueries},
	{"IngestOnceAcrossReplicas", testIngestOnceAcrossReplicas},
	{"LimitsRefuseLargeAnswers", testLimitsRefuseLargeAnswers},
	{"LatenciesOnTheServer", testLatenciesOnTheServer},
	{"QueueAndInferencePercentiles", testQueueAndInferencePercentiles},
	{"GamingFlags", testGamingFlags},
	{"LiveStats", testLiveStats},
}

func runSuite(t *testing.T, newDB backend) {
	for _, tc := range suite {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, newDB) })
	}
}

// TestServer runs the suite on the ClickHouse server (18.16 in CI).
func TestServer(t *testing.T) { runSuite(t, recorded(chtest.EngineServer, chtest.NewDB)) }

func newStore(t *testing.T, db *chtest.DB) *ClickHouse {
	t.Helper()
	st, err := NewClickHouse(db.Conn, db.Name, 0)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func insert(t *testing.T, db *chtest.DB, rows []results.Result) {
	t.Helper()
	if err := resultsdb.Insert(context.Background(), db.Conn, db.Name, rows); err != nil {
		t.Fatal(err)
	}
}

// fleet is a few hours of a small network: 3 orchestrators × 2 regions × 2
// models, one probe every 7 minutes at an odd millisecond, with failures,
// excused probes, warm and cold models and a spread of times, so every
// counter, the median and the edges of a window are exercised.
func fleet(base time.Time, hours int) []results.Result {
	var rows []results.Result
	orchs := []string{orchA, orchB, orchC}
	models := []string{sdxl, "black-forest-labs/FLUX.1-dev"}
	i := 0
	for m := 0; m < hours*60; m += 7 {
		for oi, o := range orchs {
			for ri, reg := range []string{"FRA", "LAX"} {
				for mi, model := range models {
					i++
					at := base.Add(time.Duration(m)*time.Minute + time.Duration(i%997)*time.Millisecond)
					outcome := results.Success
					switch {
					case (i+oi)%9 == 0:
						outcome = results.Failure
					case (i+ri)%13 == 0:
						outcome = results.Excused
					}
					r := probe(o, reg, at, outcome, time.Duration(500+(i*7919)%9000)*time.Millisecond+time.Duration(i%1000)*time.Microsecond)
					r.Model = model
					r.Warm = (i+mi)%3 != 0
					r.Server = r.Total / 2
					r.ProbeID = results.ProbeID(o, reg, model, at.Format(time.RFC3339Nano))
					rows = append(rows, r)
				}
			}
		}
	}
	return rows
}

// testRollupsEqualRaw: whatever window, region or orchestrator a request
// names, the rollup path answers exactly what the raw rows give.
func testRollupsEqualRaw(t *testing.T, newDB backend) {
	db := newDB(t)
	base := time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)
	insert(t, db, fleet(base, 6))
	st := newStore(t, db)
	cold := newStore(t, db)
	cold.cache.checked, cold.cache.enabled = true, false // every read reads the rollups
	ctx := context.Background()
	ms := time.Millisecond
	windows := map[string]Window{
		"unaligned":        {base.Add(37*time.Minute + 123*ms), base.Add(5*time.Hour + 11*time.Minute + 999*ms)},
		"aligned":          {base.Add(time.Hour), base.Add(4*time.Hour - ms)},
		"aligned-open-end": {base.Add(time.Hour), base.Add(4 * time.Hour)},
		"inside-one-hour":  {base.Add(2*time.Hour + 5*time.Minute), base.Add(2*time.Hour + 50*time.Minute)},
		"everything":       {base.Add(-24 * time.Hour), base.Add(24 * time.Hour)},
		"empty":            {base.Add(48 * time.Hour), base.Add(49 * time.Hour)},
	}
	filters := map[string]Filter{
		"all":            {},
		"model":          {Pipeline: t2i, Model: sdxl},
		"region":         {Pipeline: t2i, Model: sdxl, Region: "LAX"},
		"global":         {Pipeline: t2i, Model: sdxl, Region: "GLOBAL"},
		"orchestrator":   {Pipeline: t2i, Model: sdxl, Orchestrator: orchB},
		"orch-no-model":  {Orchestrator: orchC},
		"unknown-region": {Region: "SIN"},
	}
	for wn, w := range windows {
		for fn, f := range filters {
			f.Window = w
			name := wn + "/" + fn
			want, err := st.aggregatesRaw(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			got, err := st.Aggregates(ctx, f)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s: aggregates from rollups differ from raw:\n got %+v\nwant %+v", name, got, want)
			}
			if wn == "unaligned" && fn == "all" && len(want) != 12 {
				t.Errorf("fixture: want 12 aggregates, got %d", len(want))
			}
			wantMed, err := st.medianRTTsRaw(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			gotMed, err := st.MedianRTTs(ctx, f)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if !reflect.DeepEqual(gotMed, wantMed) {
				t.Errorf("%s: medians from rollups %v, raw %v", name, gotMed, wantMed)
			}
			checkScoreInputs(t, name+" (cache on)", st, f, want, wantMed)
			checkScoreInputs(t, name+" (cache off)", cold, f, want, wantMed)
			wantP, err := st.pipelinesRaw(ctx, f)
			if err != nil {
				t.Fatal(err)
			}
			gotP, err := st.Pipelines(ctx, f)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if !reflect.DeepEqual(gotP, wantP) {
				t.Errorf("%s: pipelines from rollups %+v, raw %+v", name, gotP, wantP)
			}
		}
	}
}

// checkScoreInputs: AggregatesAndMedians, the one read aggregated_stats
// makes, answers what the raw rows give for both (no median when there is
// no aggregate to score).
func checkScoreInputs(t *testing.T, name string, st *ClickHouse, f Filter, want []Aggregate, wantMed map[Key]float64) {
	t.Helper()
	got, gotMed, err := st.AggregatesAndMedians(context.Background(), f)
	if err != nil {
		t.Fatalf("%s: aggregates and medians: %v", name, err)
	}
	if len(want) == 0 {
		if len(got) != 0 || gotMed != nil {
			t.Errorf("%s: nothing to score, yet aggregates %+v, medians %v", name, got, gotMed)
		}
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s: aggregates read with the medians differ from raw:\n got %+v\nwant %+v", name, got, want)
	}
	if !reflect.DeepEqual(gotMed, wantMed) {
		t.Errorf("%s: medians read with the aggregates %v, raw %v", name, gotMed, wantMed)
	}
}

// testGoldenMedianFromRollups: leaderboard-serverless's golden case, two
// successful jobs of 8 s and 2 s, has median 5.0 s exactly when the window
// is whole hours (rollups only, no raw edge).
func testGoldenMedianFromRollups(t *testing.T, newDB backend) {
	db := newDB(t)
	hour := time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)
	insert(t, db, []results.Result{
		probe(orchA, "FRA", hour.Add(10*time.Minute), results.Success, 8*time.Second),
		probe(orchB, "LAX", hour.Add(70*time.Minute), results.Success, 2*time.Second),
		probe(orchC, "LAX", hour.Add(80*time.Minute), results.Failure, time.Second),
	})
	st := newStore(t, db)
	f := Filter{Window: Window{hour, hour.Add(2*time.Hour - time.Millisecond)}, Pipeline: t2i, Model: sdxl}
	if s := splitWindow(f.Window); !s.whole() || s.edges {
		t.Fatalf("window must be whole hours only, got %+v", s)
	}
	med, err := st.MedianRTTs(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	if m := med[Key{t2i, sdxl}]; m != 5.0 {
		t.Errorf("median of 8 s and 2 s from rollups = %v, want exactly 5", m)
	}
}

// rollupTables are every rollup table, in the order Retention drops them.
var rollupTables = []string{"probe_rollup_hourly", "probe_rollup_model_hourly", "probe_rollup_counts_hourly", "probe_rollup_orchestrator_hourly"}

// rollupRows reads every rollup table back, merged, as comparable rows.
func rollupRows(t *testing.T, db *chtest.DB) []string {
	t.Helper()
	rows, err := db.Conn.Query(context.Background(), "SELECT pipeline, model, region, orchestrator, toUInt32(hour),"+
		" countIfMerge(probes), countIfMerge(successes), countIfMerge(excused), sumIfMerge(rtt_sum_us), countIfMerge(rtt_n),"+
		" arraySort(groupArrayIfMerge(rtt_us)), arraySort(groupArrayIfMerge(server_times)), toUInt32(maxMerge(last_tested)),"+
		" countIfMerge(warm_probes), countIfMerge(warm_successes), sumIfMerge(warm_rtt_sum_us), countIfMerge(warm_rtt_n),"+
		" quantilesTDigestIfMerge(0.5, 0.9, 0.99)(total_q),"+
		" countIfMerge(server_n), arraySort(groupArrayIfMerge(64)(server_few)), quantilesTDigestIfMerge(0.5, 0.95)(server_pq)"+
		" FROM "+db.Name+".probe_rollup_hourly GROUP BY pipeline, model, region, orchestrator, hour"+
		" ORDER BY pipeline, model, region, orchestrator, hour")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var p, m, r, o string
		var h, lt uint32
		var n [10]uint64
		var rtt, srv, few []uint64
		var q, sq []float32
		if err := rows.Scan(&p, &m, &r, &o, &h, &n[0], &n[1], &n[2], &n[3], &n[4], &rtt, &srv, &lt, &n[5], &n[6], &n[7], &n[8], &q, &n[9], &few, &sq); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprint(p, m, r, o, h, n, rtt, srv, lt, q, few, sq))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return append(append(append(out, modelRollupRows(t, db)...), countRollupRows(t, db)...), orchestratorRollupRows(t, db)...)
}

// orchestratorRollupRows reads probe_rollup_orchestrator_hourly (migration
// 0009) back.
func orchestratorRollupRows(t *testing.T, db *chtest.DB) []string {
	t.Helper()
	rows, err := db.Conn.Query(context.Background(), "SELECT orchestrator, pipeline, model, region, toUInt32(hour),"+
		" countIfMerge(probes), countIfMerge(successes), countIfMerge(excused), sumIfMerge(rtt_sum_us), countIfMerge(rtt_n),"+
		" toUInt32(maxMerge(last_tested)), countIfMerge(server_n), arraySort(groupArrayIfMerge(64)(server_few)),"+
		" quantilesTDigestIfMerge(0.5, 0.95)(server_pq)"+
		" FROM "+db.Name+".probe_rollup_orchestrator_hourly GROUP BY orchestrator, pipeline, model, region, hour"+
		" ORDER BY orchestrator, pipeline, model, region, hour")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var o, p, m, r string
		var h, lt uint32
		var n [6]uint64
		var few []uint64
		var sq []float32
		if err := rows.Scan(&o, &p, &m, &r, &h, &n[0], &n[1], &n[2], &n[3], &n[4], &lt, &n[5], &few, &sq); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprint("orchestrator ", o, p, m, r, h, n, lt, few, sq))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// countRollupRows reads probe_rollup_counts_hourly (migration 0008) back.
func countRollupRows(t *testing.T, db *chtest.DB) []string {
	t.Helper()
	rows, err := db.Conn.Query(context.Background(), "SELECT pipeline, model, toUInt32(hour), region, orchestrator,"+
		" countIfMerge(probes), countIfMerge(successes), countIfMerge(excused), sumIfMerge(rtt_sum_us), countIfMerge(rtt_n),"+
		" toUInt32(maxMerge(last_tested))"+
		" FROM "+db.Name+".probe_rollup_counts_hourly GROUP BY pipeline, model, hour, region, orchestrator"+
		" ORDER BY pipeline, model, hour, region, orchestrator")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var p, m, r, o string
		var h, lt uint32
		var n [5]uint64
		if err := rows.Scan(&p, &m, &h, &r, &o, &n[0], &n[1], &n[2], &n[3], &n[4], &lt); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprint("counts ", p, m, h, r, o, n, lt))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// modelRollupRows reads probe_rollup_model_hourly (migration 0008) back.
func modelRollupRows(t *testing.T, db *chtest.DB) []string {
	t.Helper()
	rows, err := db.Conn.Query(context.Background(), "SELECT pipeline, model, region, toUInt32(hour),"+
		" countIfMerge(rtt_n), arraySort(groupArrayIfMerge(4096)(rtt_few)), quantileTDigestIfMerge(0.5)(rtt_q)"+
		" FROM "+db.Name+".probe_rollup_model_hourly GROUP BY pipeline, model, region, hour ORDER BY pipeline, model, region, hour")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var p, m, r string
		var h uint32
		var n uint64
		var few []uint64
		var q float32
		if err := rows.Scan(&p, &m, &r, &h, &n, &few, &q); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprint("model ", p, m, r, h, n, few, q))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// testRebuildMatchesView: after the rollups of closed hours are lost (the
// view failed, or the database predates migration 0003), RebuildRollups
// restores exactly what the view had written, and running it again changes
// nothing. An open hour is refused.
func testRebuildMatchesView(t *testing.T, newDB backend) {
	db := newDB(t)
	base := time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)
	insert(t, db, fleet(base, 3))
	st := newStore(t, db)
	ctx := context.Background()
	now := base.Add(30 * 24 * time.Hour)
	byView := rollupRows(t, db)
	if len(byView) == 0 {
		t.Fatal("the view wrote no rollups")
	}
	win := Filter{Window: Window{base, base.Add(3*time.Hour - time.Millisecond)}}
	want, _ := st.aggregatesRaw(ctx, win)
	wantMed, _ := st.medianRTTsRaw(ctx, win)
	// One orchestrator's reads (migration 0009's tables ordered by
	// orchestrator first) as the view left them.
	one := Filter{Window: win.Window, Orchestrator: orchB}
	wantRaw, err := st.Raw(ctx, one, true, 1000)
	if err != nil || len(wantRaw) == 0 {
		t.Fatalf("raw rows of %s before the loss: %d, %v", orchB, len(wantRaw), err)
	}
	wantHist, err := st.historyRaw(ctx, one, Hour)
	if err != nil || len(wantHist) == 0 {
		t.Fatalf("history of %s before the loss: %d, %v", orchB, len(wantHist), err)
	}

	// Lose them: drop the month of every rollup table.
	for _, tbl := range rollupTables {
		if err := db.Conn.Exec(ctx, "ALTER TABLE "+db.Name+"."+tbl+" DROP PARTITION 202603"); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := st.Aggregates(ctx, win); len(got) != 0 {
		t.Fatalf("rollups dropped, yet aggregates = %+v", got)
	}
	if got, _ := st.MedianRTTs(ctx, win); len(got) != 0 {
		t.Fatalf("model rollups dropped, yet medians = %+v", got)
	}
	// and the raw copies, as on a database that predates 0008/0009.
	for _, tbl := range []string{"probe_results_by_time", "probe_results_by_orchestrator"} {
		if err := db.Conn.Exec(ctx, "ALTER TABLE "+db.Name+"."+tbl+" DROP PARTITION 20260304"); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := st.Raw(ctx, one, true, 1000); len(got) != 0 {
		t.Fatalf("raw copy by orchestrator dropped, yet raw_stats = %d rows", len(got))
	}
	for i := 0; i < 2; i++ {
		n, err := st.RebuildRollups(ctx, base, base.Add(3*time.Hour), now)
		if err != nil {
			t.Fatalf("rebuild %d: %v", i+1, err)
		}
		if int(n) != len(byView)-len(modelRollupRows(t, db))-len(countRollupRows(t, db))-len(orchestratorRollupRows(t, db)) {
			t.Errorf("rebuild %d wrote %d rollup rows, want %d", i+1, n, len(byView))
		}
		if got := rollupRows(t, db); !reflect.DeepEqual(got, byView) {
			t.Errorf("rebuild %d differs from the view:\n got %v\nwant %v", i+1, got, byView)
		}
		if got, _ := st.Aggregates(ctx, win); !reflect.DeepEqual(got, want) {
			t.Errorf("rebuild %d: aggregates %+v, want %+v", i+1, got, want)
		}
		if got, _ := st.MedianRTTs(ctx, win); len(wantMed) == 0 || !reflect.DeepEqual(got, wantMed) {
			t.Errorf("rebuild %d: medians %v, want %v", i+1, got, wantMed)
		}
		// The raw copy by time (edge hours) is rebuilt too, never doubled.
		var raw, byTime uint64
		if err := db.Conn.QueryRow(ctx, "SELECT (SELECT count() FROM "+db.Name+".probe_results), (SELECT count() FROM "+db.Name+"."+byTimeName+")").Scan(&raw, &byTime); err != nil {
			t.Fatal(err)
		}
		if raw == 0 || byTime != raw {
			t.Errorf("rebuild %d: %s holds %d rows, probe_results %d", i+1, byTimeName, byTime, raw)
		}
		if got, _ := st.Raw(ctx, one, true, 1000); !reflect.DeepEqual(got, wantRaw) {
			t.Errorf("rebuild %d: raw_stats of %s from the copy by orchestrator differs: %d rows, want %d", i+1, orchB, len(got), len(wantRaw))
		}
		if got, _ := st.History(ctx, one, Hour); !reflect.DeepEqual(got, wantHist) {
			t.Errorf("rebuild %d: history of %s %+v, want %+v", i+1, orchB, got, wantHist)
		}
	}
	// Rebuilding one hour in the middle leaves the others alone.
	if _, err := st.RebuildRollups(ctx, base.Add(time.Hour), base.Add(2*time.Hour), now); err != nil {
		t.Fatal(err)
	}
	if got := rollupRows(t, db); !reflect.DeepEqual(got, byView) {
		t.Errorf("one-hour rebuild changed the rollups")
	}
	if _, err := st.RebuildRollups(ctx, base, base.Add(3*time.Hour), base.Add(2*time.Hour+30*time.Minute)); !errors.Is(err, ErrHourOpen) {
		t.Errorf("rebuild of an open hour: err = %v, want ErrHourOpen", err)
	}
}

// testRetention: raw days older than the raw limit and rollup months older
// than the rollup limit are dropped; newer data, and rollups when their
// limit is 0, stay, so scores of old hours survive raw retention.
func testRetention(t *testing.T, newDB backend) {
	db := newDB(t)
	now := time.Date(2026, 6, 15, 12, 0, 0, 0, time.UTC)
	old := now.Add(-100 * 24 * time.Hour) // 2026-03-07
	recent := now.Add(-24 * time.Hour)
	insert(t, db, []results.Result{
		probe(orchA, "FRA", old, results.Success, 2*time.Second),
		probe(orchA, "FRA", recent, results.Success, 4*time.Second),
	})
	st := newStore(t, db)
	ctx := context.Background()
	dropped, err := st.Retention(ctx, now, 90*24*time.Hour, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(dropped) != 3 || dropped[0].Table != "probe_results" || dropped[0].Partition != "20260307" ||
		dropped[1].Table != byTimeName || dropped[1].Partition != "20260307" ||
		dropped[2].Table != "probe_results_by_orchestrator" || dropped[2].Partition != "20260307" {
		t.Fatalf("dropped %+v, want raw partition 20260307 only (and its copies by time and by orchestrator)", dropped)
	}
	f := Filter{Window: Window{old.Add(-time.Hour), old.Add(time.Hour)}, Orchestrator: orchA}
	if raw, _ := st.Raw(ctx, f, true, 10); len(raw) != 0 {
		t.Errorf("raw rows of a dropped day still readable: %+v", raw)
	}
	// The old hour is still scored from its rollup.
	whole := Filter{Window: Window{old.Truncate(time.Hour), old.Truncate(time.Hour).Add(time.Hour - time.Millisecond)}, Orchestrator: orchA}
	if aggs, _ := st.Aggregates(ctx, whole); len(aggs) != 1 || aggs[0].MeanRTTSeconds != 2 {
		t.Errorf("rollup of the old hour: %+v", aggs)
	}
	if med, _ := st.MedianRTTs(ctx, whole); len(med) != 1 || med[Key{t2i, sdxl}] != 2 {
		t.Errorf("median of the old hour from the model rollup: %v, want 2 s", med)
	}
	if _, err := st.RebuildRollups(ctx, whole.Since, whole.Until, now); !errors.Is(err, ErrRawGone) {
		t.Errorf("rebuild over dropped raw rows: err = %v, want ErrRawGone", err)
	}
	again, err := st.Retention(ctx, now, 90*24*time.Hour, 0)
	if err != nil || len(again) != 0 {
		t.Errorf("second run dropped %+v, %v; want nothing", again, err)
	}
	dropped, err = st.Retention(ctx, now, 90*24*time.Hour, 60*24*time.Hour)
	var tables []string
	for _, d := range dropped {
		if d.Partition == "202603" {
			tables = append(tables, d.Table)
		}
	}
	if err != nil || len(dropped) != len(rollupTables) || !reflect.DeepEqual(tables, rollupTables) {
		t.Errorf("rollup retention dropped %+v, %v; want month 202603 of %v", dropped, err, rollupTables)
	}
	if aggs, _ := st.Aggregates(ctx, Filter{Window: Window{recent.Add(-time.Hour), recent.Add(time.Hour)}}); len(aggs) != 1 {
		t.Errorf("recent data must stay: %+v", aggs)
	}
}

// testHistoryEqualsRaw: an orchestrator's hourly and daily history read from
// rollups is the raw answer, edge hours included.
func testHistoryEqualsRaw(t *testing.T, newDB backend) {
	db := newDB(t)
	base := time.Date(2026, 3, 4, 21, 0, 0, 0, time.UTC) // crosses midnight
	insert(t, db, fleet(base, 5))
	st := newStore(t, db)
	ctx := context.Background()
	w := Window{base.Add(17*time.Minute + 3*time.Millisecond), base.Add(4*time.Hour + 41*time.Minute)}
	for _, f := range []Filter{
		{Window: w, Pipeline: t2i, Model: sdxl, Orchestrator: orchA},
		{Window: w, Pipeline: t2i, Model: sdxl, Orchestrator: orchB, Region: "GLOBAL"},
		{Window: w, Pipeline: t2i, Model: sdxl, Orchestrator: orchC, Region: "FRA"},
	} {
		for _, b := range []Bucket{Hour, Day} {
			want, err := st.historyRaw(ctx, f, b)
			if err != nil {
				t.Fatal(err)
			}
			got, err := st.historyRollups(ctx, f, b)
			if err != nil {
				t.Fatal(err)
			}
			if len(want) == 0 || !reflect.DeepEqual(got, want) {
				t.Errorf("%s %s/%s: history from rollups\n got %+v\nwant %+v", b, f.Orchestrator, f.Region, got, want)
			}
		}
	}
}

// testCachedWholeHoursSeeLateProbes: the whole hours a read remembers
// (rollup_cache.go) are not trusted to be closed for good. A probe posted or
// flushed late into an hour of the window, a rebuild and a retention drop
// each show up in the next answer, which stays equal to the raw one.
func testCachedWholeHoursSeeLateProbes(t *testing.T, newDB backend) {
	db := newDB(t)
	base := time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)
	insert(t, db, fleet(base, 6))
	st := newStore(t, db)
	ctx := context.Background()
	w := Window{base.Add(37*time.Minute + 123*time.Millisecond), base.Add(5*time.Hour + 11*time.Minute + 999*time.Millisecond)}
	filters := []Filter{
		{Window: w, Pipeline: t2i, Model: sdxl},
		{Window: w, Pipeline: t2i, Model: sdxl, Region: "GLOBAL"},
		{Window: w, Pipeline: t2i, Model: sdxl, Orchestrator: orchB},
		{Window: w},
	}
	check := func(step string) []Aggregate {
		t.Helper()
		var first []Aggregate
		for i, f := range filters {
			for pass := 0; pass < 2; pass++ { // a miss, then a hit
				want, err := st.aggregatesRaw(ctx, f)
				if err != nil {
					t.Fatal(err)
				}
				got, err := st.Aggregates(ctx, f)
				if err != nil {
					t.Fatalf("%s: %v", step, err)
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s, filter %d, pass %d: aggregates\n got %+v\nwant %+v", step, i, pass, got, want)
				}
				wantMed, err := st.medianRTTsRaw(ctx, f)
				if err != nil {
					t.Fatal(err)
				}
				gotMed, err := st.MedianRTTs(ctx, f)
				if err != nil {
					t.Fatalf("%s: %v", step, err)
				}
				if !reflect.DeepEqual(gotMed, wantMed) {
					t.Errorf("%s, filter %d, pass %d: medians %v, raw %v", step, i, pass, gotMed, wantMed)
				}
				checkScoreInputs(t, fmt.Sprintf("%s, filter %d, pass %d", step, i, pass), st, f, want, wantMed)
				if i == 0 {
					first = want
				}
			}
		}
		return first
	}
	before := check("before")

	// Late probes into a whole hour of the window: a new orchestrator and
	// slow successes for an old one (they move the mean and the median).
	late := base.Add(2*time.Hour + 10*time.Minute)
	const orchD = "0xdddd000000000000000000000000000000000004"
	var rows []results.Result
	for i := 0; i < 9; i++ {
		at := late.Add(time.Duration(i) * time.Minute)
		rows = append(rows, probe(orchD, "FRA", at, results.Success, 40*time.Second), probe(orchB, "LAX", at, results.Success, 30*time.Second))
	}
	insert(t, db, rows)
	if after := check("after late probes"); reflect.DeepEqual(after, before) {
		t.Fatal("fixture: the late probes changed nothing")
	}

	// A rebuild rewrites the hours (same content); retention drops them.
	if _, err := st.RebuildRollups(ctx, base, base.Add(6*time.Hour), base.Add(30*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	check("after rebuild")
	for _, tbl := range rollupTables {
		if err := db.Conn.Exec(ctx, "ALTER TABLE "+db.Name+"."+tbl+" DROP PARTITION 202603"); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := st.Aggregates(ctx, Filter{Window: Window{base.Add(time.Hour), base.Add(4*time.Hour - time.Millisecond)}}); err != nil || len(got) != 0 {
		t.Errorf("rollups dropped, yet aggregates of whole hours = %+v, %v", got, err)
	}
}

// testBoundedRollupState: the rollups' state per hour is bounded (migration
// 0008). One region's hour with 5,000 successful probes of one model (500
// orchestrators, one of them probed 100 times) keeps 4,096 total times
// exactly in its model row and 64 server times in the busy orchestrator's
// row, and no longer every time (rtt_us, server_times stay empty); the
// median and history percentiles then come from the t-digests, within 1 %
// of the exact raw answer, and every count stays exact.
func testBoundedRollupState(t *testing.T, newDB backend) {
	db := newDB(t)
	hour := time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)
	var rows []results.Result
	for i := 0; i < 5000; i++ {
		orch := fmt.Sprintf("0x%040x", i%500)
		if i < 100 {
			orch = orchA
		}
		at := hour.Add(time.Duration(i) * 700 * time.Millisecond)
		r := probe(orch, "FRA", at, results.Success, time.Duration(500+(i*7919)%9000)*time.Millisecond+time.Duration(i%1000)*time.Microsecond)
		r.Server = r.Total / 2
		r.ProbeID = results.ProbeID(orch, "FRA", at.Format(time.RFC3339Nano))
		rows = append(rows, r)
	}
	insert(t, db, rows)
	st := newStore(t, db)
	ctx := context.Background()

	var n, few uint64
	if err := db.Conn.QueryRow(ctx, "SELECT countIfMerge(rtt_n), length(groupArrayIfMerge(4096)(rtt_few)) FROM "+db.Name+
		".probe_rollup_model_hourly").Scan(&n, &few); err != nil {
		t.Fatalf("model rollup (migration 0008): %v", err)
	}
	if n != 5000 || few != 4096 {
		t.Errorf("model rollup keeps %d of %d total times exactly, want 4096 of 5000", few, n)
	}
	var sn, sfew, old uint64
	if err := db.Conn.QueryRow(ctx, "SELECT countIfMerge(server_n), length(groupArrayIfMerge(64)(server_few)),"+
		" length(groupArrayIfMerge(rtt_us)) + length(groupArrayIfMerge(server_times)) FROM "+db.Name+
		".probe_rollup_hourly WHERE orchestrator = ?", orchA).Scan(&sn, &sfew, &old); err != nil {
		t.Fatal(err)
	}
	if sn != 100 || sfew != 64 || old != 0 {
		t.Errorf("busy orchestrator's row keeps %d of %d server times, and %d unbounded ones; want 64 of 100 and 0", sfew, sn, old)
	}

	f := Filter{Window: Window{hour, hour.Add(time.Hour - time.Millisecond)}, Pipeline: t2i, Model: sdxl}
	want, err := st.medianRTTsRaw(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	got, err := st.MedianRTTs(ctx, f)
	if err != nil {
		t.Fatal(err)
	}
	k := Key{t2i, sdxl}
	if w, g := want[k], got[k]; w == 0 || math.Abs(g-w) > 0.01*w {
		t.Errorf("median from the t-digest %.6f s, exact %.6f s: more than 1 %% apart", g, w)
	} else {
		t.Logf("median of 5000: t-digest %.6f s, exact %.6f s (%.3f ms apart)", g, w, math.Abs(g-w)*1e3)
	}
	// The one read of aggregated_stats, past the bound with an edge hour
	// of raw rows too: exact sums, the median within 1 %.
	var late []results.Result
	for i := 0; i < 40; i++ {
		at := hour.Add(time.Hour + time.Duration(i)*time.Minute)
		r := probe(orchA, "FRA", at, results.Success, time.Duration(3000+i*100)*time.Millisecond)
		r.ProbeID = results.ProbeID(orchA, "late", at.Format(time.RFC3339Nano))
		late = append(late, r)
	}
	insert(t, db, late)
	edged := Filter{Window: Window{hour, hour.Add(time.Hour + 30*time.Minute)}, Pipeline: t2i, Model: sdxl}
	wantAggs, err := st.aggregatesRaw(ctx, edged)
	if err != nil {
		t.Fatal(err)
	}
	if want, err = st.medianRTTsRaw(ctx, edged); err != nil {
		t.Fatal(err)
	}
	gotAggs, gotMed, err := st.AggregatesAndMedians(ctx, edged)
	if err != nil {
		t.Fatal(err)
	}
	if len(wantAggs) != 501 || !reflect.DeepEqual(gotAggs, wantAggs) {
		t.Errorf("aggregates read with the t-digest median: %d of them, differing from the raw %d", len(gotAggs), len(wantAggs))
	}
	if w, g := want[k], gotMed[k]; w == 0 || math.Abs(g-w) > 0.01*w {
		t.Errorf("median read with the aggregates %.6f s, exact %.6f s: more than 1 %% apart", g, w)
	}

	f.Orchestrator = orchA
	wantH, err := st.historyRaw(ctx, f, Hour)
	if err != nil {
		t.Fatal(err)
	}
	gotH, err := st.History(ctx, f, Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(gotH) != 1 || len(wantH) != 1 {
		t.Fatalf("history: got %+v, want %+v", gotH, wantH)
	}
	g, w := gotH[0], wantH[0]
	if g.Probes != w.Probes || g.Successes != w.Successes || g.MeanRTTSeconds != w.MeanRTTSeconds {
		t.Errorf("history counts from rollups %+v, raw %+v", g, w)
	}
	for _, p := range [][2]float64{{g.ServerP50, w.ServerP50}, {g.ServerP95, w.ServerP95}} {
		if math.Abs(p[0]-p[1]) > 0.05*p[1] {
			t.Errorf("history server percentile from the t-digest %.6f s, exact %.6f s: more than 5 %% apart", p[0], p[1])
		}
	}
}
