package store

// Gaming flags (issue #17 item 4): an orchestrator that treats the testers'
// probes better than real traffic, or refuses far more work with
// "insufficient capacity" (an excused outcome, so it never lowers a score)
// than the rest of the network. The counts and medians are computed in SQL,
// on both engines; the thresholds below are applied here so one place states
// them and the API can publish them.

import (
	"context"
	"fmt"
	"math"
	"sort"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/lpgauge/lpgauge/leaderboard/score"
)

// Flag codes.
const (
	FlagProbeFavouritism = "probe_favouritism"
	FlagCapacityRefusals = "capacity_refusals"
)

// GatewaySourcePrefix starts the source of rows a gateway operator posted
// about its own (real) jobs: "gateway:<key id>". Every other source (tester,
// post_stats, post_stats:<key id>) is a probe.
const GatewaySourcePrefix = "gateway:"

// The thresholds. A flag is an accusation, so each needs both a large effect
// and enough samples that chance does not explain it.
const (
	// FlagMinSamples is the fewest requests (probes, or gateway jobs) on
	// each side of a comparison, and the fewest timed successes on each
	// side of a latency comparison.
	FlagMinSamples = 20
	// FavouritismRateGap: the probes' success rate exceeds real traffic's
	// by at least this much...
	FavouritismRateGap = 0.2
	// FavouritismMinZ: ...and a two-proportion z-test (pooled) gives at
	// least this z (one-sided p < 0.0014): the gap is not chance.
	FavouritismMinZ = 3.0
	// FavouritismLatencyRatio: real traffic's median total time is at least
	// this many times the probes' median.
	FavouritismLatencyRatio = 2.0
	// CapacityMinRate: at least this share of the probes sent to the
	// orchestrator were refused for capacity...
	CapacityMinRate = 0.2
	// CapacityNetworkMultiple: ...and at least this many times the network's
	// median refusal rate (the median over orchestrators with at least
	// FlagMinSamples probes).
	CapacityNetworkMultiple = 3.0
)

// Flag is one finding about one orchestrator. Region, Pipeline and Model
// name where a probe_favouritism comparison was made; a capacity_refusals
// flag covers every pipeline and model and leaves them empty.
type Flag struct {
	Code         string
	Orchestrator string
	Region       string
	Pipeline     string
	Model        string
	// Detail says in one sentence what was seen, with the numbers.
	Detail string
	// Evidence are the numbers the decision used (counts, rates, medians
	// in seconds, z, ratios), by name.
	Evidence map[string]float64
}

// sideStats are one source's requests to one (orchestrator, region,
// pipeline, model).
type sideStats struct {
	requests, successes, refused, timed uint64
	p50                                 float64
}

func (s sideStats) rate() float64 {
	if s.requests == 0 {
		return 0
	}
	return float64(s.successes) / float64(s.requests)
}

// twoProportionZ is the pooled two-proportion z statistic of successes
// a1/n1 against a2/n2 (positive when the first rate is higher).
func twoProportionZ(a1, n1, a2, n2 uint64) float64 {
	if n1 == 0 || n2 == 0 {
		return 0
	}
	p1, p2 := float64(a1)/float64(n1), float64(a2)/float64(n2)
	p := float64(a1+a2) / float64(n1+n2)
	se := math.Sqrt(p * (1 - p) * (1/float64(n1) + 1/float64(n2)))
	if se == 0 {
		return 0
	}
	return (p1 - p2) / se
}

