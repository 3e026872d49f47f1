// Package slots is the contract between the orchestrator's HTTP layer and
// whatever runs its jobs (in-process CPU runners, external runner URLs,
// containers on the Docker engine): reserve a slot, get a URL, release it.
package slots

import (
	"context"
	"errors"

	"github.com/lpgauge/lpgauge/capability"
)

// ErrNoCapacity means no runner slot is free for the (pipeline, model). The
// HTTP layer answers 503 with the exact body go-livepeer gateways match on.
var ErrNoCapacity = errors.New("insufficient capacity")

// ErrUnknownModel means the orchestrator does not serve the (pipeline, model).
var ErrUnknownModel = errors.New("model not served")

// Runners is where jobs run: in-process CPU reference runners, external
// runner URLs from aiModels.json, or runner containers managed through the
// Docker engine. Every implementation speaks the ai-runner HTTP API at URL.
type Runners interface {
	// Reserve takes one slot for (pipeline, model), or returns ErrNoCapacity
	// or ErrUnknownModel at once. The caller must Release the lease.
	Reserve(ctx context.Context, p capability.Pipeline, model string) (Lease, error)
	// States reports each served (pipeline, model): warm, capacity, in use.
	States() []ModelState
}

// Lease is one reserved runner slot.
type Lease interface {
	// URL is the runner's base URL, e.g. http://127.0.0.1:8601.
	URL() string
	// Token is the bearer token the runner expects ("" for none).
	Token() string
	// Release returns the slot; safe to call more than once.
	Release()
}

// ModelState is the live state of one (pipeline, model) the orchestrator
// serves; GetOrchestrator advertises it (warm, capacity, capacityInUse).
type ModelState struct {
	Pipeline      capability.Pipeline
	Model         string
	Warm          bool
	Capacity      int // ready runners × per-runner concurrency
	InUse         int
	RunnerVersion string
	PricePerUnit  int64 // wei per PixelsPerUnit units
	PixelsPerUnit int64
}
