package api

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/internal/chtest"
	"github.com/lpgauge/lpgauge/internal/results/resultsdb"
	"github.com/lpgauge/lpgauge/leaderboard/store"
)

// A key posts only for its regions: the LAX tester's key posting FRA and SIN
// results is refused with 403 and nothing is stored (before, they were
// stored and scored).
func TestAbuseKeyPostsOutsideItsRegions(t *testing.T) {
	f, db := hostileRig(t, Config{Keys: map[string]PostKey{
		"lax-1": {Secret: "lax-secret-0123456789", Regions: []string{"LAX"}},
		"any-1": {Secret: "any-secret-0123456789"}, // the old keys-file form: every region
	}})
	now := time.Now().Unix()
	for i, region := range []string{"FRA", "SIN"} {
		body := []byte(strings.Replace(string(posted(now-60, 1, 1.5)), `"FRA"`, `"`+region+`"`, 1))
		r := f.postSigned(t, body, "lax-1", "lax-secret-0123456789", now, fmt.Sprintf("nonce-outside-%04d", i))
		if r.status != 403 || !strings.Contains(string(r.body), "region "+region) {
			t.Errorf("LAX key posting %s: %d %s, want 403 naming the region", region, r.status, r.body)
		}
	}
	if n := storedPosts(t, db); n != 0 {
		t.Fatalf("%d rows stored from posts outside the key's regions", n)
	}
	lax := []byte(strings.Replace(string(posted(now-60, 1, 1.5)), `"FRA"`, `"LAX"`, 1))
	if r := f.postSigned(t, lax, "lax-1", "lax-secret-0123456789", now, "nonce-inside-0001"); r.status != 200 {
		t.Errorf("LAX key posting LAX: %d %s", r.status, r.body)
	}
	if r := f.postSigned(t, posted(now-60, 1, 1.5), "any-1", "any-secret-0123456789", now, "nonce-anykey-0001"); r.status != 200 {
		t.Errorf("old-form key posting FRA: %d %s", r.status, r.body)
	}
	if n := storedPosts(t, db); n != 2 {
		t.Errorf("%d rows, want the 2 allowed posts", n)
	}
}

// The same body posted by two keys is two testers' results: stored once per
// key (before, once in all). Each key's re-post is still stored once.
func TestAbuseSameBodyTwoKeysStoredTwice(t *testing.T) {
	f, db := hostileRig(t, Config{Keys: map[string]PostKey{
		"fra-1": {Secret: "fra1-secret-0123456789", Regions: []string{"FRA"}},
		"fra-2": {Secret: "fra2-secret-0123456789", Regions: []string{"FRA"}},
	}})
	now := time.Now().Unix()
	body := posted(now-60, 0, 2)
	for i, k := range []struct{ id, secret string }{{"fra-1", "fra1-secret-0123456789"}, {"fra-2", "fra2-secret-0123456789"}, {"fra-1", "fra1-secret-0123456789"}} {
		if r := f.postSigned(t, body, k.id, k.secret, now, fmt.Sprintf("nonce-twokeys-%04d", i)); r.status != 200 {
			t.Fatalf("post %d by %s: %d %s", i, k.id, r.status, r.body)
		}
	}
	if n := storedPosts(t, db); n != 2 {
		t.Errorf("one body by two keys (one re-posted): %d rows, want 2", n)
	}
}

// Per-query limits bound what any request makes the store hold or send: an
// answer past them is a 400 asking for a narrower request, not a process
// holding every sample.
func TestAbuseStoreLimitsBoundAnswers(t *testing.T) {
	// A store whose per-query limits are smaller than the answer.
	db := chtest.NewDB(t)
	now := time.Now().UTC()
	if err := resultsdb.Insert(context.Background(), db.Conn, db.Name, network(now)); err != nil {
		t.Fatal(err)
	}
	st, err := store.NewClickHouse(db.Conn, db.Name, 0)
	if err != nil {
		t.Fatal(err)
	}
	st.SetLimits(store.Limits{MaxResultRows: 2})
	srv := httptest.NewServer(New(Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, st))
	defer srv.Close()
	g := &fixture{srv: srv}
	if r := g.get(t, "/api/raw_stats?"+t2iPair+"&orchestrator="+fast); r.status != 400 || !strings.Contains(string(r.body), "narrow") {
		t.Errorf("raw_stats past the store's row limit: %d %s, want 400", r.status, r.body)
	}
}
