package rooms

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// root is the module root, two folders up from this package.
const root = "../.."

func modulePath(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatalf("reading go.mod: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if m, ok := strings.CutPrefix(line, "module "); ok {
			return strings.TrimSpace(m)
		}
	}
	t.Fatal("go.mod names no module")
	return ""
}

// TestImportDirections parses every Go file of the module (every build tag:
// chdb files count too) and fails for each non-test file whose import of a
// package of the module breaks Table, naming the file, the import and the
// rule. A package no room claims fails as well.
func TestImportDirections(t *testing.T) {
	mod := modulePath(t)
	fset := token.NewFileSet()
	files := 0
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "node_modules" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		pkg := filepath.ToSlash(filepath.Dir(rel))
		if _, ok := RoomOf(pkg); !ok {
			t.Errorf("%s: package %s is in no room: add it to internal/rooms.Table and ARCHITECTURE.md", rel, pkg)
			return nil
		}
		if strings.HasSuffix(name, "_test.go") {
			return nil // tests may import any package (see Table)
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			t.Errorf("parsing %s: %v", rel, err)
			return nil
		}
		files++
		for _, im := range f.Imports {
			p, _ := strconv.Unquote(im.Path.Value)
			to, ok := strings.CutPrefix(p, mod+"/")
			if !ok {
				continue
			}
			if err := Allowed(pkg, to); err != nil {
				t.Errorf("%s imports %s: %v", rel, p, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walking the module: %v", err)
	}
	if files < 100 {
		t.Fatalf("read only %d non-test files from %s; is root right?", files, root)
	}
}

// TestRulesCatchLowerImportingHigher proves the table refuses the imports
// ARCHITECTURE.md forbids, so an empty or permissive table cannot pass.
func TestRulesCatchLowerImportingHigher(t *testing.T) {
	bad := [][2]string{
		{"gateway", "tester/probe"},
		{"gateway/discovery", "orchestrator"},
		{"gateway", "leaderboard/store"},
		{"gateway", "explorer-api"},
		{"tester", "orchestrator"},
		{"tester/probe", "orchestrator/runner"},
		{"orchestrator", "tester/probe"},
		{"leaderboard/store", "tester/writer"},
		{"leaderboard/api", "gateway"},
		{"leaderboard/api", "orchestrator"},
		{"capability", "gateway"},
		{"internal/results", "internal/results/resultsdb"},
		{"internal/chclient", "capability"},
		{"media/png", "tester/probe"},
		{"tester", "tester/orchtest"},
		{"explorer-api", "tester"},
		{"internal/cli", "internal/chclient"},
		{"demo", "cmd/tester"},
		{"tester", "cmd/tester"},
	}
	for _, b := range bad {
		if err := Allowed(b[0], b[1]); err == nil {
			t.Errorf("%s importing %s is allowed; ARCHITECTURE.md forbids it", b[0], b[1])
		}
	}
	good := [][2]string{
		{"gateway", "capability"},
		{"tester/preparer", "gateway/pm"},
		{"orchestrator/payment", "gateway"},
		{"explorer-api", "gateway/discovery"},
		{"explorer-api", "leaderboard/store"},
		{"tester/writer", "internal/results/resultsdb"},
		{"internal/cli", "internal/httpserve"},
		{"demo", "tester/orchtest"},
		{"cmd/tester", "tester"},
	}
	for _, g := range good {
		if err := Allowed(g[0], g[1]); err != nil {
			t.Errorf("%s importing %s: %v", g[0], g[1], err)
		}
	}
}

// TestArchitectureQuotesTable keeps ARCHITECTURE.md and Table one text: the
// document must hold the table exactly as Markdown renders it.
func TestArchitectureQuotesTable(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(root, "ARCHITECTURE.md"))
	if err != nil {
		t.Fatalf("reading ARCHITECTURE.md: %v", err)
	}
	if want := Markdown(); !strings.Contains(string(b), want) {
		t.Errorf("ARCHITECTURE.md does not quote internal/rooms.Table; paste this table in place of the old one:\n%s", want)
	}
}
