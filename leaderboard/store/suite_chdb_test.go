//go:build chdb

package store

import (
	"context"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/internal/chembed"
	"github.com/lpgauge/lpgauge/internal/chtest"
	"github.com/lpgauge/lpgauge/schemas"
)

// embeddedDB opens an embedded chDB store of its own (chDB allows one per
// process, so tests using it never run in parallel) with a migrated database.
func embeddedDB(t *testing.T) *chtest.DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := chembed.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatalf("open embedded store: %v", err)
	}
	t.Cleanup(func() {
		if err := conn.Close(); err != nil {
			t.Errorf("close embedded store: %v", err)
		}
	})
	const name = "lpgauge_store_test"
	if _, err := schemas.Migrate(ctx, conn, schemas.Options{Database: name}); err != nil {
		t.Fatalf("migrate embedded store: %v", err)
	}
	return &chtest.DB{Conn: conn, Name: name}
}

// TestEmbedded runs the store suite on embedded chDB (a current ClickHouse
// release), the backend of the demo and of servers run without ClickHouse.
func TestEmbedded(t *testing.T) { runSuite(t, embeddedDB) }
