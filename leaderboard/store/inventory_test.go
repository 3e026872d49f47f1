package store

import (
	"context"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/lpgauge/lpgauge/internal/chtest"
	"github.com/lpgauge/lpgauge/schemas"
)

// The SQL inventory: every statement this package sends (leaderboard store,
// explorer store, rollups, rebuild, retention, insights) is a call of the
// connection in a non-test file, found here by parsing the package; and
// every migration statement. TestSQLInventory fails when one of them has not
// run on the ClickHouse server and on embedded chDB (a current release) in
// this test process, so a statement added without a two-engine test, or one
// that only one engine accepts, cannot slip through. The dashboards' panels
// have the same check in dashboards/sql_test.go.

// connMethods are the driver.Conn calls that send SQL, with the index of
// their SQL argument.
var connMethods = map[string]int{"Query": 1, "QueryRow": 1, "Exec": 1, "PrepareBatch": 1, "Select": 2}

// sqlSite is one statement: a call of the connection (or of a helper that
// only passes its SQL parameter on) in a non-test file of this package.
type sqlSite struct {
	file       string // base name
	fn         string
	start, end int // lines the call spans
}

func (s sqlSite) String() string { return fmt.Sprintf("%s:%d (%s)", s.file, s.start, s.fn) }

// inventory parses the package and returns its SQL sites and the helper
// functions whose SQL comes from their caller (the caller is the site).
func inventory() ([]sqlSite, map[string]bool, error) {
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, storeDir, func(fi os.FileInfo) bool { return !strings.HasSuffix(fi.Name(), "_test.go") }, 0)
	if err != nil {
		return nil, nil, err
	}
	type call struct {
		fn     *ast.FuncDecl
		call   *ast.CallExpr
		method string
		conn   bool // a driver.Conn call (else a call of a helper)
	}
	var funcs []*ast.FuncDecl
	for _, p := range pkgs {
		for _, f := range p.Files {
			for _, d := range f.Decls {
				if fd, ok := d.(*ast.FuncDecl); ok && fd.Body != nil {
					funcs = append(funcs, fd)
				}
			}
		}
	}
	params := func(fd *ast.FuncDecl) map[string]bool {
		out := map[string]bool{}
		for _, f := range fd.Type.Params.List {
			for _, n := range f.Names {
				out[n.Name] = true
			}
		}
		return out
	}
	sqlArgIsParam := func(fd *ast.FuncDecl, ce *ast.CallExpr, idx int) bool {
		if idx >= len(ce.Args) {
			return false
		}
		id, ok := ce.Args[idx].(*ast.Ident)
		return ok && params(fd)[id.Name]
	}
	var calls []call
	for _, fd := range funcs {
		ast.Inspect(fd.Body, func(n ast.Node) bool {
			ce, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			if id, ok := ce.Fun.(*ast.Ident); ok { // a package function: queryRows, queryEach
				calls = append(calls, call{fd, ce, id.Name, false})
				return true
			}
			sel, ok := ce.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if inner, ok := sel.X.(*ast.SelectorExpr); ok && inner.Sel.Name == "conn" {
				if _, ok := connMethods[sel.Sel.Name]; ok {
					calls = append(calls, call{fd, ce, sel.Sel.Name, true})
				}
				return true
			}
			if _, ok := sel.X.(*ast.Ident); ok {
				calls = append(calls, call{fd, ce, sel.Sel.Name, false})
			}
			return true
		})
	}
	// Helpers: functions that hand their SQL parameter to the connection or
	// to another helper, to a fixed point.
	helpers := map[string]int{} // name → index of its SQL parameter
	for changed := true; changed; {
		changed = false
		for _, c := range calls {
			idx := -1
			if c.conn {
				idx = connMethods[c.method]
			} else if i, ok := helpers[c.method]; ok {
				idx = i
			}
			if idx < 0 || !sqlArgIsParam(c.fn, c.call, idx) {
				continue
			}
			if _, ok := helpers[c.fn.Name.Name]; ok {
				continue
			}
			name := c.call.Args[idx].(*ast.Ident).Name
			pos := 0
			for _, f := range c.fn.Type.Params.List {
				for _, n := range f.Names {
					if n.Name == name {
						helpers[c.fn.Name.Name] = pos
					}
					pos++
				}
			}
			changed = true
		}
	}
	var sites []sqlSite
	for _, c := range calls {
		idx, ok := connMethods[c.method], c.conn
		if !c.conn {
			idx, ok = helpers[c.method]
		}
		if !ok || sqlArgIsParam(c.fn, c.call, idx) {
			continue // not SQL, or a helper passing its caller's SQL on
		}
		sites = append(sites, sqlSite{
			file: filepath.Base(fset.Position(c.call.Pos()).Filename), fn: c.fn.Name.Name,
			start: fset.Position(c.call.Pos()).Line, end: fset.Position(c.call.End()).Line,
		})
	}
	sort.Slice(sites, func(i, j int) bool {
		if sites[i].file != sites[j].file {
			return sites[i].file < sites[j].file
		}
		return sites[i].start < sites[j].start
	})
	hs := map[string]bool{}
	for h := range helpers {
		hs[h] = true
	}
	return sites, hs, nil
}

// ran records, per engine, the file:line of this package that sent each
// statement, and every statement text sent.
var ran = struct {
	sync.Mutex
	lines map[string]map[string]bool // engine → "file.go:line"
	sql   map[string]map[string]bool // engine → statement text
}{lines: map[string]map[string]bool{}, sql: map[string]map[string]bool{}}

