package tester

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// benchFleet reads LPGAUGE_BENCH_FLEET (ORCHSxMODELS, default 24x2): how many
// fake orchestrators BenchmarkServerPhaseAccuracy starts and how many
// text-to-image models each advertises.
func benchFleet(b *testing.B) (int, []Model) {
	orchs, n := 24, 2
	if v := os.Getenv("LPGAUGE_BENCH_FLEET"); v != "" {
		if _, err := fmt.Sscanf(v, "%dx%d", &orchs, &n); err != nil || orchs <= 0 || n <= 0 {
			b.Fatalf("LPGAUGE_BENCH_FLEET=%q: want ORCHSxMODELS, e.g. 500x4", v)
		}
	}
	var specs []string
	for i := range n {
		specs = append(specs, fmt.Sprintf("text-to-image:model-%d", i))
	}
	models, err := ParseModels(strings.Join(specs, ","))
	if err != nil {
		b.Fatal(err)
	}
	return orchs, models
}
