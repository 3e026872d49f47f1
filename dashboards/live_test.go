package dashboards

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/internal/chtest"
)

// The network dashboard's live video panel (issue #16) lists every
// orchestrator that streamed, in every region, with a live score in (0, 1]
// on the seeded sessions, on both engines; the orchestrator dashboard has
// the same table for one orchestrator. Batch rows never appear in it.
func TestLivePanelShowsEveryOrchestrator(t *testing.T) {
	for _, e := range chtest.Engines() {
		t.Run(e.Name, func(t *testing.T) {
			db := e.NewDB(t)
			end := time.Now().UTC().Truncate(time.Hour)
			w := window{from: end.Add(-24 * time.Hour), to: end, interval: 3600}
			seed(t, db, w)
			found := map[string]bool{}
			for _, d := range loadDashboards(t) {
				for _, p := range d.allPanels() {
					for i := range p.Targets {
						tg := &p.Targets[i]
						if !strings.Contains(tg.Query, "pipeline = 'Live video to video'") {
							continue
						}
						found[d.UID] = true
						vars := map[string]selection{
							"region":       {quoted: true, all: true, values: []string{"FRA", "LAX"}},
							"pipeline":     {quoted: true, all: true, values: []string{"Live video to video"}},
							"orchestrator": {values: []string{"0x1111111111111111111111111111111111111111"}},
						}
						sql, err := expandSQL(tg.Query, tg, db.Name, w, vars)
						if err != nil {
							t.Fatalf("%s %q: %v", d.UID, p.Title, err)
						}
						rows, err := db.Conn.Query(context.Background(), sql)
						if err != nil {
							t.Fatalf("%s %q: %v\n%s", d.UID, p.Title, err, sql)
						}
						cols := rows.Columns()
						seen := map[string]bool{}
						n := 0
						for rows.Next() {
							vals := make([]any, len(cols))
							for j, c := range rows.ColumnTypes() {
								vals[j] = newScan(c.ScanType())
							}
							if err := rows.Scan(vals...); err != nil {
								t.Fatal(err)
							}
							n++
							m := map[string]any{}
							for j, c := range cols {
								m[c] = deref(vals[j])
							}
							if s, ok := m["live_score"].(float64); !ok || !(s > 0 && s <= 1) {
								t.Errorf("%s %q: live_score %v, want in (0, 1]", d.UID, p.Title, m["live_score"])
							}
							if sr := m["success_rate"].(float64); sr < 0.66 || sr > 0.67 {
								t.Errorf("%s %q: success rate %v, want 2/3 (batch rows never count)", d.UID, p.Title, sr)
							}
							if o, ok := m["orchestrator"].(string); ok {
								seen[o] = true
							}
						}
						rows.Close()
						switch d.UID {
						case "lpgauge-network":
							if n != 6 || len(seen) != 3 {
								t.Errorf("network live panel: %d rows for %d orchestrators, want 6 (3 orchestrators × 2 regions)", n, len(seen))
							}
						case "lpgauge-orchestrator":
							if n != 2 {
								t.Errorf("orchestrator live panel: %d rows, want 2 (FRA and LAX)", n)
							}
						}
					}
				}
			}
			if !found["lpgauge-network"] || !found["lpgauge-orchestrator"] {
				t.Errorf("live panels found in %v, want the network and orchestrator dashboards", found)
			}
		})
	}
}

func newScan(t reflect.Type) any { return reflect.New(t).Interface() }

func deref(v any) any { return reflect.ValueOf(v).Elem().Interface() }