// favouritism decides one comparison; ok is false when it is not flagged.
func favouritism(probe, gw sideStats) (detail string, ev map[string]float64, ok bool) {
	if probe.requests < FlagMinSamples || gw.requests < FlagMinSamples {
		return "", nil, false
	}
	z := twoProportionZ(probe.successes, probe.requests, gw.successes, gw.requests)
	gap := probe.rate() - gw.rate()
	ratio := 0.0
	if probe.timed >= FlagMinSamples && gw.timed >= FlagMinSamples && probe.p50 > 0 {
		ratio = gw.p50 / probe.p50
	}
	ev = map[string]float64{
		"probe_requests": float64(probe.requests), "probe_success_rate": probe.rate(), "probe_p50_seconds": probe.p50, "probe_timed": float64(probe.timed),
		"gateway_requests": float64(gw.requests), "gateway_success_rate": gw.rate(), "gateway_p50_seconds": gw.p50, "gateway_timed": float64(gw.timed),
		"success_rate_gap": gap, "z": z, "latency_ratio": ratio,
	}
	byRate := gap >= FavouritismRateGap && z >= FavouritismMinZ
	bySpeed := ratio >= FavouritismLatencyRatio
	switch {
	case byRate && bySpeed:
		detail = fmt.Sprintf("probes succeed %.0f%% of %d times, real traffic %.0f%% of %d (z = %.1f), and real jobs take %.1f× the probes' median (%.2f s vs %.2f s)",
			100*probe.rate(), probe.requests, 100*gw.rate(), gw.requests, z, ratio, gw.p50, probe.p50)
	case byRate:
		detail = fmt.Sprintf("probes succeed %.0f%% of %d times, real traffic only %.0f%% of %d (gap %.2f ≥ %.2f, z = %.1f ≥ %.1f)",
			100*probe.rate(), probe.requests, 100*gw.rate(), gw.requests, gap, FavouritismRateGap, z, FavouritismMinZ)
	case bySpeed:
		detail = fmt.Sprintf("real jobs take %.1f× the probes' median total time (%.2f s over %d jobs vs %.2f s over %d probes; flagged at ≥ %.0f×)",
			ratio, gw.p50, gw.timed, probe.p50, probe.timed, FavouritismLatencyRatio)
	default:
		return "", nil, false
	}
	return detail, ev, true
}

// Flags implements Store: the probe_favouritism flags of the orchestrators
// matching f (per region, pipeline and model where gateway-source rows
// exist), then the capacity_refusals flags, whose network median is taken
// over every orchestrator in f's window, region, pipeline and model whatever
// f.Orchestrator. Sorted by orchestrator, code, region, pipeline, model.
func (c *ClickHouse) Flags(ctx context.Context, f Filter) ([]Flag, error) {
	fav, err := c.favouritismFlags(ctx, f)
	if err != nil {
		return nil, err
	}
	capf, err := c.capacityFlags(ctx, f)
	if err != nil {
		return nil, err
	}
	out := append(fav, capf...)
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Orchestrator != b.Orchestrator {
			return a.Orchestrator < b.Orchestrator
		}
		if a.Code != b.Code {
			return a.Code < b.Code
		}
		if a.Region != b.Region {
			return a.Region < b.Region
		}
		if a.Pipeline != b.Pipeline {
			return a.Pipeline < b.Pipeline
		}
		return a.Model < b.Model
	})
	return out, nil
}

// The requests an orchestrator was asked to serve: successes, failures and
// capacity refusals (which are excused in the score but are still work the
// orchestrator turned away). Tester-side faults never reached it fairly and
// are left out.
const (
	askedCond   = "(outcome != 'excused' OR error_class = 'capacity')"
	refusedCond = "(outcome = 'excused' AND error_class = 'capacity')"
	gatewayCond = "(source LIKE 'gateway:%')"
)

