package results

import (
	"time"
)

// Round is one scheduled round of one region's tester, run or skipped: the
// record that makes a missing round visible (schemas/migrations/0004).
type Round struct {
	RoundID  string
	Region   string
	TesterID string
	Slot     time.Time // the scheduled tick that names the round
	// StartedAt and FinishedAt bound the round as run (both zero when
	// skipped); the offset is between Slot and StartedAt.
	StartedAt  time.Time
	FinishedAt time.Time
	Planned    int // probes planned
	Started    int // probes that started
	Rows       int // result rows the round produced (planned, when nothing is lost)
	Excused    int // of those, excused
	// TesterFaults counts rows excused for the tester's own health
	// (stall, clock jump, network down, control failed).
	TesterFaults int
	Overran      bool   // the round deadline stopped probes
	SkipReason   string // empty when the round ran
}
