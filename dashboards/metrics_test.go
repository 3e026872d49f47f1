package dashboards

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

// metric is one line of metrics.txt.
type metric struct {
	Name, Type string
	Labels     []string
}

var (
	metricNameRE = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelNameRE  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

func loadMetrics(t *testing.T) map[string]metric {
	t.Helper()
	fh, err := os.Open("metrics.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	out := map[string]metric{}
	sc := bufio.NewScanner(fh)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 {
			t.Fatalf("metrics.txt:%d: want name, type, labels and help", n)
		}
		m := metric{Name: f[0], Type: f[1]}
		if f[2] != "-" {
			m.Labels = strings.Split(f[2], ",")
		}
		if _, dup := out[m.Name]; dup {
			t.Errorf("metrics.txt:%d: %s listed twice", n, m.Name)
		}
		out[m.Name] = m
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestMetricsFollowNamingRules: the list is what binaries will export, so it
// must already satisfy the project's metric rules (and promtool's).
func TestMetricsFollowNamingRules(t *testing.T) {
	for _, m := range loadMetrics(t) {
		if !metricNameRE.MatchString(m.Name) {
			t.Errorf("%s: not a valid metric name", m.Name)
		}
		prefix, _, _ := strings.Cut(m.Name, "_")
		if !slices.Contains([]string{"tester", "leaderboard", "orchestrator"}, prefix) {
			t.Errorf("%s: want the prefix of the binary that exports it (tester_, leaderboard_, orchestrator_)", m.Name)
		}
		switch m.Type {
		case "counter":
			if !strings.HasSuffix(m.Name, "_total") {
				t.Errorf("%s: counters end in _total", m.Name)
			}
		case "gauge", "histogram":
			if strings.HasSuffix(m.Name, "_total") {
				t.Errorf("%s: only counters end in _total", m.Name)
			}
			if m.Type == "histogram" && !strings.HasSuffix(m.Name, "_seconds") && !strings.HasSuffix(m.Name, "_bytes") {
				t.Errorf("%s: histograms here measure time or size in base units (_seconds, _bytes)", m.Name)
			}
		default:
			t.Errorf("%s: type %q, want counter, gauge or histogram", m.Name, m.Type)
		}
		for _, l := range m.Labels {
			if !labelNameRE.MatchString(l) || strings.HasPrefix(l, "__") || l == "le" {
				t.Errorf("%s: label %q is not usable", m.Name, l)
			}
			// Unbounded label values belong in ClickHouse, not in Prometheus.
			if slices.Contains([]string{"orchestrator", "address", "probe_id", "service_uri"}, l) {
				t.Errorf("%s: label %q has one value per orchestrator or probe", m.Name, l)
			}
		}
	}
}

// TestPrometheusPanelsUseListedMetrics: a panel that queries a metric or a
// label no binary exports shows "No data" forever.
func TestPrometheusPanelsUseListedMetrics(t *testing.T) {
	metrics := loadMetrics(t)
	used := map[string]bool{}
	for _, d := range loadDashboards(t) {
		for _, v := range d.Templating.List {
			if v.Type != "query" || !strings.Contains(string(v.Datasource), prometheusType) {
				continue
			}
			q := v.queryText()
			m := labelValuesRE.FindStringSubmatch(q)
			if m == nil {
				t.Errorf("%s: variable %s: query %q is not label_values(metric, label)", d.File, v.Name, q)
				continue
			}
			checkSeries(t, d.File+" variable "+v.Name, metrics, []string{m[1]}, []string{m[2]}, used)
		}
		for _, p := range d.allPanels() {
			for _, tg := range p.Targets {
				if tg.Expr == "" {
					continue
				}
				where := fmt.Sprintf("%s panel %q target %s", d.File, p.Title, tg.RefID)
				names, labels, err := promSeries(tg.Expr)
				if err != nil {
					t.Errorf("%s: %v", where, err)
					continue
				}
				if len(names) == 0 {
					t.Errorf("%s: no metric in %q", where, tg.Expr)
				}
				for _, m := range legendRE.FindAllStringSubmatch(tg.LegendFormat, -1) {
					labels = append(labels, m[1])
				}
				checkSeries(t, where, metrics, names, labels, used)
			}
		}
	}
	var unused []string
	for name := range metrics {
		if !used[name] {
			unused = append(unused, name)
		}
	}
	sort.Strings(unused)
	if len(unused) > 0 {
		// Not an error: a metric may serve alerts, but the list should not rot.
		t.Logf("listed but not charted: %s", strings.Join(unused, ", "))
	}
}

var (
	labelValuesRE = regexp.MustCompile(`^\s*label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$`)
	legendRE      = regexp.MustCompile(`\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)
)

// checkSeries resolves each series name to a listed metric (a histogram's
// _bucket/_sum/_count to its base) and each label to one those metrics carry.
func checkSeries(t *testing.T, where string, metrics map[string]metric, names, labels []string, used map[string]bool) {
	t.Helper()
	have := map[string]bool{}
	for _, n := range names {
		m, ok := metrics[n]
		if !ok {
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if base, cut := strings.CutSuffix(n, suffix); cut {
					if hm, hok := metrics[base]; hok && hm.Type == "histogram" {
						m, ok = hm, true
						if suffix == "_bucket" {
							have["le"] = true
						}
					}
				}
			}
		}
		if !ok {
			t.Errorf("%s: metric %s is not in metrics.txt", where, n)
			continue
		}
		used[m.Name] = true
		for _, l := range m.Labels {
			have[l] = true
		}
	}
	for _, l := range labels {
		// job and instance are attached by Prometheus to every scraped series.
		if !have[l] && l != "job" && l != "instance" {
			t.Errorf("%s: label %q is carried by none of %v", where, l, names)
		}
	}
}

// promAggregations may be followed by a by/without clause instead of "(".
var promKeywords = map[string]bool{
	"sum": true, "min": true, "max": true, "avg": true, "group": true, "stddev": true, "stdvar": true,
	"count": true, "count_values": true, "bottomk": true, "topk": true, "quantile": true, "limitk": true, "limit_ratio": true,
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
	"bool": true, "and": true, "or": true, "unless": true, "offset": true, "atan2": true, "inf": true, "nan": true,
}

// promSeries returns the metric names and label names a PromQL expression
// uses. It is a tokenizer, not a parser: enough for dashboard queries, and it
// fails loudly on what it cannot read rather than guessing.
func promSeries(expr string) (names, labels []string, err error) {
	s := expr
	i := 0
	isIdentStart := func(c byte) bool { return c == '_' || c == ':' || (c|0x20 >= 'a' && c|0x20 <= 'z') }
	isIdent := func(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }
	skipSpace := func() {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n') {
			i++
		}
	}
	readIdent := func() string {
		j := i
		for i < len(s) && isIdent(s[i]) {
			i++
		}
		return s[j:i]
	}
	skipString := func() error {
		q := s[i]
		for i++; i < len(s); i++ {
			if s[i] == '\\' {
				i++
				continue
			}
			if s[i] == q {
				i++
				return nil
			}
		}
		return fmt.Errorf("unterminated string in %q", expr)
	}
	// labelList reads "(a, b)" after by/without/on/ignoring/group_*.
	labelList := func() error {
		skipSpace()
		if i >= len(s) || s[i] != '(' {
			return nil // group_left without labels
		}
		end := strings.IndexByte(s[i:], ')')
		if end < 0 {
			return fmt.Errorf("unclosed label list in %q", expr)
		}
		for _, l := range strings.Split(s[i+1:i+end], ",") {
			if l = strings.TrimSpace(l); l != "" {
				labels = append(labels, l)
			}
		}
		i += end + 1
		return nil
	}
	for i < len(s) {
		c := s[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			if err := skipString(); err != nil {
				return nil, nil, err
			}
		case c == '[':
			end := strings.IndexByte(s[i:], ']')
			if end < 0 {
				return nil, nil, fmt.Errorf("unclosed range in %q", expr)
			}
			i += end + 1
		case c == '{':
			// Label matchers: name op "value", ...
			for i++; ; {
				skipSpace()
				if i >= len(s) {
					return nil, nil, fmt.Errorf("unclosed matcher in %q", expr)
				}
				if s[i] == '}' {
					i++
					break
				}
				if s[i] == ',' {
					i++
					continue
				}
				if !isIdentStart(s[i]) {
					return nil, nil, fmt.Errorf("unexpected %q in matcher of %q", s[i], expr)
				}
				labels = append(labels, readIdent())
				skipSpace()
				for i < len(s) && strings.IndexByte("=!~", s[i]) >= 0 {
					i++
				}
				skipSpace()
				if i >= len(s) || (s[i] != '"' && s[i] != '\'' && s[i] != '`') {
					return nil, nil, fmt.Errorf("matcher without a quoted value in %q", expr)
				}
				if err := skipString(); err != nil {
					return nil, nil, err
				}
			}
		case c == '$':
			// A Grafana variable outside a string or range: skip its name.
			i++
			if i < len(s) && s[i] == '{' {
				end := strings.IndexByte(s[i:], '}')
				if end < 0 {
					return nil, nil, fmt.Errorf("unclosed ${ in %q", expr)
				}
				i += end + 1
			} else {
				readIdent()
			}
		case c >= '0' && c <= '9' || c == '.':
			for i < len(s) && (isIdent(s[i]) || s[i] == '.') {
				i++ // numbers and durations such as 0.95, 1e6, 5m
			}
		case isIdentStart(c):
			word := readIdent()
			j := i
			skipSpace()
			next := byte(0)
			if i < len(s) {
				next = s[i]
			}
			i = j
			switch {
			case word == "by" || word == "without" || word == "on" || word == "ignoring" || word == "group_left" || word == "group_right":
				if err := labelList(); err != nil {
					return nil, nil, err
				}
			case promKeywords[word]:
			case next == '(':
				// a function call
			default:
				names = append(names, word)
			}
		default:
			i++
		}
	}
	return names, labels, nil
}

func TestPromSeries(t *testing.T) {
	for _, tc := range []struct {
		expr          string
		names, labels []string
	}{
		{`sum by (region, le) (rate(tester_round_duration_seconds_bucket{region=~"$region"}[$__rate_interval]))`,
			[]string{"tester_round_duration_seconds_bucket"}, []string{"region", "le", "region"}},
		{`time() - max by (region) (tester_last_round_end_timestamp_seconds)`,
			[]string{"tester_last_round_end_timestamp_seconds"}, []string{"region"}},
		{`sum(rate(a_total{code=~"5..", x!="}"}[5m])) / sum(rate(a_total[5m])) * 100`,
			[]string{"a_total", "a_total"}, []string{"code", "x"}},
		{`histogram_quantile(0.95, sum without (instance) (rate(b_bucket[1h] offset 1d)))`,
			[]string{"b_bucket"}, []string{"instance"}},
	} {
		names, labels, err := promSeries(tc.expr)
		if err != nil {
			t.Errorf("%s: %v", tc.expr, err)
			continue
		}
		if !slices.Equal(names, tc.names) || !slices.Equal(labels, tc.labels) {
			t.Errorf("%s: got %v %v, want %v %v", tc.expr, names, labels, tc.names, tc.labels)
		}
	}
}
