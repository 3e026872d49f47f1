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
	// Ingest stores one posted result unless a row with its probe id is
	// already stored, so a re-post is never counted twice. It reports
	// whether the row was new.
	Ingest(ctx context.Context, r results.Result) (bool, error)
	// ClaimNonce records a signed post's (key, nonce) and reports false when
	// it was already recorded since notBefore: a replay.
	ClaimNonce(ctx context.Context, keyID, nonce string, notBefore time.Time) (bool, error)
	// Ping reports whether the backend answers.
	Ping(ctx context.Context) error
}
