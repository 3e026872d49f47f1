package chstore

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/lpgauge/lpgauge/internal/chclient"
	"github.com/lpgauge/lpgauge/internal/chembed"
)

// TestStoreFlag: what -store accepts, what it refuses and how it names the
// store, the same for the three binaries that share it.
func TestStoreFlag(t *testing.T) {
	for _, tc := range []struct {
		store, addr, describe, err string
	}{
		{"", "127.0.0.1:9000", "ClickHouse server at 127.0.0.1:9000", ""},
		{"clickhouse://ch.example:9440", "ch.example:9440", "ClickHouse server at ch.example:9440", ""},
		{"embedded:/var/lib/lpgauge", "127.0.0.1:9000", "embedded ClickHouse (chDB) in /var/lib/lpgauge", ""},
		{"embedded:", "", "", "want embedded:DIR"},
		{"clickhouse://", "", "", "want clickhouse://host:port"},
		{"clickhouse://u:p@host:9000", "", "", "want clickhouse://host:port"},
		{"127.0.0.1:9000", "", "", "want clickhouse://host:port (a ClickHouse server) or embedded:DIR"},
	} {
		c := chclient.Config{Store: tc.store, Addr: "127.0.0.1:9000", Database: "lpgauge"}
		err := c.Validate()
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("-store %q: error %v, want one saying %q", tc.store, err, tc.err)
			}
			continue
		}
		if err != nil || c.Addr != tc.addr || Describe(c) != tc.describe {
			t.Errorf("-store %q: %v, addr %s, %q; want addr %s, %q", tc.store, err, c.Addr, Describe(c), tc.addr, tc.describe)
		}
	}
}

// TestOpenEmbeddedWithoutChDB: a build without the chdb tag says so.
func TestOpenEmbeddedWithoutChDB(t *testing.T) {
	if chembed.Available() {
		t.Log("built with chdb: the refusal is checked by cmd/leaderboard's TestEmbeddedStoreErrorsSayWhatToDo")
		return
	}
	_, err := Open(context.Background(), chclient.Config{Store: "embedded:" + t.TempDir(), Database: "lpgauge"})
	if !errors.Is(err, chembed.ErrNotBuilt) || !strings.Contains(err.Error(), "chdb build tag") {
		t.Errorf("Open = %v, want ErrNotBuilt naming the chdb build tag", err)
	}
}
