// Package regions is the catalogue of tester regions: codes compatible with
// leaderboard-serverless (so the Explorer's region list keeps working), the
// job types each region serves, where it is, and the per-region tester
// settings (stagger offset, simulated network distance for local runs).
package regions

import (
	"fmt"
	"sort"
	"strings"
	"time"
)

// JobType is what a region tests.
type JobType string

const (
	Transcoding JobType = "transcoding"
	AI          JobType = "ai"
)

// Global is the pseudo-region for aggregates over all regions.
const Global = "GLOBAL"

// Region is one catalogue entry.
type Region struct {
	Code     string
	Name     string
	Lat, Lon float64
	JobTypes []JobType
	// Offset is this region's share of the round interval by which its tester
	// delays each round, so two regions never probe one orchestrator at the
	// same moment (0 ≤ Offset < 1).
	Offset float64
	// SimulatedRTT is the one-way network distance a local simulation adds to
	// every connection from this region (the demo's way of making regions differ).
	SimulatedRTT time.Duration
}

// Has reports whether the region serves job type jt.
func (r Region) Has(jt JobType) bool {
	for _, t := range r.JobTypes {
		if t == jt {
			return true
		}
	}
	return false
}

var both = []JobType{Transcoding, AI}
var tc = []JobType{Transcoding}

// catalogue holds leaderboard-serverless's seeded codes (transcoding) and the
// AI regions (its GLOBAL, MDW, FRA, LAX plus the ones testers asked for).
var catalogue = []Region{
	{Code: Global, Name: "Global", JobTypes: both},
	{Code: "MDW", Name: "Chicago", Lat: 41.88, Lon: -87.63, JobTypes: both, Offset: 0.10, SimulatedRTT: 6 * time.Millisecond},
	{Code: "FRA", Name: "Frankfurt", Lat: 50.11, Lon: 8.68, JobTypes: both, Offset: 0.00, SimulatedRTT: 2 * time.Millisecond},
	{Code: "LAX", Name: "Los Angeles", Lat: 34.05, Lon: -118.24, JobTypes: both, Offset: 0.50, SimulatedRTT: 12 * time.Millisecond},
	{Code: "SIN", Name: "Singapore", Lat: 1.35, Lon: 103.82, JobTypes: both, Offset: 0.70, SimulatedRTT: 25 * time.Millisecond},
	{Code: "SAO", Name: "Sao Paulo", Lat: -23.55, Lon: -46.63, JobTypes: both, Offset: 0.30, SimulatedRTT: 20 * time.Millisecond},
	{Code: "NYC", Name: "New York City", Lat: 40.71, Lon: -74.01, JobTypes: both, Offset: 0.20, SimulatedRTT: 5 * time.Millisecond},
	{Code: "LON", Name: "London", Lat: 51.51, Lon: -0.13, JobTypes: both, Offset: 0.05, SimulatedRTT: 3 * time.Millisecond},
	{Code: "ATL", Name: "Atlanta", Lat: 33.75, Lon: -84.39, JobTypes: tc},
	{Code: "ATL2", Name: "Atlanta 2", Lat: 33.75, Lon: -84.39, JobTypes: tc},
	{Code: "HOU", Name: "Houston", Lat: 29.76, Lon: -95.37, JobTypes: tc},
	{Code: "MAD", Name: "Madrid", Lat: 40.42, Lon: -3.70, JobTypes: tc},
	{Code: "MIA", Name: "Miami", Lat: 25.76, Lon: -80.19, JobTypes: tc},
	{Code: "MOS2", Name: "Moscow 2", Lat: 55.76, Lon: 37.62, JobTypes: tc},
	{Code: "ASH", Name: "Nashua", Lat: 42.77, Lon: -71.47, JobTypes: tc},
	{Code: "PRG", Name: "Prague", Lat: 50.08, Lon: 14.44, JobTypes: tc},
	{Code: "SJO", Name: "San Jose", Lat: 37.34, Lon: -121.89, JobTypes: tc},
	{Code: "SEA", Name: "Seattle", Lat: 47.61, Lon: -122.33, JobTypes: tc},
	{Code: "STO", Name: "Stockholm", Lat: 59.33, Lon: 18.07, JobTypes: tc},
	{Code: "SYD", Name: "Sydney", Lat: -33.87, Lon: 151.21, JobTypes: tc},
	{Code: "HND", Name: "Tokyo", Lat: 35.68, Lon: 139.69, JobTypes: tc},
	{Code: "TOR", Name: "Toronto", Lat: 43.65, Lon: -79.38, JobTypes: tc},
}

// All returns the catalogue sorted by code.
func All() []Region {
	out := append([]Region(nil), catalogue...)
	sort.Slice(out, func(i, j int) bool { return out[i].Code < out[j].Code })
	return out
}

// Lookup finds a region by code, case-insensitively.
func Lookup(code string) (Region, bool) {
	code = strings.ToUpper(strings.TrimSpace(code))
	for _, r := range catalogue {
		if r.Code == code {
			return r, true
		}
	}
	return Region{}, false
}

// ForTester validates the region a tester runs as: it must exist, serve AI
// jobs, and not be the GLOBAL aggregate.
func ForTester(code string) (Region, error) {
	r, ok := Lookup(code)
	switch {
	case !ok:
		return Region{}, fmt.Errorf("unknown region %q: use one of %s", code, strings.Join(Codes(AI), ", "))
	case r.Code == Global:
		return Region{}, fmt.Errorf("region GLOBAL is an aggregate; a tester runs in one real region (%s)", strings.Join(Codes(AI), ", "))
	case !r.Has(AI):
		return Region{}, fmt.Errorf("region %s tests transcoding only; AI testers run in %s", r.Code, strings.Join(Codes(AI), ", "))
	}
	return r, nil
}

// Codes lists the real (non-GLOBAL) region codes serving jt, sorted.
func Codes(jt JobType) []string {
	var out []string
	for _, r := range All() {
		if r.Code != Global && r.Has(jt) {
			out = append(out, r.Code)
		}
	}
	return out
}
