package schemas_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/lpgauge/lpgauge/schemas"
)

func renderAll(t *testing.T, opts schemas.Options) map[string][]string {
	t.Helper()
	ms, err := schemas.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, m := range ms {
		stmts, err := m.Render(opts)
		if err != nil {
			t.Fatalf("render %s with %+v: %v", m.Name, opts, err)
		}
		out[m.Name] = stmts
	}
	return out
}

func squash(s string) string { return strings.Join(strings.Fields(s), " ") }

// On one server the templated files render what they rendered before the
// cluster variant existed: same table names, plain engines, nothing else.
func TestOneServerRenderingHasNoClusterParts(t *testing.T) {
	for name, stmts := range renderAll(t, schemas.Options{Database: "db"}) {
		for _, s := range stmts {
			for _, bad := range []string{"ON CLUSTER", "Replicated", "Distributed(", "_local", "{{"} {
				if strings.Contains(s, bad) {
					t.Errorf("%s renders %q on one server:\n%s", name, bad, s)
				}
			}
		}
	}
	raw := renderAll(t, schemas.Options{Database: "db"})["0001_probe_results"]
	if len(raw) != 1 {
		t.Fatalf("0001 renders %d statements on one server, want 1", len(raw))
	}
	got := squash(raw[0])
	for _, want := range []string{
		"CREATE TABLE IF NOT EXISTS db.probe_results ( probe_id String COMMENT 'deterministic id:",
		") ENGINE = MergeTree() PARTITION BY toYYYYMMDD(started_at) ORDER BY (pipeline, model, region, orchestrator, started_at, probe_id)",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("0001 on one server lacks %q:\n%s", want, got)
		}
	}
}

var (
	createTableRE = regexp.MustCompile(`^CREATE TABLE IF NOT EXISTS db\.(\w+) ON CLUSTER lpgauge\b`)
	engineRE      = regexp.MustCompile(`ENGINE = (\w+)\(`)
	viewRE        = regexp.MustCompile(`^CREATE MATERIALIZED VIEW IF NOT EXISTS db\.\w+ ON CLUSTER lpgauge TO db\.(\w+) AS SELECT .* FROM db\.(\w+)`)
)

// On a cluster every statement runs ON CLUSTER, every table that stores rows
// is a Replicated* <name>_local with a Distributed <name> over it, and views
// read and write local tables (each server rolls up the rows it stores).
func TestClusterRenderingReplicatesEveryTable(t *testing.T) {
	local, distributed := map[string]bool{}, map[string]bool{}
	for name, stmts := range renderAll(t, schemas.Options{Database: "db", Cluster: "lpgauge"}) {
		for _, s := range stmts {
			s = squash(s)
			if !strings.Contains(s+" ", " ON CLUSTER lpgauge ") { // a DROP ends with it
				t.Errorf("%s: statement not ON CLUSTER: %s", name, s)
			}
			if strings.Contains(s, "COMMENT '") {
				t.Errorf("%s: column comment left in a cluster statement (18.16 refuses it on the second replica): %.120s", name, s)
			}
			if m := viewRE.FindStringSubmatch(s); m != nil {
				if !strings.HasSuffix(m[1], "_local") || !strings.HasSuffix(m[2], "_local") {
					t.Errorf("%s: view reads %s and writes %s; want local tables on a cluster", name, m[2], m[1])
				}
				continue
			}
			m := createTableRE.FindStringSubmatch(s)
			if m == nil {
				continue
			}
			engine := engineRE.FindStringSubmatch(s)
			switch {
			case engine == nil:
				t.Errorf("%s: CREATE TABLE %s without a recognisable engine", name, m[1])
			case engine[1] == "Distributed":
				distributed[m[1]] = true
				if want := "Distributed(lpgauge, db, " + m[1] + "_local, rand())"; !strings.Contains(s, want) {
					t.Errorf("%s: %s is not %s: %s", name, m[1], want, s)
				}
			case strings.HasPrefix(engine[1], "Replicated"):
				if !strings.HasSuffix(m[1], "_local") {
					t.Errorf("%s: replicated table %s is not named <table>_local", name, m[1])
				}
				local[strings.TrimSuffix(m[1], "_local")] = true
			default:
				t.Errorf("%s: table %s has engine %s on a cluster; want a Replicated* or Distributed engine", name, m[1], engine[1])
			}
		}
	}
	if !local["probe_results"] {
		t.Error("no replicated probe_results_local on a cluster")
	}
	for table := range local {
		if !distributed[table] {
			t.Errorf("%s_local has no Distributed %s over it: writers and readers use the plain name", table, table)
		}
	}
}

