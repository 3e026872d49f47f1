// Package store reads (and, for post_stats, writes) the probe results the
// leaderboard scores. Store is an interface so a second backend (an embedded
// chDB) can sit behind the same API; ClickHouse is the first.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/lpgauge/lpgauge/internal/results"
)

// ErrUnavailable wraps every failure to reach or query the backend: the API
// answers it with 503, never with a stack trace.
var ErrUnavailable = errors.New("store unavailable")

// Window is a time range on the probes' start time (test time, not insert
// time), inclusive at both ends.
type Window struct {
	Since, Until time.Time
}

// Filter selects probes. Empty fields do not filter. Region "GLOBAL" pools
// every region into one aggregate (see Aggregates).
type Filter struct {
	Window
	Pipeline     string
	Model        string
	Region       string
	Orchestrator string
}

// Key names one (pipeline, model) scope.
type Key struct {
	Pipeline, Model string
}

// Aggregate is one (orchestrator, region, pipeline, model) over a window.
type Aggregate struct {
	Orchestrator string
	Region       string
	Pipeline     string
	Model        string
	// Probes counts scored probes (success + failure; excused never count).
	Probes    uint64
	Successes uint64
	Excused   uint64
	// MeanRTTSeconds is the mean total time of successful probes; 0 when
	// none succeeded with a measured time.
	MeanRTTSeconds float64
	LastTested     time.Time
}

// SuccessRate is successes over scored probes (0 when none).
func (a Aggregate) SuccessRate() float64 {
	if a.Probes == 0 {
		return 0
	}
	return float64(a.Successes) / float64(a.Probes)
}

// Pipeline is one pipeline seen in a window with its models and regions,
// both sorted.
type Pipeline struct {
	ID      string
	Models  []string
	Regions []string
}

// Store is what the leaderboard API needs from a backend. Every method
// honours ctx's deadline.
type Store interface {
	// Aggregates groups scored probes per (orchestrator, region, pipeline,
	// model). With Filter.Region == "GLOBAL" every region is pooled per
	// orchestrator and reported as region GLOBAL. Aggregates with no scored
	// probe (only excused ones) are left out.
	Aggregates(ctx context.Context, f Filter) ([]Aggregate, error)
	// MedianRTTs is the interpolated median total time (seconds) of
	// successful probes per (pipeline, model) matching f. f.Orchestrator is
	// ignored: the median is the yardstick for every orchestrator.
	MedianRTTs(ctx context.Context, f Filter) (map[Key]float64, error)
	// Pipelines lists the pipelines with scored probes in f's window (and
	// region, when set), sorted by id.
	Pipelines(ctx context.Context, f Filter) ([]Pipeline, error)
	// Raw returns one orchestrator's probes matching f, newest first, at
	// most limit rows; excused probes only when includeExcused.
	Raw(ctx context.Context, f Filter, includeExcused bool, limit int) ([]results.Result, error)
	// Ingest stores one posted result and what the post carried beyond it
	// unless a row with its probe id is already stored or being stored by
	// another replica, so a re-post is never counted twice. It reports
	// whether the row was new; ErrContested asks the poster to retry.
	Ingest(ctx context.Context, r results.Result, p Posted) (bool, error)
	// Posted returns the kept extras (errors, response_payload) of posted
	// rows by probe id; rows not posted have none.
	Posted(ctx context.Context, probeIDs []string) (map[string]Posted, error)
	// ClaimNonce records a signed post's (key, nonce) and reports false when
	// it was already recorded since notBefore: a replay.
	ClaimNonce(ctx context.Context, keyID, nonce string, notBefore time.Time) (bool, error)
	// Ping reports whether the backend answers.
	Ping(ctx context.Context) error

	// The methods below serve the additive endpoints (latency percentiles,
	// regions with data, history, errors, gateway outputs); see insights.go.

	// Latencies gives per-phase percentiles of successful probes per
	// (orchestrator, region, pipeline, model), split warm/cold. Region
	// GLOBAL pools regions as in Aggregates.
	Latencies(ctx context.Context, f Filter) ([]Latency, error)
	// RegionsWithData lists the region codes with scored probes matching f,
	// sorted (f.Region is ignored).
	RegionsWithData(ctx context.Context, f Filter) ([]string, error)
	// History buckets scored probes matching f per (region, bucket start);
	// Region GLOBAL pools regions. Sorted by region, then time.
	History(ctx context.Context, f Filter, b Bucket) ([]HistoryPoint, error)
	// BucketMedians is MedianRTTs per bucket start for f's pipeline and
	// model (f.Orchestrator ignored).
	BucketMedians(ctx context.Context, f Filter, b Bucket) (map[time.Time]float64, error)
	// Errors groups the failed and excused probes matching f by outcome,
	// region, pipeline, model, error class and code, most frequent first.
	Errors(ctx context.Context, f Filter) ([]ErrorGroup, error)
	// FailureStreaks is, per orchestrator, the number of failures after its
	// newest success among probes matching f (excused probes skipped).
	FailureStreaks(ctx context.Context, f Filter) (map[string]uint64, error)
	// ServiceURIs is each orchestrator's service URI from its newest probe
	// that recorded one.
	ServiceURIs(ctx context.Context, f Filter) (map[string]string, error)
	// Flags are the gaming flags (flags.go) of the orchestrators matching
	// f: probe_favouritism where gateway-source rows give real-traffic
	// evidence, capacity_refusals against the whole network's median.
	Flags(ctx context.Context, f Filter) ([]Flag, error)
	// LiveStats are the live-video-to-video numbers per (orchestrator,
	// region, model) matching f, from live rows only (live.go).
	LiveStats(ctx context.Context, f Filter) ([]LiveStat, error)
	// LiveRaw gives the live measures of those of probeIDs that are live
	// rows (live.go).
	LiveRaw(ctx context.Context, probeIDs []string) (map[string]results.Live, error)
}

