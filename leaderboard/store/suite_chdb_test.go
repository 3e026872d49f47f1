//go:build chdb

package store

import (
	"testing"

	"github.com/lpgauge/lpgauge/internal/chtest"
)

// embeddedDB is a fresh, migrated database in the process's embedded chDB
// session (chtest.NewEmbeddedDB).
func embeddedDB(t *testing.T) *chtest.DB { return chtest.NewEmbeddedDB(t) }

// TestEmbedded runs the store suite on embedded chDB (a current ClickHouse
// release), the backend of the demo and of servers run with -store embedded:.
func TestEmbedded(t *testing.T) { runSuite(t, embeddedDB) }
