// Package rooms is the import-direction rule table of ARCHITECTURE.md: which
// room every package of the module lives in, and which rooms each room may
// import. rooms_test.go checks every import of the module against it and
// checks that ARCHITECTURE.md quotes it as Markdown() renders it.
package rooms

import (
	"fmt"
	"sort"
	"strings"
)

// Room is a set of packages with one job at one height of the tree.
type Room struct {
	// Name is how MayImport entries refer to the room; it contains no "/".
	Name string
	// Packages are module-relative patterns: "x" is the package x, "x/..."
	// is x and every package below it. A package belongs to the room with
	// the longest matching pattern.
	Packages []string
	// MayImport lists the rooms (by name) and single packages (by pattern,
	// they contain a "/" or match one package) whose packages this room's
	// non-test files may import. A room may always import its own packages.
	MayImport []string
	// Job says what the room owns, in a sentence.
	Job string
}

// Table is the rule table, bottom to top. Test files (_test.go) may import
// any package of the module: end-to-end tests put both sides of a wire
// together on purpose. Only non-test files are held to MayImport.
var Table = []Room{
	{Name: "foundation",
		Packages: []string{"internal/...", "schemas/...", "contracts/..."},
		Job:      "ClickHouse clients, servers and migrations, the go-livepeer wire types (schemas/proto/lpnet), the contract bindings, process and HTTP plumbing; no knowledge of probes or scores"},
	{Name: "cli",
		Packages:  []string{"internal/cli/..."},
		MayImport: []string{"internal/httpserve"},
		Job:       "one flag, log and serving set-up for every binary"},
	{Name: "vocabulary",
		Packages:  []string{"capability", "regions", "internal/results"},
		MayImport: []string{"foundation"},
		Job:       "the shared words: pipelines and capabilities, regions, the result and round rows"},
	{Name: "rows",
		Packages:  []string{"internal/results/resultsdb"},
		MayImport: []string{"foundation", "vocabulary"},
		Job:       "the one INSERT of result and round rows into ClickHouse"},
	{Name: "media",
		Packages:  []string{"media/..."},
		MayImport: []string{"foundation", "vocabulary"},
		Job:       "media codecs: PNG, MP4, WAV written and checked byte by byte"},
	{Name: "protocol",
		Packages:  []string{"gateway/..."},
		MayImport: []string{"foundation", "vocabulary", "media"},
		Job:       "the go-livepeer gateway side of the wire: discovery, OrchestratorInfo, payments (gateway/pm), AI requests"},
	{Name: "orchestrator",
		Packages:  []string{"orchestrator/..."},
		MayImport: []string{"foundation", "cli", "vocabulary", "media", "protocol"},
		Job:       "the reference orchestrator: AI endpoints, runners (CPU, Docker, external), GPUs, payments received"},
	{Name: "tester",
		Packages:  []string{"tester/..."},
		MayImport: []string{"foundation", "cli", "vocabulary", "rows", "media", "protocol"},
		Job:       "one region's tester: plan rounds, probe every orchestrator, classify errors, write rows"},
	{Name: "rigs",
		Packages:  []string{"tester/orchtest"},
		MayImport: []string{"foundation", "vocabulary", "rows", "media", "protocol", "orchestrator", "tester"},
		Job:       "test rigs that put a tester and a reference orchestrator together; imported by tests only"},
	{Name: "leaderboard",
		Packages:  []string{"leaderboard/..."},
		MayImport: []string{"foundation", "cli", "vocabulary", "rows"},
		Job:       "the leaderboard: store queries and rollups, scores, the HTTP API"},
	{Name: "explorer",
		Packages:  []string{"explorer-api/..."},
		MayImport: []string{"foundation", "cli", "vocabulary", "rows", "gateway/discovery", "leaderboard"},
		Job:       "the Explorer's AI leaderboard data and web page, on the leaderboard store"},
	{Name: "demo",
		Packages:  []string{"demo/..."},
		MayImport: []string{"foundation", "cli", "vocabulary", "rows", "media", "protocol", "orchestrator", "tester", "rigs", "leaderboard", "explorer"},
		Job:       "the whole loop on one machine, as a library for cmd/demo"},
	{Name: "testonly",
		Packages:  []string{"conformance", "faults", "dashboards"},
		MayImport: []string{"foundation", "cli", "vocabulary", "rows", "media", "protocol", "orchestrator", "tester", "rigs", "leaderboard", "explorer", "demo"},
		Job:       "suites with no library code: go-livepeer conformance, the fault suite, the Grafana dashboards"},
	{Name: "cmd",
		Packages:  []string{"cmd/..."},
		MayImport: []string{"foundation", "cli", "vocabulary", "rows", "media", "protocol", "orchestrator", "tester", "leaderboard", "explorer", "demo"},
		Job:       "the binaries: wiring only (flags, config, components, run, ordered shutdown)"},
}

// match reports how specifically pattern matches pkg: the pattern's length,
// or -1 for no match.
func match(pattern, pkg string) int {
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		if pkg == base || strings.HasPrefix(pkg, base+"/") {
			return len(base)
		}
		return -1
	}
	if pkg == pattern {
		return len(pattern)
	}
	return -1
}

// RoomOf returns the room of a module-relative package path, or false when
// no room claims it (every package must be placed).
func RoomOf(pkg string) (Room, bool) {
	best, at := -1, -1
	for i, r := range Table {
		for _, p := range r.Packages {
			if n := match(p, pkg); n > best {
				best, at = n, i
			}
		}
	}
	if at < 0 {
		return Room{}, false
	}
	return Table[at], true
}

// Allowed reports whether a non-test file of package from may import
// package to (both module-relative); when not, the error says which rule.
func Allowed(from, to string) error {
	rf, ok := RoomOf(from)
	if !ok {
		return fmt.Errorf("package %s is in no room: add it to internal/rooms.Table and ARCHITECTURE.md", from)
	}
	rt, ok := RoomOf(to)
	if !ok {
		return fmt.Errorf("package %s is in no room: add it to internal/rooms.Table and ARCHITECTURE.md", to)
	}
	if rf.Name == rt.Name {
		return nil
	}
	for _, m := range rf.MayImport {
		if m == rt.Name || (strings.Contains(m, "/") && match(m, to) >= 0) {
			return nil
		}
	}
	return fmt.Errorf("room %s (%s) may not import room %s (%s); it may import: %s",
		rf.Name, from, rt.Name, to, strings.Join(rf.MayImport, ", "))
}

// Markdown renders Table as the table ARCHITECTURE.md quotes.
func Markdown() string {
	var b strings.Builder
	b.WriteString("| room | packages | may import | job |\n| --- | --- | --- | --- |\n")
	for _, r := range Table {
		pk := append([]string(nil), r.Packages...)
		sort.Strings(pk)
		may := "—"
		if len(r.MayImport) > 0 {
			may = strings.Join(r.MayImport, ", ")
		}
		fmt.Fprintf(&b, "| %s | `%s` | %s | %s |\n", r.Name, strings.Join(pk, "`, `"), may, r.Job)
	}
	return b.String()
}
