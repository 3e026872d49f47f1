package demo

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDemoByHandWithoutLibchdb: `bin/demo` run by hand (a chdb build, the
// default embedded store) on a machine where libchdb is not where
// CHDB_LIB_PATH says exits 1 with one sentence naming `make deps` — it used
// to die with a Go panic before main, since chdb-go loaded the library in a
// package init. It stops before starting any orchestrator.
func TestDemoByHandWithoutLibchdb(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "demo")
	if out, err := exec.Command("go", "build", "-tags", "chdb", "-o", bin, "../cmd/demo").CombinedOutput(); err != nil {
		t.Fatalf("build demo: %v\n%s", err, out)
	}
	// bin/orchestrator must exist for the demo to get as far as the store.
	if err := os.WriteFile(filepath.Join(dir, "orchestrator"), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "nowhere", "libchdb.so")
	cmd := exec.Command(bin, "-bin", dir, "-dir", filepath.Join(dir, "data"), "-store", "embedded")
	cmd.Env = append(os.Environ(), "CHDB_LIB_PATH="+missing)
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit = %v, want status 1\n%s", err, out)
	}
	text := string(out)
	if strings.Contains(text, "panic") || strings.Contains(text, "goroutine ") {
		t.Errorf("a Go panic instead of an error:\n%s", text)
	}
	for _, w := range []string{"make deps", "CHDB_LIB_PATH", "-store clickhouse"} {
		if !strings.Contains(text, w) {
			t.Errorf("output does not name %q:\n%s", w, text)
		}
	}
}
