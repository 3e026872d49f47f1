// Package chembed runs the project's ClickHouse SQL on an embedded ClickHouse
// (chDB, linked at run time from libchdb.so) behind clickhouse-go's
// driver.Conn, so the leaderboard and the demo work with no ClickHouse server
// and the migrator, the results writer and the store run unchanged on it.
//
// Only the engine (engine_chdb.go) needs chDB; it is built with -tags chdb.
// Without the tag Open returns ErrNotBuilt and Available reports false, so
// `go build ./...` and `go vet ./...` need neither chDB nor libchdb.
//
// What the adapter does, and why:
//   - Every statement goes through one chDB session, one at a time: chDB
//     holds one session per process and runs its queries on one worker.
//   - `?` arguments are bound client side as SQL literals, escaped the way
//     clickhouse-go's binder escapes them (plus control characters), and
//     batches are sent as INSERT … (columns) VALUES with every value rendered
//     as a typed literal: no value ever reaches the SQL text unescaped.
//   - Results come back as JSONCompactEachRowWithNamesAndTypes (DateTime as
//     unix seconds, NaN/Inf quoted) and are scanned as strictly as
//     clickhouse-go scans them: a UInt32 does not scan into *uint64, so code
//     proven here also works against a real server.
package chembed

import (
	"context"
	"errors"
	"os"
	"path/filepath"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// ErrNotBuilt is returned by Open and Load in a build without the chdb tag.
var ErrNotBuilt = errors.New("the embedded store needs a binary built with the chdb build tag (go build -tags chdb, as `make build` does); this one was built without it")

// ErrNoLibrary is returned by Open and Load when libchdb.so cannot be found
// or loaded: the chdb build links it at run time.
var ErrNoLibrary = errors.New("the embedded store needs libchdb.so (embedded ClickHouse), which was not found: run `make deps` (installs it into .cache/chdb) or set CHDB_LIB_PATH to the path of libchdb.so")

// libName is the bare library name, searched by the dynamic loader.
const libName = "libchdb.so"

// libInRepo is where `make deps` (scripts/chdb.sh) installs libchdb, relative
// to the repository root.
const libInRepo = ".cache/chdb/node_modules/@chdb/lib-linux-x64-gnu/libchdb.so"

// LibraryCandidates lists where a chdb build looks for libchdb, in order:
// $CHDB_LIB_PATH when set (and nothing else: an explicit path that is wrong
// must not be papered over by another copy); else the `make deps` install
// beside the running binary (bin/../.cache, so `bin/demo` run by hand finds
// it) and under the working directory or one above it, /usr/local/lib, and
// the dynamic loader's search path.
func LibraryCandidates() []string {
	if p := os.Getenv("CHDB_LIB_PATH"); p != "" {
		return []string{p}
	}
	var out []string
	if exe, err := os.Executable(); err == nil {
		out = append(out, filepath.Join(filepath.Dir(filepath.Dir(exe)), libInRepo))
	}
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) { // the repository root above a package's folder
			out = append(out, filepath.Join(d, libInRepo))
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	return append(out, "/usr/local/lib/libchdb.so", libName)
}

// ErrUnsupported wraps every driver.Conn feature the embedded store lacks.
var ErrUnsupported = errors.New("not supported by the embedded store")

// ErrInUse is returned by Open while another embedded store is open in this
// process: chDB runs one session per process.
var ErrInUse = errors.New("chembed: an embedded store is already open in this process (chDB allows one session per process); close it first")

// engine runs one SQL statement and returns its output in format. It is the
// only thing the chDB build provides; everything else is plain Go.
type engine interface {
	query(sql, format string) ([]byte, error)
	close() error
}

// Open opens (creating if needed) the embedded store whose data lives in dir
// and returns it as a driver.Conn. dir "" means a temporary directory removed
// on Close. The data in a non-empty dir survives Close and a later Open.
// Only one store may be open at a time in a process (ErrInUse).
func Open(ctx context.Context, dir string) (driver.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	eng, err := openEngine(dir)
	if err != nil {
		return nil, err
	}
	c, err := newConn(ctx, eng)
	if err != nil {
		_ = eng.close()
		return nil, err
	}
	return c, nil
}

// Available reports whether this build can open an embedded store (built
// with -tags chdb). Whether libchdb.so is there is Load's question: it is
// loaded at the first Open, never in a package init, so a missing library is
// an error a binary can report (ErrNoLibrary), not a panic.
func Available() bool { return available }
