package node

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/lpgauge/lpgauge/leaderboard/api"
)

// The keys file gives each key its regions; the old id → secret form still
// loads, owning every region, with a warning naming the key.
func TestKeysFileRegions(t *testing.T) {
	write := func(s string) string {
		p := filepath.Join(t.TempDir(), "keys.json")
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	keys, err := loadKeys(write(`{"lax-1": {"secret": "lax-secret-0123456789", "regions": ["lax"]}, "old-1": "old-secret-0123456789",`+
		` "gw-fra": {"secret": "gw-secret-0123456789", "regions": ["FRA"], "gateway": true}}`), log)
	if err != nil {
		t.Fatal(err)
	}
	// gw-fra may post a gateway operator's own jobs (source=gateway).
	want := map[string]api.PostKey{
		"lax-1":  {Secret: "lax-secret-0123456789", Regions: []string{"LAX"}},
		"old-1":  {Secret: "old-secret-0123456789"},
		"gw-fra": {Secret: "gw-secret-0123456789", Regions: []string{"FRA"}, Gateway: true},
	}
	if !reflect.DeepEqual(keys, want) {
		t.Errorf("keys = %+v, want %+v", keys, want)
	}
	if !strings.Contains(logs.String(), "old-1") || strings.Contains(logs.String(), "lax-1") || strings.Contains(logs.String(), "gw-fra") || strings.Contains(logs.String(), "secret-0123456789") {
		t.Errorf("want one warning naming old-1 and no secret, got %q", logs.String())
	}
	for _, bad := range []string{
		`{"k": {"secret": "k-secret-0123456789", "regions": []}}`,
		`{"k": {"secret": "k-secret-0123456789", "regions": ["XYZ"]}}`,
		`{"k": {"secret": "k-secret-0123456789", "regions": ["GLOBAL"]}}`,
		`{"k": {"secret": "short", "regions": ["FRA"]}}`,
		`{"k": {"secret": "k-secret-0123456789", "region": ["FRA"]}}`,
		`{"k": 42}`,
	} {
		if _, err := loadKeys(write(bad), log); err == nil {
			t.Errorf("%s loaded", bad)
		}
	}
}
