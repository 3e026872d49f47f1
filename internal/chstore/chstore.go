// Package chstore opens the result store a binary's -store flag selects: a
// ClickHouse server (internal/chclient) or embedded ClickHouse, chDB, in a
// data directory (internal/chembed). Both come back as the same driver.Conn,
// so the migrator, the writer and the leaderboard store run unchanged on
// either. The leaderboard, explorer-api and tester binaries open their store
// here, so the flag is spelled and behaves the same in all three.
package chstore

import (
	"context"
	"fmt"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/lpgauge/lpgauge/internal/chclient"
	"github.com/lpgauge/lpgauge/internal/chembed"
)

// Open opens the store c selects. The embedded store is one per process and
// its data directory one process at a time; its errors say what to do when
// the binary lacks the chdb build tag or libchdb is missing (`make deps`).
func Open(ctx context.Context, c chclient.Config) (driver.Conn, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	dir, ok := c.Embedded()
	if !ok {
		return chclient.Open(ctx, c)
	}
	conn, err := chembed.Open(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("open embedded store in %s (-store %s): %w", dir, c.Store, err)
	}
	return conn, nil
}

// Describe names the store for logs and error messages.
func Describe(c chclient.Config) string {
	if dir, ok := c.Embedded(); ok {
		return "embedded ClickHouse (chDB) in " + dir
	}
	return "ClickHouse server at " + c.Addr
}
