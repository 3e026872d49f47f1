//go:build chdb

package chembed

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"
)

const available = true

// The chDB C API (chdb.h of chDB ≥ 3, the one libchdb 26.x exports), bound
// here at first use rather than in a package init: chdb-go's purego package
// opens the library in init() and panics when it is missing, which killed a
// chdb-tagged binary before main could say what to do. Only the seven calls
// this adapter needs are bound.
var lib struct {
	once sync.Once
	err  error
	path string

	connect       func(argc int32, argv **byte) unsafe.Pointer // chdb_connection* (a pointer to the handle)
	closeConn     func(conn unsafe.Pointer)                    // takes the chdb_connection*
	query         func(conn unsafe.Pointer, query, format string) unsafe.Pointer
	destroyResult func(res unsafe.Pointer)
	resultBuffer  func(res unsafe.Pointer) *byte
	resultLength  func(res unsafe.Pointer) uintptr
	resultError   func(res unsafe.Pointer) string
}

// Load finds and binds libchdb once. Its error names the paths it tried and
// what to run (`make deps`, or CHDB_LIB_PATH), so a binary can stop with that
// sentence instead of a panic.
func Load() error {
	lib.once.Do(func() { lib.err = load() })
	return lib.err
}

func load() error {
	paths := LibraryCandidates()
	var tried []string
	var handle uintptr
	for _, p := range paths {
		if p != libName { // a bare name goes through the dynamic loader's search path
			if _, err := os.Stat(p); err != nil {
				tried = append(tried, p)
				continue
			}
		}
		h, err := purego.Dlopen(p, purego.RTLD_NOW|purego.RTLD_GLOBAL)
		if err != nil {
			tried = append(tried, fmt.Sprintf("%s (%v)", p, err))
			continue
		}
		handle, lib.path = h, p
		break
	}
	if handle == 0 {
		return fmt.Errorf("%w; tried %v", ErrNoLibrary, tried)
	}
	for name, fptr := range map[string]any{
		"chdb_connect": &lib.connect, "chdb_close_conn": &lib.closeConn, "chdb_query": &lib.query,
		"chdb_destroy_query_result": &lib.destroyResult, "chdb_result_buffer": &lib.resultBuffer,
		"chdb_result_length": &lib.resultLength, "chdb_result_error": &lib.resultError,
	} {
		sym, err := purego.Dlsym(handle, name)
		if err != nil {
			return fmt.Errorf("chembed: %s has no %s (libchdb older than 3.x?): run `make deps` for the supported version: %w", lib.path, name, err)
		}
		purego.RegisterFunc(fptr, sym)
	}
	return nil
}

// session guards the one chDB session a process may hold: opening a second
// one would silently close the first.
var session struct {
	sync.Mutex
	open bool
}

type chdbEngine struct {
	mu     sync.Mutex     // chDB queries run one at a time
	conn   unsafe.Pointer // chdb_connection*
	tmpDir string         // removed on close when Open was given ""
}

func openEngine(dir string) (engine, error) {
	if err := Load(); err != nil {
		return nil, err
	}
	session.Lock()
	defer session.Unlock()
	if session.open {
		return nil, ErrInUse
	}
	e := &chdbEngine{}
	if dir == "" {
		d, err := os.MkdirTemp("", "chembed-")
		if err != nil {
			return nil, fmt.Errorf("chembed: temporary data directory: %w", err)
		}
		dir, e.tmpDir = d, d
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("chembed: data directory: %w", err)
	}
	// The arguments of `clickhouse local`: argv[0] is the program name.
	args := []string{"clickhouse", "--path=" + dir}
	argv := make([]*byte, len(args)+1) // NULL-terminated, as C's argv
	keep := make([][]byte, len(args))
	for i, a := range args {
		keep[i] = append([]byte(a), 0)
		argv[i] = &keep[i][0]
	}
	conn := lib.connect(int32(len(args)), &argv[0])
	if conn == nil || *(*unsafe.Pointer)(conn) == nil {
		if e.tmpDir != "" {
			_ = os.RemoveAll(e.tmpDir)
		}
		return nil, fmt.Errorf("chembed: open chDB session in %s: libchdb refused (is another process using this directory?)", dir)
	}
	e.conn = conn
	session.open = true
	return e, nil
}

func (e *chdbEngine) query(sql, format string) ([]byte, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.conn == nil {
		return nil, errors.New("chembed: store is closed")
	}
	res := lib.query(*(*unsafe.Pointer)(e.conn), sql, format)
	if res == nil {
		return nil, nil // no result set (DDL)
	}
	defer lib.destroyResult(res)
	if msg := lib.resultError(res); msg != "" {
		return nil, errors.New(msg)
	}
	buf, n := lib.resultBuffer(res), lib.resultLength(res)
	if buf == nil || n == 0 {
		return nil, nil
	}
	// The buffer belongs to chDB until the result is destroyed: copy it out.
	return append([]byte(nil), unsafe.Slice(buf, n)...), nil
}

func (e *chdbEngine) close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.conn == nil {
		return nil
	}
	lib.closeConn(e.conn)
	e.conn = nil
	session.Lock()
	session.open = false
	session.Unlock()
	if e.tmpDir != "" {
		if err := os.RemoveAll(e.tmpDir); err != nil {
			return fmt.Errorf("chembed: remove temporary data directory: %w", err)
		}
	}
	return nil
}
