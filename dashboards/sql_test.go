package dashboards

import (
	"context"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/lpgauge/lpgauge/internal/chtest"
	"github.com/lpgauge/lpgauge/internal/results"
	"github.com/lpgauge/lpgauge/internal/results/resultsdb"
)

func TestMain(m *testing.M) { chtest.Main(m) }

// window is the dashboard time range the tests pick; the seed rows lie in it.
type window struct {
	from, to time.Time
	interval int // seconds, what Grafana's "group by" interval gives $interval
}

// selection is one template variable as a user has set it.
type selection struct {
	quoted bool     // multi-value or include-all: the plugin quotes and joins values
	all    bool     // "All" selected: $conditionalTest drops its predicate
	values []string // the selected values (every option when all)
}

// expandSQL does what the Altinity plugin does to a query before it sends it:
// $conditionalTest, the time macros, $table, then template variables. An
// unknown $name is an error, because the plugin would send it verbatim and
// ClickHouse would reject the panel's query.
func expandSQL(sql string, tg *target, db string, w window, vars map[string]selection) (string, error) {
	sql, err := expandCall(sql, "$conditionalTest", func(args string) (string, error) {
		cut := strings.LastIndexByte(args, ',')
		if cut < 0 {
			return "", fmt.Errorf("$conditionalTest(%s): want (predicate, $variable)", args)
		}
		name := strings.Trim(strings.TrimSpace(args[cut+1:]), "${}")
		sel, ok := vars[name]
		if !ok {
			return "", fmt.Errorf("$conditionalTest on unknown variable %q", name)
		}
		if sel.all {
			return "", nil
		}
		return args[:cut], nil
	})
	if err != nil {
		return "", err
	}
	from, to := strconv.FormatInt(w.from.Unix(), 10), strconv.FormatInt(w.to.Unix(), 10)
	between := func(col string) string {
		return fmt.Sprintf("%s >= toDateTime(%s) AND %s <= toDateTime(%s)", col, from, col, to)
	}
	sql, err = expandCall(sql, "$timeFilterByColumn", func(col string) (string, error) {
		return between(strings.TrimSpace(col)), nil
	})
	if err != nil {
		return "", err
	}
	var firstErr error
	fail := func(format string, a ...any) string {
		if firstErr == nil {
			firstErr = fmt.Errorf(format, a...)
		}
		return ""
	}
	sql = macroRE.ReplaceAllStringFunc(sql, func(m string) string {
		name := strings.Trim(m, "${}[]")
		if tg == nil && (name == "table" || name == "dateTimeCol" || name == "timeFilter" || name == "timeSeries") {
			return fail("$%s needs a panel target (variable queries have no table settings)", name)
		}
		switch name {
		case "table":
			return db + "." + tg.Table
		case "dateTimeCol":
			return tg.DateTimeColDataType
		case "timeFilter":
			if tg.DateColDataType != "" {
				return fmt.Sprintf("%s >= toDate(%s) AND %s <= toDate(%s) AND %s",
					tg.DateColDataType, from, tg.DateColDataType, to, between(tg.DateTimeColDataType))
			}
			return between(tg.DateTimeColDataType)
		case "timeSeries":
			return fmt.Sprintf("(intDiv(toUInt32(%s), %d) * %d) * 1000", tg.DateTimeColDataType, w.interval, w.interval)
		case "from":
			return from
		case "to":
			return to
		case "interval":
			return strconv.Itoa(w.interval)
		}
		sel, ok := vars[name]
		if !ok {
			return fail("unknown macro or variable %s", m)
		}
		if !sel.quoted {
			if len(sel.values) != 1 {
				return fail("single-value variable %s has %d values", name, len(sel.values))
			}
			return sel.values[0]
		}
		q := make([]string, len(sel.values))
		for i, v := range sel.values {
			q[i] = quoteValue(v)
		}
		return strings.Join(q, ",")
	})
	return sql, firstErr
}

var macroRE = regexp.MustCompile(`\$\{\w+\}|\$\w+|\[\[\w+\]\]`)

