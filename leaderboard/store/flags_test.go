package store

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/internal/results"
)

const (
	orchD = "0xdddd000000000000000000000000000000000004"
	orchE = "0xeeee000000000000000000000000000000000005"
)

// gamingNetwork is one hour of FRA traffic for Text to image: every
// orchestrator gets 40 probes (tester rows) and, where a gateway operator
// posts its own jobs, 40 gateway-source rows. A serves the probes and
// refuses most real jobs; B serves both but real jobs slowly; C is honest
// (same volume, same behaviour towards both); D refuses half its probes
// for capacity; E refuses 15 % (busy, under the 20 % floor); every other
// orchestrator refuses 2 of 40 (5 %), so the network median is 5 %.
func gamingNetwork(base time.Time) []results.Result {
	var rows []results.Result
	n := 0
	add := func(orch, source string, outcome results.Outcome, class string, total time.Duration) {
		n++
		at := base.Add(time.Duration(n) * 1500 * time.Millisecond)
		r := probe(orch, "FRA", at, outcome, total)
		r.Source = source
		r.ErrorClass, r.ErrorCode, r.ErrorMessage = "", "", ""
		switch {
		case class == "capacity":
			r.ErrorClass, r.ErrorCode, r.ErrorMessage = "capacity", "insufficient_capacity", "insufficient capacity"
		case outcome == results.Failure && strings.HasPrefix(source, "gateway:"):
			r.ErrorClass, r.ErrorCode, r.ErrorMessage = "posted", "insufficient capacity", "insufficient capacity"
		case outcome != results.Success:
			r.ErrorClass, r.ErrorCode = class, "x"
		}
		r.ProbeID = results.ProbeID(orch, source, fmt.Sprint(n))
		rows = append(rows, r)
	}
	s := time.Second
	for _, o := range []string{orchA, orchB, orchC, orchD, orchE} {
		refusals := 2
		switch o {
		case orchD:
			refusals = 20
		case orchE:
			refusals = 6
		}
		for i := 0; i < 40; i++ {
			switch {
			case i < refusals:
				add(o, "tester", results.Excused, "capacity", 0)
			case i == 39:
				add(o, "tester", results.Excused, "tester_payment", 0) // a tester-side fault: never the orchestrator's
			default:
				add(o, "tester", results.Success, "", s+time.Duration(i)*10*time.Millisecond)
			}
		}
	}
	for i := 0; i < 40; i++ {
		// A: real jobs refused ("insufficient capacity" reaches the gateway's user as a failed job).
		if i < 25 {
			add(orchA, "gateway:gw-fra", results.Failure, "", 0)
		} else {
			add(orchA, "gateway:gw-fra", results.Success, "", s+time.Duration(i)*10*time.Millisecond)
		}
		// B: real jobs served, 4× slower than probes.
		add(orchB, "gateway:gw-fra", results.Success, "", 4*s+time.Duration(i)*10*time.Millisecond)
		// C: honest: the same volume, as fast and as reliable as its probes.
		if i < 2 {
			add(orchC, "gateway:gw-fra", results.Failure, "", 0)
		} else {
			add(orchC, "gateway:gw-fra", results.Success, "", s+time.Duration(i)*12*time.Millisecond)
		}
	}
	return rows
}

