package store

import (
	"context"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// wholeHours remembers, per request shape, what the rollups answered for the
// whole hours of a window, so a repeated aggregated_stats reads only its raw
// edges and one row of system.parts instead of every rollup row of the day
// (only Aggregates' sums: the median reads the small model table of 0008,
// at most 24 × regions rows per model a day, and is not cached; the rollup table is ordered by region and orchestrator before hour, so
// any hour range of a model reads all of that model's rollup rows).
//
// An entry is valid while the rollup table's active parts that hold hours of
// its range are the same set: every insert (late probes, back-fills and
// post_stats of a closed hour included), merge, rebuild mutation and
// partition drop changes that set, and a part, once written, never changes.
// The fingerprint is read before the rollups, so an entry is never older than
// its fingerprint. Parts holding only later hours (the current hour's inserts)
// do not touch the entry, so it lives until its range moves or a merge
// rewrites its parts.
//
// Only where the rollup table is a MergeTree on this server: on a cluster it
// is a Distributed table whose parts live elsewhere, and nothing is cached.
type wholeHours struct {
	mu      sync.Mutex
	checked bool // the table engine was read
	enabled bool
	entries map[string]*wholeHoursEntry
	order   []string // insertion order, oldest first, for eviction
	values  int      // held values, bounded by maxValues
}

type wholeHoursEntry struct {
	token  partsToken
	aggs   []aggPartial // Aggregates' rollup part
	values int
}

// partsToken fingerprints a set of active parts.
type partsToken struct {
	n, hash uint64
}

// Bounds of the cache: an entry holds one sums row per (orchestrator,
// region, pipeline, model) of its answer (~120 bytes each).
const (
	wholeHoursMaxEntries = 256
	wholeHoursMaxValues  = 1 << 20 // rows: ~120 MiB at most
)

// aggPartial is one (orchestrator, region, pipeline, model)'s sums over part
// of a window, added up before Aggregate's mean is taken.
type aggPartial struct {
	orchestrator, region, pipeline, model    string
	probes, successes, excused, rttSum, rttN uint64
	lastTested                               time.Time
}

// cacheKey names a request shape: its filter's dimensions and whole hours.
func cacheKey(kind string, f Filter, s span) string {
	var b strings.Builder
	for _, p := range []string{kind, f.Pipeline, f.Model, f.Region, f.Orchestrator} {
		b.WriteString(p)
		b.WriteByte(0)
	}
	b.WriteString(time.Unix(int64(s.from), 0).UTC().Format(time.RFC3339))
	b.WriteByte('/')
	b.WriteString(time.Unix(int64(s.to), 0).UTC().Format(time.RFC3339))
	return b.String()
}

// token reads the fingerprint of table's parts holding hours of s (the
// table the read uses), and whether caching applies at all (the rollup
// tables are MergeTrees here, or all Distributed on a cluster).
func (c *ClickHouse) wholeHoursToken(ctx context.Context, s span, table string) (partsToken, bool, error) {
	w := &c.cache
	w.mu.Lock()
	checked, enabled := w.checked, w.enabled
	w.mu.Unlock()
	cctx, cancel := c.ctx(ctx)
	defer cancel()
	if !checked {
		var engine string
		if err := c.conn.QueryRow(cctx, "SELECT engine FROM system.tables WHERE database = ? AND name = 'probe_rollup_hourly'", c.db).Scan(&engine); err != nil {
			return partsToken{}, false, unavailable("rollup engine", err)
		}
		enabled = strings.HasSuffix(engine, "MergeTree")
		w.mu.Lock()
		w.checked, w.enabled = true, enabled
		w.mu.Unlock()
	}
	if !enabled {
		return partsToken{}, false, nil
	}
	var t partsToken
	if err := c.conn.QueryRow(cctx, "SELECT count(), sum(cityHash64(name)) FROM system.parts"+
		" WHERE database = ? AND table = ? AND active AND min_time < toDateTime(?) AND max_time >= toDateTime(?)",
		c.db, table, s.to, s.from).Scan(&t.n, &t.hash); err != nil {
		return partsToken{}, false, unavailable("rollup parts", err)
	}
	return t, true, nil
}

func (w *wholeHours) get(key string, t partsToken) *wholeHoursEntry {
	w.mu.Lock()
	defer w.mu.Unlock()
	if e := w.entries[key]; e != nil && e.token == t {
		return e
	}
	return nil
}

func (w *wholeHours) put(key string, e *wholeHoursEntry) {
	if e.values > wholeHoursMaxValues/4 {
		return // one answer this large would crowd out the rest
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.entries == nil {
		w.entries = map[string]*wholeHoursEntry{}
	}
	if old := w.entries[key]; old != nil {
		w.values -= old.values
		w.drop(key)
	}
	for len(w.order) > 0 && (len(w.order) >= wholeHoursMaxEntries || w.values+e.values > wholeHoursMaxValues) {
		oldest := w.order[0]
		w.values -= w.entries[oldest].values
		delete(w.entries, oldest)
		w.order = w.order[1:]
	}
	w.entries[key] = e
	w.order = append(w.order, key)
	w.values += e.values
}

// drop removes key from the eviction order (the caller fixes values).
func (w *wholeHours) drop(key string) {
	for i, k := range w.order {
		if k == key {
			w.order = append(w.order[:i], w.order[i+1:]...)
			break
		}
	}
	delete(w.entries, key)
}

// scanPartials runs q, whose columns are orchestrator, region, pipeline,
// model, probes, successes, excused, rtt sum (µs), rtt count, last tested.
func (c *ClickHouse) scanPartials(ctx context.Context, q string, args []any) ([]aggPartial, error) {
	return queryRows(ctx, c, "aggregates", q, args, func(rows driver.Rows) (aggPartial, error) {
		var p aggPartial
		err := rows.Scan(&p.orchestrator, &p.region, &p.pipeline, &p.model, &p.probes, &p.successes, &p.excused, &p.rttSum, &p.rttN, &p.lastTested)
		return p, err
	})
}

// sumPartials adds up the whole-hour and edge sums per (orchestrator,
// region, pipeline, model) exactly as the SQL of Aggregates does: sums,
// newest probe, only groups with scored probes, ordered by the four names
// (byte order, as ClickHouse orders String).
func sumPartials(parts ...[]aggPartial) []Aggregate {
	type key struct{ o, r, p, m string }
	sums := map[key]*aggPartial{}
	var keys []key
	for _, ps := range parts {
		for i := range ps {
			p := &ps[i]
			k := key{p.orchestrator, p.region, p.pipeline, p.model}
			s := sums[k]
			if s == nil {
				c := *p
				sums[k] = &c
				keys = append(keys, k)
				continue
			}
			s.probes += p.probes
			s.successes += p.successes
			s.excused += p.excused
			s.rttSum += p.rttSum
			s.rttN += p.rttN
			if p.lastTested.After(s.lastTested) {
				s.lastTested = p.lastTested
			}
		}
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		switch {
		case a.o != b.o:
			return a.o < b.o
		case a.r != b.r:
			return a.r < b.r
		case a.p != b.p:
			return a.p < b.p
		}
		return a.m < b.m
	})
	var out []Aggregate
	for _, k := range keys {
		s := sums[k]
		if s.probes == 0 {
			continue
		}
		a := Aggregate{Orchestrator: k.o, Region: k.r, Pipeline: k.p, Model: k.m,
			Probes: s.probes, Successes: s.successes, Excused: s.excused, LastTested: s.lastTested.UTC()}
		if s.rttN > 0 {
			a.MeanRTTSeconds = float64(s.rttSum) / float64(s.rttN) / 1e6
		}
		out = append(out, a)
	}
	return out
}
