//go:build chdb

package demo

import "testing"

// TestEmbeddedDemoRanksTheFleet is the default `make demo`: testers,
// leaderboard and explorer-api in one process on embedded ClickHouse (chDB),
// no server. Same promises as the server variant.
func TestEmbeddedDemoRanksTheFleet(t *testing.T) {
	runDemo(t, "embedded")
}