// testGamingFlags: an orchestrator that serves probes and refuses or slows
// real (gateway-posted) jobs is flagged probe_favouritism; an honest one
// with the same volume is not; one whose capacity refusals are far above the
// network's median is flagged capacity_refusals, a merely busy one is not.
func testGamingFlags(t *testing.T, newDB backend) {
	db := newDB(t)
	base := time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)
	insert(t, db, gamingNetwork(base))
	st := newStore(t, db)
	ctx := context.Background()
	w := Window{Since: base, Until: base.Add(2 * time.Hour)}

	flags, err := st.Flags(ctx, Filter{Window: w})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]Flag{}
	for _, f := range flags {
		got[f.Orchestrator+" "+f.Code] = f
	}
	if len(got) != 3 || len(flags) != 3 {
		t.Fatalf("flags = %+v, want A and B probe_favouritism and D capacity_refusals only", flags)
	}
	a, ok := got[orchA+" "+FlagProbeFavouritism]
	if !ok || a.Region != "FRA" || a.Pipeline != t2i || a.Model != sdxl {
		t.Fatalf("A (serves probes, refuses real jobs) not flagged in FRA/%s/%s: %+v", t2i, sdxl, flags)
	}
	// A was asked 39 probes: its 2 capacity refusals count as asked, the tester-side fault does not.
	if e := a.Evidence; e["probe_requests"] != 39 || e["gateway_requests"] != 40 || e["gateway_success_rate"] != 15.0/40 || e["z"] < FavouritismMinZ {
		t.Errorf("A evidence = %v", e)
	}
	if !strings.Contains(a.Detail, "real traffic only 38%") {
		t.Errorf("A detail = %q", a.Detail)
	}
	b, ok := got[orchB+" "+FlagProbeFavouritism]
	if !ok || b.Evidence["latency_ratio"] < FavouritismLatencyRatio || !strings.Contains(b.Detail, "real jobs take") {
		t.Errorf("B (serves real jobs 4× slower) not flagged for speed: %+v", b)
	}
	if r := b.Evidence["latency_ratio"]; math.Abs(r-b.Evidence["gateway_p50_seconds"]/b.Evidence["probe_p50_seconds"]) > 1e-9 || r < 3 || r > 5 {
		t.Errorf("B latency ratio %v from p50s %v / %v", r, b.Evidence["gateway_p50_seconds"], b.Evidence["probe_p50_seconds"])
	}
	d, ok := got[orchD+" "+FlagCapacityRefusals]
	if !ok {
		t.Fatalf("D (refuses 20 of 39 probes for capacity) not flagged: %+v", flags)
	}
	if e := d.Evidence; e["capacity_refusals"] != 20 || e["requests"] != 39 || e["network_median_rate"] != 2.0/39 || e["network_orchestrators"] != 5 {
		t.Errorf("D evidence = %v", e)
	}
	if d.Region != "" || d.Pipeline != "" || !strings.Contains(d.Detail, "the network's median rate") {
		t.Errorf("D flag = %+v", d)
	}

	// One orchestrator's flags: the network median is still the network's.
	for orch, want := range map[string]int{orchC: 0, orchE: 0, orchA: 1, orchD: 1} {
		fs, err := st.Flags(ctx, Filter{Window: w, Orchestrator: orch})
		if err != nil {
			t.Fatal(err)
		}
		if len(fs) != want {
			t.Errorf("Flags(%s) = %+v, want %d", orch, fs, want)
		}
		if orch == orchD && len(fs) == 1 && fs[0].Evidence["network_median_rate"] != 2.0/39 {
			t.Errorf("D alone: network median %v, want 2/39 (the network's, not D's)", fs[0].Evidence["network_median_rate"])
		}
	}

	// Without real-traffic evidence nothing is compared: the same probes
	// alone raise no probe_favouritism.
	db2 := newDB(t)
	var probesOnly []results.Result
	for _, r := range gamingNetwork(base) {
		if !strings.HasPrefix(r.Source, GatewaySourcePrefix) {
			probesOnly = append(probesOnly, r)
		}
	}
	insert(t, db2, probesOnly)
	fs, err := newStore(t, db2).Flags(ctx, Filter{Window: w, Pipeline: t2i, Model: sdxl, Region: "FRA"})
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 1 || fs[0].Code != FlagCapacityRefusals || fs[0].Orchestrator != orchD {
		t.Errorf("probes only: flags = %+v, want D's capacity_refusals only", fs)
	}
}

// The significance guard: a large gap over too few jobs, or a small gap
// over many, is not an accusation.
func TestFavouritismNeedsEffectAndEvidence(t *testing.T) {
	probe := sideStats{requests: 100, successes: 98, timed: 98, p50: 1}
	for name, tc := range map[string]struct {
		gw   sideStats
		flag bool
	}{
		"few gateway jobs":      {sideStats{requests: 19, successes: 0, timed: 0}, false},
		"small gap, many jobs":  {sideStats{requests: 1000, successes: 850, timed: 850, p50: 1.1}, false},
		"large gap":             {sideStats{requests: 30, successes: 15, timed: 15, p50: 1}, true},
		"slow, enough timed":    {sideStats{requests: 30, successes: 30, timed: 30, p50: 2}, true},
		"slow, too few timed":   {sideStats{requests: 30, successes: 19, timed: 19, p50: 9}, true}, // caught by the rate gap instead
		"slow, 1.9× the probes": {sideStats{requests: 30, successes: 30, timed: 30, p50: 1.9}, false},
	} {
		_, _, got := favouritism(probe, tc.gw)
		if got != tc.flag {
			t.Errorf("%s: flagged = %v, want %v", name, got, tc.flag)
		}
	}
	if z := twoProportionZ(98, 100, 15, 30); z < 6 || z > 8 {
		t.Errorf("z(98/100 vs 15/30) = %v, want about 7", z)
	}
}
