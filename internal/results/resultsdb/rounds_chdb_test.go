//go:build chdb

package resultsdb_test

import (
	"context"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/internal/chembed"
	"github.com/lpgauge/lpgauge/schemas"
)

// On embedded chDB (a current ClickHouse release).
func TestRoundsEmbedded(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := chembed.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatalf("open embedded store: %v", err)
	}
	defer conn.Close()
	const db = "lpgauge_rounds_test"
	if _, err := schemas.Migrate(ctx, conn, schemas.Options{Database: db}); err != nil {
		t.Fatal(err)
	}
	roundsSuite(t, conn, db)
}