// quoteValue quotes like the plugin's clickhouseEscape: numbers stay bare.
func quoteValue(v string) string {
	if _, err := strconv.ParseFloat(v, 64); err == nil {
		return v
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// expandCall replaces every name(args) with fn(args), matching parentheses.
func expandCall(sql, name string, fn func(args string) (string, error)) (string, error) {
	for {
		start := strings.Index(sql, name+"(")
		if start < 0 {
			return sql, nil
		}
		open := start + len(name)
		depth, end := 0, -1
		for i := open; i < len(sql) && end < 0; i++ {
			switch sql[i] {
			case '(':
				depth++
			case ')':
				if depth--; depth == 0 {
					end = i
				}
			}
		}
		if end < 0 {
			return "", fmt.Errorf("%s( without its closing parenthesis", name)
		}
		repl, err := fn(sql[open+1 : end])
		if err != nil {
			return "", err
		}
		sql = sql[:start] + repl + sql[end+1:]
	}
}

// seed writes a small network: three orchestrators, two regions, three
// pipelines (one of them streamed LLM, with time to first token and tokens),
// every outcome, warm and cold, spread over the window, and live video
// sessions.
func seed(t *testing.T, db *chtest.DB, w window) {
	t.Helper()
	orchs := []string{"0x1111111111111111111111111111111111111111", "0x2222222222222222222222222222222222222222", "0x3333333333333333333333333333333333333333"}
	regions := []string{"FRA", "LAX"}
	pipelines := []struct{ name, model string }{{"Text to image", "ByteDance/SDXL-Lightning"}, {"Audio to text", "openai/whisper-large-v3"},
		{"Llm", "meta-llama/Meta-Llama-3.1-8B-Instruct"}}
	classes := []string{"timeout", "http_5xx", "invalid_output"}
	var rows []results.Result
	n := 0
	for oi, o := range orchs {
		for _, region := range regions {
			for _, p := range pipelines {
				for k := range 8 {
					n++
					r := results.Result{
						ProbeID: results.ProbeID(o, region, p.name, strconv.Itoa(k)), RoundID: fmt.Sprintf("%s/%d", region, k),
						Region: region, TesterID: "0xtester" + strings.ToLower(region), Orchestrator: o,
						ServiceURI: fmt.Sprintf("https://o%d.example:8935", oi), Pipeline: p.name, Model: p.model,
						Warm:      k%2 == 0,
						StartedAt: w.to.Add(-time.Duration(k*2+1)*time.Hour - time.Duration(oi)*time.Minute),
						Outcome:   results.Success,
						Upload:    time.Duration(20+k) * time.Millisecond, Server: time.Duration(800+100*oi+10*k) * time.Millisecond,
						Download: 30 * time.Millisecond, Connect: 5 * time.Millisecond, HTTPStatus: 200,
					}
					switch k % 4 {
					case 2:
						r.Outcome, r.ErrorClass, r.ErrorCode, r.HTTPStatus = results.Failure, classes[n%len(classes)], "E1", 500
						r.ErrorMessage = "runner said no"
					case 3:
						if oi == 0 {
							r.Outcome, r.ErrorClass, r.ErrorCode = results.Excused, "tester_network", "dial"
						}
					}
					if p.name == "Llm" {
						r.TTFT, r.OutputUnits, r.Download = time.Duration(150+10*k)*time.Millisecond, 64, time.Duration(900+50*k)*time.Millisecond
					}
					r.Total = r.Upload + r.Server + r.Download + r.Connect
					rows = append(rows, r)
				}
			}
		}
	}
	// Live video sessions (issue #16): every orchestrator in every region,
	// two streamed (the second lagging and stalling) and one failed, so
	// the live panels have rows whatever orchestrator and region are picked.
	for oi, o := range orchs {
		for _, region := range regions {
			for k := range 3 {
				r := results.Result{
					ProbeID: results.ProbeID(o, region, "live", strconv.Itoa(k)), RoundID: fmt.Sprintf("%s/live%d", region, k),
					Region: region, TesterID: "0xtester" + strings.ToLower(region), Orchestrator: o,
					ServiceURI: fmt.Sprintf("https://o%d.example:8935", oi), Pipeline: "Live video to video", Model: "noop", Warm: true,
					StartedAt: w.to.Add(-time.Duration(k*3+2)*time.Hour - time.Duration(oi)*time.Minute), Outcome: results.Success,
					Total: time.Duration(400+100*oi) * time.Millisecond, HTTPStatus: 200,
					Live: results.Live{FirstSegment: time.Duration(400+100*oi) * time.Millisecond, FirstFrame: time.Duration(450+100*oi) * time.Millisecond,
						FramesIn: 300, FramesOut: uint32(300 - 30*k), InFPS: 30, OutFPS: float64(30 - 3*k),
						LatencyP50: time.Duration(100+50*oi+20*k) * time.Millisecond, LatencyP95: time.Duration(150+50*oi+20*k) * time.Millisecond,
						LatencyP99: time.Duration(200+50*oi+20*k) * time.Millisecond, Stalls: uint32(k), StallTotal: time.Duration(k) * time.Second,
						StallMax: time.Duration(k) * time.Second, PaymentsOK: 3, Session: 10 * time.Second},
				}
				if k == 2 {
					r.Outcome, r.ErrorClass, r.ErrorCode, r.ErrorMessage = results.Failure, "live_no_output", "LIVE-NO-OUTPUT", "no output segment"
					r.Live.FramesOut, r.Live.OutFPS, r.Live.FirstSegment, r.Live.FirstFrame = 0, 0, 0, 0
					r.Live.LatencyP50, r.Live.LatencyP95, r.Live.LatencyP99, r.Live.SegmentsLost, r.Live.PaymentsRefused = 0, 0, 0, 2, 1
				}
				rows = append(rows, r)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := resultsdb.Insert(ctx, db.Conn, db.Name, rows); err != nil {
		t.Fatal(err)
	}
}

// TestClickHousePanelsRunOnBothEngines runs every ClickHouse query of every
// dashboard, macros expanded as the plugin would, on every engine of
// chtest.Engines — the ClickHouse 18.16 server and embedded chDB (a current
// release, what most Grafana users run against) — twice: with "All" selected
// and with one value per variable (the first option the variable's own query
// returns, as Grafana picks it). Every query must run, return rows on the
// seeded network, and return the columns its panel reads; the test then
// checks that each panel target ran on each engine (the dashboards' part of
// the SQL inventory, beside leaderboard/store's TestSQLInventory).
func TestClickHousePanelsRunOnBothEngines(t *testing.T) {
	engines := chtest.Engines()
	if len(engines) < 2 {
		t.Logf("this build has no embedded engine (build with -tags chdb, as make test does): the server only")
	}
	ran := map[string]map[string]bool{}
	var targets []string
	for _, e := range engines {
		ran[e.Name] = map[string]bool{}
		t.Run(e.Name, func(t *testing.T) {
			targets = runPanels(t, e, ran[e.Name])
		})
	}
	if len(targets) == 0 {
		t.Fatal("no ClickHouse targets found")
	}
	for _, e := range engines {
		for _, tg := range targets {
			if !ran[e.Name][tg] {
				t.Errorf("%s: %s did not run on this engine", e.Name, tg)
			}
		}
	}
}

// runPanels runs every panel target on one engine and returns the names of
// all targets; ok gets those that ran, returned rows and passed the checks.
func runPanels(t *testing.T, e chtest.Engine, ok map[string]bool) []string {
	db := e.NewDB(t)
	end := time.Now().UTC().Truncate(time.Hour)
	w := window{from: end.Add(-24 * time.Hour), to: end, interval: 3600}
	seed(t, db, w)

	// Variable queries name tables without a database, as the datasource's
	// defaultDatabase allows, so this connection selects the test database.
	var conn driver.Conn
	if e.Name == chtest.EngineEmbedded {
		// One chDB session per process: select the database on it, and
		// put the default back when done.
		if err := db.Conn.Exec(context.Background(), "USE "+db.Name); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Conn.Exec(context.Background(), "USE default") })
		conn = db.Conn
	} else {
		c, err := clickhouse.Open(&clickhouse.Options{
			Addr: []string{db.Addr}, Protocol: clickhouse.Native,
			Auth:        clickhouse.Auth{Database: db.Name, Username: "default"},
			DialTimeout: 5 * time.Second, ReadTimeout: 60 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conn = c
	}
	var all []string
	for _, d := range loadDashboards(t) {
		for _, mode := range []string{"all", "one"} {
			t.Run(d.UID+"/"+mode, func(t *testing.T) {
				vars := map[string]selection{}
				for _, v := range d.Templating.List {
					if v.Type != "query" || !strings.Contains(string(v.Datasource), clickhouseType) {
						continue
					}
					sql, err := expandSQL(v.queryText(), nil, db.Name, w, vars)
					if err != nil {
						t.Fatalf("variable %s: %v", v.Name, err)
					}
					res := runQuery(t, conn, sql)
					if res.err != nil {
						t.Fatalf("variable %s: %v\n%s", v.Name, res.err, sql)
					}
					if len(res.firstColumn) == 0 {
						t.Fatalf("variable %s: no options on a seeded database\n%s", v.Name, sql)
					}
					sel := selection{quoted: v.Multi || v.IncludeAll, values: res.firstColumn[:1]}
					if mode == "all" && v.IncludeAll {
						sel.all, sel.values = true, res.firstColumn
					}
					vars[v.Name] = sel
				}
				for _, p := range d.allPanels() {
					for i := range p.Targets {
						tg := &p.Targets[i]
						if !strings.Contains(string(tg.Datasource), clickhouseType) {
							continue
						}
						where := fmt.Sprintf("%s/%s panel %q target %s", d.UID, mode, p.Title, tg.RefID)
						all = append(all, where)
						sql, err := expandSQL(tg.Query, tg, db.Name, w, vars)
						if err != nil {
							t.Errorf("%s: %v", where, err)
							continue
						}
						res := runQuery(t, conn, sql)
						if res.err != nil {
							t.Errorf("%s: ClickHouse (%s) rejects it: %v\n%s", where, e.Name, res.err, sql)
							continue
						}
						if res.rows == 0 {
							t.Errorf("%s: no rows on a seeded database, the panel would say No data\n%s", where, sql)
						}
						ok[where] = res.rows > 0
						checkColumns(t, where, p, tg, res, w)
					}
				}
			})
		}
	}
	return all
}

type queryResult struct {
	err         error
	columns     []string
	types       []string
	rows        int
	firstColumn []string // as text, for variable options
	firstTime   any      // first row's first value
}

func runQuery(t *testing.T, conn driver.Conn, sql string) queryResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := conn.Query(ctx, sql)
	if err != nil {
		return queryResult{err: err}
	}
	defer rows.Close()
	var res queryResult
	cts := rows.ColumnTypes()
	for _, ct := range cts {
		res.columns = append(res.columns, ct.Name())
		res.types = append(res.types, ct.DatabaseTypeName())
	}
	for rows.Next() {
		dest := make([]any, len(cts))
		for i, ct := range cts {
			dest[i] = reflect.New(ct.ScanType()).Interface()
		}
		if err := rows.Scan(dest...); err != nil {
			return queryResult{err: fmt.Errorf("scan: %w", err)}
		}
		v := reflect.ValueOf(dest[0]).Elem().Interface()
		if res.rows == 0 {
			res.firstTime = v
		}
		res.firstColumn = append(res.firstColumn, fmt.Sprint(v))
		res.rows++
	}
	if err := rows.Err(); err != nil {
		return queryResult{err: err}
	}
	return res
}

var numericTypeRE = regexp.MustCompile(`^(Nullable\()?(U?Int(8|16|32|64)|Float(32|64)|Decimal.*)\)?$`)

// checkColumns asserts the result has what the panel draws: for the plugin's
// time_series format a first column t in epoch milliseconds inside the window
// and numeric (or groupArray of (name, number)) series; for tables, every
// column a field override names; for stats, a number to show.
func checkColumns(t *testing.T, where string, p panel, tg *target, res queryResult, w window) {
	t.Helper()
	has := map[string]bool{}
	for _, c := range res.columns {
		has[c] = true
	}
	switch tg.Format {
	case "time_series":
		if len(res.columns) < 2 || res.columns[0] != "t" || !strings.HasPrefix(res.types[0], "UInt") {
			t.Errorf("%s: time series need t (epoch ms, from $timeSeries) first and series after it; got %v %v", where, res.columns, res.types)
			return
		}
		if ms, ok := res.firstTime.(uint64); ok {
			ts := time.UnixMilli(int64(ms))
			if ts.Before(w.from) || ts.After(w.to) {
				t.Errorf("%s: first point at %s lies outside the window %s..%s (t not in milliseconds?)", where, ts.UTC(), w.from, w.to)
			}
		}
		for i, typ := range res.types[1:] {
			if !numericTypeRE.MatchString(typ) && !regexp.MustCompile(`^Array\(Tuple\(String, .+\)\)$`).MatchString(typ) {
				t.Errorf("%s: series %s has type %s, want a number or Array(Tuple(String, number))", where, res.columns[i+1], typ)
			}
		}
	case "table":
		for _, o := range p.FieldConfig.Overrides {
			if o.Matcher.ID != "byName" {
				continue
			}
			if name, _ := o.Matcher.Options.(string); !has[name] {
				t.Errorf("%s: override styles column %q, which the query does not return (%v)", where, name, res.columns)
			}
		}
		if p.Type == "stat" {
			numeric := false
			for _, typ := range res.types {
				numeric = numeric || numericTypeRE.MatchString(typ)
			}
			if !numeric {
				t.Errorf("%s: a stat panel needs a numeric column, got %v", where, res.types)
			}
		}
	}
}
