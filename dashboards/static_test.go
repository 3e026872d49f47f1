package dashboards

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestProvisionedDatasources: the uids panels point at exist, once each, with
// the plugin types the dashboards were written for.
func TestProvisionedDatasources(t *testing.T) {
	ds := loadDatasources(t)
	seen := map[string]bool{}
	types := map[string]bool{}
	for _, d := range ds {
		if d.UID == "" || d.Type == "" || d.Name == "" {
			t.Errorf("datasource %+v: name, uid and type are all required", d)
		}
		if seen[d.UID] {
			t.Errorf("datasource uid %q provisioned twice", d.UID)
		}
		seen[d.UID] = true
		types[d.Type] = true
		if d.Type == clickhouseType && d.DefaultDatabase == "" {
			t.Errorf("ClickHouse datasource %q has no defaultDatabase: template-variable queries name tables without one", d.UID)
		}
	}
	for _, want := range []string{clickhouseType, prometheusType} {
		if !types[want] {
			t.Errorf("no %s datasource provisioned", want)
		}
	}
}

// TestDashboardProvider: Grafana loads the dashboards from a file provider.
func TestDashboardProvider(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("provisioning", "dashboards", "*.yaml"))
	if len(files) == 0 {
		t.Fatal("no dashboard provider under provisioning/dashboards/")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		for _, want := range []string{"apiVersion: 1", "type: file", "path:"} {
			if !strings.Contains(s, want) {
				t.Errorf("%s: missing %q", f, want)
			}
		}
	}
}

// TestDashboardsWellFormed checks what makes Grafana refuse, duplicate or
// silently break a provisioned dashboard.
func TestDashboardsWellFormed(t *testing.T) {
	provisioned := map[string]provisionedDatasource{}
	for _, d := range loadDatasources(t) {
		provisioned[d.UID] = d
	}
	uids := map[string]string{}
	titles := map[string]string{}
	for _, d := range loadDashboards(t) {
		t.Run(filepath.Base(d.File), func(t *testing.T) {
			// A committed numeric id collides with whatever the target
			// Grafana already stores; provisioning expects null.
			if strings.TrimSpace(string(d.ID)) != "null" {
				t.Errorf(`"id" is %s, want null`, d.ID)
			}
			if d.UID == "" || len(d.UID) > 40 {
				t.Errorf("uid %q: want a stable uid of at most 40 characters", d.UID)
			}
			if other, dup := uids[d.UID]; dup {
				t.Errorf("uid %q also used by %s", d.UID, other)
			}
			uids[d.UID] = d.File
			if other, dup := titles[d.Title]; dup || d.Title == "" {
				t.Errorf("title %q empty or also used by %s", d.Title, other)
			}
			titles[d.Title] = d.File
			if d.SchemaVersion == 0 {
				t.Error("schemaVersion missing")
			}

			checkNoDatasourceNames(t, d.File)

			ref := func(where string, raw json.RawMessage) (dsRef, bool) {
				var r dsRef
				if len(raw) == 0 || string(raw) == "null" {
					t.Errorf("%s: no datasource", where)
					return r, false
				}
				if err := json.Unmarshal(raw, &r); err != nil {
					t.Errorf("%s: datasource %s is not a {type, uid} reference", where, raw)
					return r, false
				}
				p, ok := provisioned[r.UID]
				if !ok {
					t.Errorf("%s: datasource uid %q is not provisioned", where, r.UID)
					return r, false
				}
				if p.Type != r.Type {
					t.Errorf("%s: datasource %q has type %q, provisioned as %q", where, r.UID, r.Type, p.Type)
				}
				return r, true
			}

			for _, v := range d.Templating.List {
				if v.Type == "query" {
					ref("variable "+v.Name, v.Datasource)
				}
			}
			ids := map[int]string{}
			for _, p := range d.allPanels() {
				where := "panel " + p.Title
				if other, dup := ids[p.ID]; dup || p.ID == 0 {
					t.Errorf("%s: id %d missing or also used by %q", where, p.ID, other)
				}
				ids[p.ID] = p.Title
				if p.Type == "row" {
					continue
				}
				pr, ok := ref(where, p.Datasource)
				if len(p.Targets) == 0 {
					t.Errorf("%s: no queries", where)
				}
				refIDs := map[string]bool{}
				for _, tg := range p.Targets {
					tw := where + " target " + tg.RefID
					if refIDs[tg.RefID] || tg.RefID == "" {
						t.Errorf("%s: refId missing or repeated", tw)
					}
					refIDs[tg.RefID] = true
					tr, tok := ref(tw, tg.Datasource)
					if ok && tok && tr != pr {
						t.Errorf("%s: target datasource %v differs from the panel's %v", tw, tr, pr)
					}
					switch tr.Type {
					case clickhouseType:
						checkClickHouseTarget(t, tw, tg, provisioned[tr.UID])
					case prometheusType:
						if strings.TrimSpace(tg.Expr) == "" {
							t.Errorf("%s: empty PromQL", tw)
						}
					}
				}
			}
		})
	}
}

func checkClickHouseTarget(t *testing.T, where string, tg target, ds provisionedDatasource) {
	t.Helper()
	if strings.TrimSpace(tg.Query) == "" {
		t.Errorf("%s: empty SQL", where)
	}
	if tg.Format != "time_series" && tg.Format != "table" {
		t.Errorf("%s: format %q, want time_series or table", where, tg.Format)
	}
	// $table expands to database.table from the target, while variable
	// queries use the datasource's default database: the two must agree or
	// the variables list one database and the panels read another.
	if tg.Database != ds.DefaultDatabase {
		t.Errorf("%s: database %q differs from the datasource's defaultDatabase %q", where, tg.Database, ds.DefaultDatabase)
	}
	if tg.Table == "" || tg.DateTimeColDataType == "" || tg.DateTimeType != "DATETIME" {
		t.Errorf("%s: table, dateTimeColDataType and dateTimeType DATETIME are needed by $table, $timeFilter and $timeSeries", where)
	}
}

// checkNoDatasourceNames walks the raw JSON: a "datasource" given as a plain
// string is a datasource name, which breaks as soon as someone renames it.
func checkNoDatasourceNames(t *testing.T, file string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var walk func(path string, v any)
	walk = func(path string, v any) {
		switch v := v.(type) {
		case map[string]any:
			for k, c := range v {
				if s, ok := c.(string); ok && k == "datasource" {
					t.Errorf("%s.datasource = %q: refer to datasources by {type, uid}, not by name", path, s)
				}
				walk(path+"."+k, c)
			}
		case []any:
			for _, c := range v {
				walk(path+"[]", c)
			}
		}
	}
	walk("$", doc)
}
