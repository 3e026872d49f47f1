//go:build chdb

package chembed

import (
	"errors"
	"fmt"
	"os"
	"sync"

	chdbpurego "github.com/chdb-io/chdb-go/chdb-purego"
)

const available = true

// session guards the one chDB session a process may hold: opening a second
// one would silently close the first.
var session struct {
	sync.Mutex
	open bool
}

type chdbEngine struct {
	mu     sync.Mutex // chDB queries run one at a time
	conn   chdbpurego.ChdbConn
	tmpDir string // removed on close when Open was given ""
}

func openEngine(dir string) (engine, error) {
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
	conn, err := chdbpurego.NewConnectionFromConnString(dir)
	if err != nil {
		if e.tmpDir != "" {
			_ = os.RemoveAll(e.tmpDir)
		}
		return nil, fmt.Errorf("chembed: open chDB session in %s: %w", dir, err)
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
	res, err := e.conn.Query(sql, format)
	if err != nil {
		return nil, err
	}
	defer res.Free()
	if err := res.Error(); err != nil {
		return nil, err
	}
	// The buffer belongs to chDB until Free: copy it out.
	return append([]byte(nil), res.Buf()...), nil
}

func (e *chdbEngine) close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.conn == nil {
		return nil
	}
	e.conn.Close()
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
