package dashboards

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// The shapes below hold only what the tests check; Grafana's JSON has more.

type dashboard struct {
	File          string          `json:"-"`
	ID            json.RawMessage `json:"id"`
	UID           string          `json:"uid"`
	Title         string          `json:"title"`
	SchemaVersion int             `json:"schemaVersion"`
	Templating    struct {
		List []variable `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type variable struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Datasource json.RawMessage `json:"datasource"`
	Query      json.RawMessage `json:"query"`
	Multi      bool            `json:"multi"`
	IncludeAll bool            `json:"includeAll"`
}

// queryText returns a variable's query whether Grafana stored it as a string
// (ClickHouse plugin) or as an object (Prometheus variable editor).
func (v variable) queryText() string {
	var s string
	if json.Unmarshal(v.Query, &s) == nil {
		return s
	}
	var o struct {
		Query string `json:"query"`
	}
	_ = json.Unmarshal(v.Query, &o)
	return o.Query
}

type panel struct {
	ID          int             `json:"id"`
	Type        string          `json:"type"`
	Title       string          `json:"title"`
	Datasource  json.RawMessage `json:"datasource"`
	Targets     []target        `json:"targets"`
	Panels      []panel         `json:"panels"` // a collapsed row keeps its panels here
	FieldConfig struct {
		Overrides []struct {
			Matcher struct {
				ID      string `json:"id"`
				Options any    `json:"options"`
			} `json:"matcher"`
		} `json:"overrides"`
	} `json:"fieldConfig"`
}

type target struct {
	RefID      string          `json:"refId"`
	Datasource json.RawMessage `json:"datasource"`
	// Altinity ClickHouse plugin fields.
	Query               string `json:"query"`
	Format              string `json:"format"`
	Database            string `json:"database"`
	Table               string `json:"table"`
	DateTimeColDataType string `json:"dateTimeColDataType"`
	DateTimeType        string `json:"dateTimeType"`
	DateColDataType     string `json:"dateColDataType"`
	// Prometheus fields.
	Expr         string `json:"expr"`
	LegendFormat string `json:"legendFormat"`
}

type dsRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

const (
	clickhouseType = "vertamedia-clickhouse-datasource"
	prometheusType = "prometheus"
)

// allPanels flattens rows, so nested panels get the same checks.
func (d dashboard) allPanels() []panel {
	var out []panel
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	return out
}

func loadDashboards(t *testing.T) []dashboard {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("json", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards under json/ (err %v)", err)
	}
	sort.Strings(files)
	var out []dashboard
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d dashboard
		if err := json.Unmarshal(b, &d); err != nil {
			t.Fatalf("%s: not valid dashboard JSON: %v", f, err)
		}
		d.File = f
		out = append(out, d)
	}
	return out
}

// provisionedDatasource is one entry of provisioning/datasources/*.yaml.
type provisionedDatasource struct {
	Name, UID, Type, DefaultDatabase string
}

// loadDatasources reads the provisioning YAML with a line scanner: the files
// are ours and flat, and the module has no YAML dependency to spend on it.
func loadDatasources(t *testing.T) []provisionedDatasource {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join("provisioning", "datasources", "*.yaml"))
	if len(files) == 0 {
		t.Fatal("no datasource provisioning under provisioning/datasources/")
	}
	var out []provisionedDatasource
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			line := sc.Text()
			if i := strings.Index(line, "#"); i >= 0 {
				line = line[:i]
			}
			line = strings.TrimSpace(line)
			if rest, ok := strings.CutPrefix(line, "- "); ok {
				out = append(out, provisionedDatasource{})
				line = rest
			}
			key, val, ok := strings.Cut(line, ":")
			if !ok || len(out) == 0 {
				continue
			}
			val = strings.Trim(strings.TrimSpace(val), `"'`)
			cur := &out[len(out)-1]
			switch strings.TrimSpace(key) {
			case "name":
				cur.Name = val
			case "uid":
				cur.UID = val
			case "type":
				cur.Type = val
			case "defaultDatabase":
				cur.DefaultDatabase = val
			}
		}
		fh.Close()
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
	}
	return out
}
