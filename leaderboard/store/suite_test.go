package store

import (
	"context"
	"errors"
	"fmt"
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

// rollupRows reads the rollup table back, merged, as comparable rows.
func rollupRows(t *testing.T, db *chtest.DB) []string {
	t.Helper()
	rows, err := db.Conn.Query(context.Background(), "SELECT pipeline, model, region, orchestrator, toUInt32(hour),"+
		" countIfMerge(probes), countIfMerge(successes), countIfMerge(excused), sumIfMerge(rtt_sum_us), countIfMerge(rtt_n),"+
		" arraySort(groupArrayIfMerge(rtt_us)), arraySort(groupArrayIfMerge(server_times)), toUInt32(maxMerge(last_tested)),"+
		" countIfMerge(warm_probes), countIfMerge(warm_successes), sumIfMerge(warm_rtt_sum_us), countIfMerge(warm_rtt_n),"+
		" quantilesTDigestIfMerge(0.5, 0.9, 0.99)(total_q)"+
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
		var n [9]uint64
		var rtt, srv []uint64
		var q []float32
		if err := rows.Scan(&p, &m, &r, &o, &h, &n[0], &n[1], &n[2], &n[3], &n[4], &rtt, &srv, &lt, &n[5], &n[6], &n[7], &n[8], &q); err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprint(p, m, r, o, h, n, rtt, srv, lt, q))
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

	// Lose them: drop the month.
	if err := db.Conn.Exec(ctx, "ALTER TABLE "+db.Name+".probe_rollup_hourly DROP PARTITION 202603"); err != nil {
		t.Fatal(err)
	}
	if got, _ := st.Aggregates(ctx, win); len(got) != 0 {
		t.Fatalf("rollups dropped, yet aggregates = %+v", got)
	}
	for i := 0; i < 2; i++ {
		n, err := st.RebuildRollups(ctx, base, base.Add(3*time.Hour), now)
		if err != nil {
			t.Fatalf("rebuild %d: %v", i+1, err)
		}
		if int(n) != len(byView) {
			t.Errorf("rebuild %d wrote %d rollup rows, want %d", i+1, n, len(byView))
		}
		if got := rollupRows(t, db); !reflect.DeepEqual(got, byView) {
			t.Errorf("rebuild %d differs from the view:\n got %v\nwant %v", i+1, got, byView)
		}
		if got, _ := st.Aggregates(ctx, win); !reflect.DeepEqual(got, want) {
			t.Errorf("rebuild %d: aggregates %+v, want %+v", i+1, got, want)
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
	if len(dropped) != 1 || dropped[0].Table != "probe_results" || dropped[0].Partition != "20260307" {
		t.Fatalf("dropped %+v, want raw partition 20260307 only", dropped)
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
	if _, err := st.RebuildRollups(ctx, whole.Since, whole.Until, now); !errors.Is(err, ErrRawGone) {
		t.Errorf("rebuild over dropped raw rows: err = %v, want ErrRawGone", err)
	}
	again, err := st.Retention(ctx, now, 90*24*time.Hour, 0)
	if err != nil || len(again) != 0 {
		t.Errorf("second run dropped %+v, %v; want nothing", again, err)
	}
	dropped, err = st.Retention(ctx, now, 90*24*time.Hour, 60*24*time.Hour)
	if err != nil || len(dropped) != 1 || dropped[0].Table != "probe_rollup_hourly" || dropped[0].Partition != "202603" {
		t.Errorf("rollup retention dropped %+v, %v; want month 202603", dropped, err)
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
	if err := db.Conn.Exec(ctx, "ALTER TABLE "+db.Name+".probe_rollup_hourly DROP PARTITION 202603"); err != nil {
		t.Fatal(err)
	}
	if got, err := st.Aggregates(ctx, Filter{Window: Window{base.Add(time.Hour), base.Add(4*time.Hour - time.Millisecond)}}); err != nil || len(got) != 0 {
		t.Errorf("rollups dropped, yet aggregates of whole hours = %+v, %v", got, err)
	}
}
