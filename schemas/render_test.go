package schemas_test

import (
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