func TestTemplateHelpers(t *testing.T) {
	for _, tc := range []struct {
		tmpl, one, cluster string
	}{
		{`{{.Engine "t" "MergeTree"}}`, `MergeTree()`,
			`ReplicatedMergeTree('/clickhouse/tables/{shard}/db/t', '{replica}')`},
		{`{{.Engine "t" "ReplacingMergeTree" "inserted_at"}}`, `ReplacingMergeTree(inserted_at)`,
			`ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/t', '{replica}', inserted_at)`},
		{`{{.Engine "t" "AggregatingMergeTree"}}`, `AggregatingMergeTree()`,
			`ReplicatedAggregatingMergeTree('/clickhouse/tables/{shard}/db/t', '{replica}')`},
		{`CREATE TABLE {{.DB}}.{{.Local "t"}} {{.OnCluster}} (a UInt8)`, `CREATE TABLE db.t  (a UInt8)`,
			`CREATE TABLE db.t_local ON CLUSTER lpgauge (a UInt8)`},
		{`{{.Distributed "t"}}`, ``,
			`CREATE TABLE IF NOT EXISTS db.t ON CLUSTER lpgauge AS db.t_local ENGINE = Distributed(lpgauge, db, t_local, rand())`},
		{`{{if .Cluster}}cluster only{{end}}`, ``, `cluster only`},
		// Comments go on a cluster, string literals that look like them stay.
		{`(a String COMMENT 'it\'s a', b String DEFAULT 'x COMMENT ''', c UInt8 comment 'c')`,
			`(a String COMMENT 'it\'s a', b String DEFAULT 'x COMMENT ''', c UInt8 comment 'c')`,
			`(a String , b String DEFAULT 'x COMMENT ''', c UInt8 )`},
	} {
		m := schemas.Migration{Version: 1, Name: "helper", Statements: []string{tc.tmpl}}
		for _, v := range []struct{ cluster, want string }{{"", tc.one}, {"lpgauge", tc.cluster}} {
			got, err := m.Render(schemas.Options{Database: "db", Cluster: v.cluster})
			if err != nil {
				t.Errorf("%s (cluster %q): %v", tc.tmpl, v.cluster, err)
				continue
			}
			if v.want == "" {
				if len(got) != 0 {
					t.Errorf("%s (cluster %q) = %q; want no statement", tc.tmpl, v.cluster, got)
				}
				continue
			}
			if len(got) != 1 || got[0] != v.want {
				t.Errorf("%s (cluster %q) = %q; want %q", tc.tmpl, v.cluster, got, v.want)
			}
		}
	}
	for _, bad := range []string{`{{.Engine "t" "Log"}}`, `{{.Engine "t; DROP" "MergeTree"}}`, `{{.Nope}}`} {
		m := schemas.Migration{Version: 1, Name: "bad", Statements: []string{bad}}
		if _, err := m.Render(schemas.Options{Database: "db", Cluster: "lpgauge"}); err == nil {
			t.Errorf("%s renders without error", bad)
		}
	}
	if _, err := (schemas.Migration{}).Render(schemas.Options{Database: "db", Cluster: "bad name"}); err == nil {
		t.Error("an invalid cluster name renders without error")
	}
}
