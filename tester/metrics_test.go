package tester

import (
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// An operator must see when discovery fails: rounds then probe a stale set.
func TestDiscoveryFailuresCounted(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry(), "FRA", "0x0000000000000000000000000000000000000001")
	m.Round(Summary{})
	m.Round(Summary{PlanErr: errors.New("webhook down")})
	if got := testutil.ToFloat64(m.PlanFailures); got != 1 {
		t.Fatalf("tester_discovery_failures_total = %v after one failed discovery, want 1", got)
	}
	if got := testutil.ToFloat64(m.Rounds); got != 2 {
		t.Fatalf("tester_rounds_total = %v, want 2", got)
	}
}