var storeDir = func() string {
	_, f, _, _ := runtime.Caller(0)
	return filepath.Dir(f)
}()

// recordCall notes the first frame outside the connection wrapper that lies
// in a non-test file of this package and not in a helper.
func recordCall(engine, sql string) {
	pcs := make([]uintptr, 32)
	n := runtime.Callers(3, pcs)
	frames := runtime.CallersFrames(pcs[:n])
	site := ""
	for {
		f, more := frames.Next()
		if filepath.Dir(f.File) == storeDir && !strings.HasSuffix(f.File, "_test.go") {
			name, _, _ := strings.Cut(f.Function, "[") // a generic function: queryRows[...]
			fn := name[strings.LastIndexByte(name, '.')+1:]
			if !inventoryHelpers()[fn] {
				site = fmt.Sprintf("%s:%d", filepath.Base(f.File), f.Line)
				break
			}
		}
		if !more {
			break
		}
	}
	ran.Lock()
	defer ran.Unlock()
	if ran.lines[engine] == nil {
		ran.lines[engine], ran.sql[engine] = map[string]bool{}, map[string]bool{}
	}
	if site != "" {
		ran.lines[engine][site] = true
	}
	ran.sql[engine][strings.TrimSpace(sql)] = true
}

var helperNames struct {
	once sync.Once
	m    map[string]bool
}

// inventoryHelpers is the helper set, parsed once (recordCall has no *testing.T).
func inventoryHelpers() map[string]bool {
	helperNames.once.Do(func() {
		_, helperNames.m, _ = inventory()
	})
	return helperNames.m
}

// recording wraps a connection so every statement it sends is recorded for
// engine.
type recording struct {
	driver.Conn
	engine string
}

func (r recording) Query(ctx context.Context, q string, args ...any) (driver.Rows, error) {
	recordCall(r.engine, q)
	return r.Conn.Query(ctx, q, args...)
}

func (r recording) QueryRow(ctx context.Context, q string, args ...any) driver.Row {
	recordCall(r.engine, q)
	return r.Conn.QueryRow(ctx, q, args...)
}

func (r recording) Exec(ctx context.Context, q string, args ...any) error {
	recordCall(r.engine, q)
	return r.Conn.Exec(ctx, q, args...)
}

func (r recording) PrepareBatch(ctx context.Context, q string, opts ...driver.PrepareBatchOption) (driver.Batch, error) {
	recordCall(r.engine, q)
	return r.Conn.PrepareBatch(ctx, q, opts...)
}

func (r recording) Select(ctx context.Context, dest any, q string, args ...any) error {
	recordCall(r.engine, q)
	return r.Conn.Select(ctx, dest, q, args...)
}

// recorded makes a backend whose databases record what they run.
func recorded(engine string, newDB func(testing.TB) *chtest.DB) backend {
	return func(t *testing.T) *chtest.DB {
		db := newDB(t)
		db.Conn = recording{db.Conn, engine}
		return db
	}
}

// engineBackends are the suite's backends, recording, one per engine of
// this build.
func engineBackends() map[string]backend {
	out := map[string]backend{}
	for _, e := range chtest.Engines() {
		out[e.Name] = recorded(e.Name, e.NewDB)
	}
	return out
}

// TestSQLInventory: every SQL site of this package and every migration
// statement ran on every engine. The suites (TestServer, TestEmbedded) fill
// the record when they ran first in this process; an engine with no record
// (run alone with -run) gets its suite run here.
func TestSQLInventory(t *testing.T) {
	sites, helpers, err := inventory()
	if err != nil {
		t.Fatal(err)
	}
	if len(sites) < 20 {
		t.Fatalf("found only %d SQL sites: the inventory's parser no longer sees the package's queries", len(sites))
	}
	t.Logf("%d SQL sites, helpers %v", len(sites), helpers)
	migrations, err := schemas.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	engines := chtest.Engines()
	if len(engines) < 2 {
		t.Logf("this build has no embedded engine (build with -tags chdb, as make test does): checking the server only")
	}
	for _, e := range engines {
		newDB := recorded(e.Name, e.NewDB)
		ran.Lock()
		empty := len(ran.lines[e.Name]) == 0
		ran.Unlock()
		if empty {
			t.Run("suite-"+e.Name, func(t *testing.T) { runSuite(t, newDB) })
		}
		// The migrations, statement by statement, into a database of their own.
		db := newDB(t)
		name := db.Name + "_m"
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		if _, err := schemas.Migrate(ctx, db.Conn, schemas.Options{Database: name}); err != nil {
			t.Errorf("%s: migrations: %v", e.Name, err)
		}
		_ = db.Conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name)
		cancel()

		ran.Lock()
		lines, stmts := ran.lines[e.Name], ran.sql[e.Name]
		ran.Unlock()
		for _, s := range sites {
			covered := false
			for l := s.start; l <= s.end && !covered; l++ {
				covered = lines[fmt.Sprintf("%s:%d", s.file, l)]
			}
			if !covered {
				t.Errorf("%s: the statement at %s never ran on this engine in the store's tests: add it to the two-engine suite (suite_test.go)", e.Name, s)
			}
		}
		for _, m := range migrations {
			want, err := m.Render(schemas.Options{Database: name})
			if err != nil {
				t.Fatal(err)
			}
			for i, stmt := range want {
				if !stmts[strings.TrimSpace(stmt)] {
					t.Errorf("%s: migration %s statement %d did not run", e.Name, m.Name, i+1)
				}
			}
		}
	}
}
