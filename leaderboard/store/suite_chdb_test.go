//go:build chdb

package store

import (
	"testing"

	"github.com/lpgauge/lpgauge/internal/chtest"
)

// TestEmbedded runs the store suite on embedded chDB (a current ClickHouse
// release), the backend of the demo and of servers run with -store embedded:.
func TestEmbedded(t *testing.T) {
	runSuite(t, recorded(chtest.EngineEmbedded, chtest.NewEmbeddedDB))
}
