// Package chtest gives tests a real ClickHouse server: one private server per
// test package (started by Main, stopped by PID when the package's tests end)
// and a fresh, migrated database per caller of DB. A server that cannot start
// fails the tests; it is never a skip, so a missing install cannot hide.
//
// Set LPGAUGE_CLICKHOUSE_ADDR=host:port to use an already running server
// instead (for example one the Makefile started for the whole run); tests
// that kill the server still get a private one (Server).
//
// Engines lists every ClickHouse the project's SQL must run on: the server
// (18.16 in CI) and, in a build with the chdb tag, embedded chDB (a current
// release). Tests that loop over it run each statement on both, so SQL that
// one of them refuses fails `make test`.
package chtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/lpgauge/lpgauge/internal/chclient"
	"github.com/lpgauge/lpgauge/internal/chembed"
	"github.com/lpgauge/lpgauge/internal/chserver"
	"github.com/lpgauge/lpgauge/schemas"
)

var (
	mu       sync.Mutex
	server   *chserver.Server
	addr     string
	startErr error

	embedded    driver.Conn // the process's one chDB session, opened on first use
	embeddedErr error
)

// Main runs the package's tests with a private ClickHouse server available
// and stops it afterwards. Use it as the body of TestMain.
func Main(m *testing.M) {
	code := m.Run()
	mu.Lock()
	if server != nil {
		server.Stop()
	}
	if embedded != nil {
		_ = embedded.Close()
		embedded = nil
	}
	mu.Unlock()
	os.Exit(code)
}

// Addr returns the native address of the test server, starting it on first use.
func Addr(t testing.TB) string {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if addr != "" {
		return addr
	}
	if startErr != nil {
		t.Fatalf("ClickHouse test server unavailable: %v", startErr)
	}
	if a := os.Getenv("LPGAUGE_CLICKHOUSE_ADDR"); a != "" {
		addr = a
		return addr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := chserver.Start(ctx, chserver.Options{})
	if err != nil {
		startErr = err
		t.Fatalf("ClickHouse test server did not start (run `make deps`): %v", err)
	}
	server, addr = s, s.TCPAddr
	return addr
}

// Server returns the package's private server, which fault tests kill and
// restart. When LPGAUGE_CLICKHOUSE_ADDR names an external server, which no
// test may kill, it starts a private one and points the package's later
// databases at it, so those tests run either way: call it before NewDB.
func Server(t testing.TB) *chserver.Server {
	t.Helper()
	Addr(t)
	mu.Lock()
	defer mu.Unlock()
	if server == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		s, err := chserver.Start(ctx, chserver.Options{})
		if err != nil {
			t.Fatalf("private ClickHouse server for a test that kills it did not start (run `make deps`): %v", err)
		}
		server, addr = s, s.TCPAddr
	}
	return server
}

// ReplaceServer records a restarted server (after Server(t).Kill/Restart).
func ReplaceServer(s *chserver.Server) {
	mu.Lock()
	defer mu.Unlock()
	server, addr = s, s.TCPAddr
}

// DB is a migrated database of its own for one test (or one benchmark).
type DB struct {
	Conn   driver.Conn
	Name   string
	Addr   string // the server's native address; "" on the embedded store
	Engine string // EngineServer or EngineEmbedded
}

// The engines a DB can live on.
const (
	EngineServer   = "server"   // a ClickHouse server (18.16 in CI)
	EngineEmbedded = "embedded" // chDB in this process (a current release)
)

// Engine is one ClickHouse the project's SQL must run on.
type Engine struct {
	Name  string
	NewDB func(testing.TB) *DB
}

// Engines returns the server and, when this build has the chdb tag, the
// embedded store. `make test` builds with the tag, so there every caller runs
// on both.
func Engines() []Engine {
	out := []Engine{{EngineServer, NewDB}}
	if chembed.Available() {
		out = append(out, Engine{EngineEmbedded, NewEmbeddedDB})
	}
	return out
}

// NewEmbeddedDB is NewDB on the embedded store (chDB): a fresh, migrated
// database in the process's one chDB session (chDB allows one per process;
// it is opened on first use and closed by Main), dropped when the test ends.
// Tests using it must not run in parallel with other embedded users of the
// session-wide state (USE).
func NewEmbeddedDB(t testing.TB) *DB {
	t.Helper()
	mu.Lock()
	if embedded == nil && embeddedErr == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		embedded, embeddedErr = chembed.Open(ctx, "")
		cancel()
	}
	conn, err := embedded, embeddedErr
	mu.Unlock()
	if err != nil {
		t.Fatalf("embedded store (chDB) unavailable: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	name := dbName(t.Name())
	if _, err := schemas.Migrate(ctx, conn, schemas.Options{Database: name}); err != nil {
		t.Fatalf("migrate embedded database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name)
	})
	return &DB{Conn: noClose{conn}, Name: name, Engine: EngineEmbedded}
}

// noClose hands out the shared session without letting one test close it.
type noClose struct{ driver.Conn }

func (noClose) Close() error { return nil }

// Config returns a client config pointing at this database.
func (d *DB) Config() chclient.Config {
	return chclient.Config{Addr: d.Addr, Database: d.Name, DialTimeout: 5 * time.Second, ReadTimeout: 60 * time.Second}
}

// NewDB creates a fresh database named after the test, applies every
// migration, and drops it when the test ends.
func NewDB(t testing.TB) *DB {
	t.Helper()
	a := Addr(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := chclient.Open(ctx, chclient.Config{Addr: a, ReadTimeout: 60 * time.Second})
	if err != nil {
		t.Fatalf("connect to ClickHouse test server: %v", err)
	}
	name := dbName(t.Name())
	if _, err := schemas.Migrate(ctx, conn, schemas.Options{Database: name}); err != nil {
		conn.Close()
		t.Fatalf("migrate test database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name)
		conn.Close()
	})
	return &DB{Conn: conn, Name: name, Addr: a, Engine: EngineServer}
}

func dbName(test string) string {
	var b strings.Builder
	b.WriteString("t_")
	for _, r := range strings.ToLower(test) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
		if b.Len() > 40 {
			break
		}
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	return fmt.Sprintf("%s_%s", b.String(), hex.EncodeToString(rnd[:]))
}