// Quantiles are interpolated percentiles (Postgres percentile_cont) of one
// phase in seconds, over Samples successful probes where the phase happened.
type Quantiles struct {
	Samples       uint64
	P50, P90, P99 float64
}

// Phases are the percentiles of each timed phase.
type Phases struct {
	Server, Upload, Download, Total, Discovery Quantiles
	// TTFT is the LLM time to first token (no samples for other pipelines).
	TTFT Quantiles
	// Queue and Inference split Server where the orchestrator reports them
	// (queue_us, inference_us; no samples otherwise): busy vs slow.
	Queue, Inference Quantiles
}

// Split is the probes of one warm/cold state (or both).
type Split struct {
	Probes    uint64 // scored: success + failure
	Successes uint64
	Phases    Phases
	// TokensPerSecond is LLM generation speed (no samples for other
	// pipelines): completion tokens / the time after the first token.
	TokensPerSecond Quantiles
}

// Latency is one (orchestrator, region, pipeline, model)'s phase
// percentiles, for all probes and split by whether the model was warm.
type Latency struct {
	Orchestrator, Region, Pipeline, Model string
	All, Warm, Cold                       Split
}

// Bucket is a history time step.
type Bucket string

// Buckets History understands (18.16-safe: toStartOfHour/toStartOfDay).
const (
	Hour Bucket = "hour"
	Day  Bucket = "day"
)

// HistoryPoint is one orchestrator's probes in one region and bucket.
type HistoryPoint struct {
	Region    string
	Start     time.Time
	Probes    uint64 // scored
	Successes uint64
	// MeanRTTSeconds is the mean total time of successful probes.
	MeanRTTSeconds float64
	// ServerP50/P95 are percentiles of successful probes' server time (s).
	ServerP50, ServerP95 float64
}

// ErrorGroup counts probes that failed (or were excused) the same way.
type ErrorGroup struct {
	Outcome                 results.Outcome
	Region, Pipeline, Model string
	ErrorClass, ErrorCode   string
	Count                   uint64
	LastMessage             string
	LastSeen                time.Time
}
