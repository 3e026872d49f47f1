package tester

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/lpgauge/lpgauge/internal/results"
)

// Results reach a leaderboard-serverless post_stats endpoint signed with
// the HMAC it checks, in the Stats shape it stores; excused results are kept
// out of it, and a 5xx is retried.
func TestPostStatsSignedAndShaped(t *testing.T) {
	const secret = "s3cret"
	var mu sync.Mutex
	var got []map[string]any
	fails := 1
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get("Authorization") != Sign([]byte(secret), body) {
			http.Error(w, "bad signature", 403)
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if fails > 0 {
			fails--
			http.Error(w, "try later", 502)
			return
		}
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			http.Error(w, "bad json", 400)
			return
		}
		got = append(got, m)
		_, _ = w.Write([]byte("ok"))
	}))
	defer srv.Close()
	p, err := NewPostStats(srv.URL, secret, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1767225600, 0)
	base := results.Result{Region: "FRA", Orchestrator: "0xabc", Pipeline: "Text to image", Model: "m", StartedAt: now, Total: 1500 * time.Millisecond}
	ok, bad, excused := base, base, base
	ok.Outcome = results.Success
	bad.Outcome, bad.ErrorClass, bad.ErrorCode, bad.ErrorMessage = results.Failure, "capacity", "insufficient_capacity", "insufficient capacity"
	excused.Outcome = results.Excused
	for _, r := range []results.Result{ok, bad, excused} {
		_ = p.Write(context.Background(), r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("endpoint stored %d posts, want 2 (the excused one withheld)", len(got))
	}
	if got[0]["success_rate"] != 1.0 || got[0]["round_trip_time"] != 1.5 || got[0]["pipeline"] != "Text to image" || got[0]["timestamp"] != float64(now.Unix()) {
		t.Errorf("success post: %v", got[0])
	}
	errs, _ := got[1]["errors"].([]any)
	if got[1]["success_rate"] != 0.0 || len(errs) != 1 || errs[0].(map[string]any)["error_code"] != "capacity/insufficient_capacity" {
		t.Errorf("failure post: %v", got[1])
	}
}