func (c *ClickHouse) favouritismFlags(ctx context.Context, f Filter) ([]Flag, error) {
	w, args := where(f, false)
	// Only the (orchestrator, region, pipeline, model) groups that have
	// gateway-source rows are compared, so the probes of the rest (most of
	// the network, most of the time) are never gathered: a tuple IN over
	// the gateway rows' keys (18.16 and current releases). The outer
	// percentile is Postgres percentile_cont like every other median here.
	q := "SELECT orchestrator, region, pipeline, model, gw, asked, ok, timed, " + percentileSQL("a", 0.5) +
		" FROM (SELECT orchestrator, region, pipeline, model, toUInt8(" + gatewayCond + ") AS gw," +
		" countIf(" + askedCond + ") AS asked, countIf(outcome = 'success') AS ok," +
		" countIf(outcome = 'success' AND total_us > 0) AS timed," +
		" arraySort(groupArrayIf(toFloat64(total_us) / 1000000, outcome = 'success' AND total_us > 0)) AS a" +
		" FROM " + c.table() + w +
		" AND (orchestrator, region, pipeline, model) IN (SELECT orchestrator, region, pipeline, model FROM " + c.table() + w +
		" AND " + gatewayCond + ")" +
		" GROUP BY orchestrator, region, pipeline, model, gw)" +
		" ORDER BY orchestrator, region, pipeline, model, gw"
	args = append(append([]any{}, args...), args...)
	type key struct{ o, r, p, m string }
	sides := map[key]*[2]sideStats{}
	var order []key
	if err := queryEach(ctx, c, "favouritism flags", q, args, func(rows driver.Rows) error {
		var k key
		var gw uint8
		var s sideStats
		if err := rows.Scan(&k.o, &k.r, &k.p, &k.m, &gw, &s.requests, &s.successes, &s.timed, &s.p50); err != nil {
			return err
		}
		if sides[k] == nil {
			sides[k] = &[2]sideStats{}
			order = append(order, k)
		}
		sides[k][min(gw, 1)] = s
		return nil
	}); err != nil {
		return nil, err
	}
	var out []Flag
	for _, k := range order {
		s := sides[k]
		detail, ev, ok := favouritism(s[0], s[1])
		if !ok {
			continue
		}
		out = append(out, Flag{Code: FlagProbeFavouritism, Orchestrator: k.o, Region: k.r, Pipeline: k.p, Model: k.m, Detail: detail, Evidence: ev})
	}
	return out, nil
}

func (c *ClickHouse) capacityFlags(ctx context.Context, f Filter) ([]Flag, error) {
	// Every orchestrator's probes (never gateway rows: a gateway's own
	// refusals are its business, and probes are what is excused).
	w, args := where(f, true)
	q := "SELECT orchestrator, countIf(" + askedCond + ") AS asked, countIf(" + refusedCond + ") AS refused" +
		" FROM " + c.table() + w + " AND NOT " + gatewayCond +
		" GROUP BY orchestrator HAVING asked > 0 ORDER BY orchestrator"
	type counts struct {
		o              string
		asked, refused uint64
	}
	rows, err := queryRows(ctx, c, "capacity flags", q, args, func(rows driver.Rows) (counts, error) {
		var x counts
		err := rows.Scan(&x.o, &x.asked, &x.refused)
		return x, err
	})
	if err != nil {
		return nil, err
	}
	var rates []float64
	for _, x := range rows {
		if x.asked >= FlagMinSamples {
			rates = append(rates, float64(x.refused)/float64(x.asked))
		}
	}
	sort.Float64s(rates)
	median := score.Percentile(rates, 0.5)
	var out []Flag
	for _, x := range rows {
		if f.Orchestrator != "" && x.o != f.Orchestrator {
			continue
		}
		if x.asked < FlagMinSamples {
			continue
		}
		rate := float64(x.refused) / float64(x.asked)
		if rate < CapacityMinRate || rate < CapacityNetworkMultiple*median {
			continue
		}
		ev := map[string]float64{"requests": float64(x.asked), "capacity_refusals": float64(x.refused), "refusal_rate": rate,
			"network_median_rate": median, "network_orchestrators": float64(len(rates))}
		var detail string
		if median > 0 {
			ev["times_network"] = rate / median
			detail = fmt.Sprintf("refused %d of %d probes for insufficient capacity (%.0f%%), %.1f× the network's median rate of %.1f%% over %d orchestrators; capacity refusals are excused and never lower the score",
				x.refused, x.asked, 100*rate, rate/median, 100*median, len(rates))
		} else {
			detail = fmt.Sprintf("refused %d of %d probes for insufficient capacity (%.0f%%), while the network's median orchestrator (of %d) refused none; capacity refusals are excused and never lower the score",
				x.refused, x.asked, 100*rate, len(rates))
		}
		out = append(out, Flag{Code: FlagCapacityRefusals, Orchestrator: x.o, Detail: detail, Evidence: ev})
	}
	return out, nil
}
