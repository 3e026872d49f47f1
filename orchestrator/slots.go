package orchestrator

import "github.com/lpgauge/lpgauge/orchestrator/slots"

// The runner contract lives in orchestrator/slots, below this package, so
// runner hosts (orchestrator/cpurunner, orchestrator/runtime) and this
// package's own tests can use each other without an import cycle; these
// names keep the HTTP layer's spelling.
type (
	Runners    = slots.Runners
	Lease      = slots.Lease
	ModelState = slots.ModelState
)

var (
	ErrNoCapacity   = slots.ErrNoCapacity
	ErrUnknownModel = slots.ErrUnknownModel
)
