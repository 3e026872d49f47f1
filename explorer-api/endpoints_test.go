package explorerapi_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"

	explorerapi "github.com/lpgauge/lpgauge/explorer-api"
	"github.com/lpgauge/lpgauge/explorer-api/seed"
	"github.com/lpgauge/lpgauge/internal/chtest"
	"github.com/lpgauge/lpgauge/leaderboard/api"
	"github.com/lpgauge/lpgauge/leaderboard/store"
	"github.com/lpgauge/lpgauge/schemas/openapi"
)

// openAPIGets lists the GET paths of the leaderboard's OpenAPI file and the
// names of the query parameters each declares.
func openAPIGets(t *testing.T) map[string][]string {
	t.Helper()
	var doc struct {
		Paths map[string]map[string]struct {
			Parameters []struct {
				Name string `yaml:"name"`
				Ref  string `yaml:"$ref"`
			} `yaml:"parameters"`
		} `yaml:"paths"`
		Components struct {
			Parameters map[string]struct {
				Name string `yaml:"name"`
			} `yaml:"parameters"`
		} `yaml:"components"`
	}
	if err := yaml.Unmarshal(openapi.Leaderboard, &doc); err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for path, ops := range doc.Paths {
		op, ok := ops["get"]
		if !ok {
			continue
		}
		names := []string{}
		for _, p := range op.Parameters {
			name := p.Name
			if p.Ref != "" {
				name = doc.Components.Parameters[p.Ref[strings.LastIndexByte(p.Ref, '/')+1:]].Name
			}
			names = append(names, name)
		}
		out[path] = names
	}
	return out
}

// TestEveryEndpointAnswersWithDataOnBothEngines walks every GET endpoint of
// the leaderboard's OpenAPI file and every endpoint of explorer-api (the
// web page's overview, leaderboard and orchestrator profile) over the same
// seeded network, on the ClickHouse 18.16 server and on embedded chDB (a
// current release, what `make demo` runs): each must answer 200 with data.
// The profile page on the embedded store used to answer 503 (the failure
// streak query's unaliased JOIN, refused by current releases).
func TestEveryEndpointAnswersWithDataOnBothEngines(t *testing.T) {
	gets := openAPIGets(t)
	if len(gets) < 14 {
		t.Fatalf("only %d GET paths in the OpenAPI file", len(gets))
	}
	engines := chtest.Engines()
	if len(engines) < 2 {
		t.Logf("this build has no embedded engine (build with -tags chdb, as make test does): the server only")
	}
	for _, e := range engines {
		t.Run(e.Name, func(t *testing.T) {
			n := seed.ProbesOn(t, e.NewDB(t))
			seed.Live(t, n)
			st, err := store.NewClickHouse(n.DB.Conn, n.DB.Name, 0)
			if err != nil {
				t.Fatal(err)
			}
			now := func() time.Time { return n.Now }
			// The walk checks that every endpoint answers with data, not
			// how fast: the 8 s production budget per request is not what
			// it measures. The profile page runs about twenty store queries
			// in a row, which took more than 8 s on both engines at load
			// 25-30 under -race (504, 2 of 3 runs).
			const budget = time.Minute
			lb := httptest.NewServer(api.New(api.Config{Now: now, QueryTimeout: budget}, st))
			defer lb.Close()
			ex := httptest.NewServer(explorerapi.New(explorerapi.Config{Now: now, QueryTimeout: budget}, st))
			defer ex.Close()

			// Values for the parameters an endpoint declares: C has successes
			// and failures of Text to image in FRA; extra makes the
			// blocklist block it (its newest probe failed).
			values := map[string]string{"pipeline": seed.T2I, "model": seed.M1, "orchestrator": seed.C}
			extra := map[string]string{"/api/blocklist": "failures=1", "/api/regions": "with_data=1"}
			seeded := []string{seed.A, seed.B, seed.C, seed.T2I, `"FRA"`}
			paths := make([]string, 0, len(gets))
			for p := range gets {
				paths = append(paths, p)
			}
			sort.Strings(paths)
			for _, path := range paths {
				qv := url.Values{}
				for _, name := range gets[path] {
					if v, ok := values[name]; ok {
						qv.Set(name, v)
					}
				}
				if path == "/api/live_stats" { // live rows: the live pipeline and model
					qv.Set("pipeline", seed.LivePipeline)
					qv.Set("model", seed.LiveModel)
				}
				query := qv.Encode()
				if x := extra[path]; x != "" {
					query += "&" + x
				}
				want := seeded
				switch path {
				case "/healthz", "/api/health":
					want = []string{`"ok":true`}
				case "/metrics":
					want = []string{"leaderboard_http_requests_total"}
				case "/api/openapi.yaml":
					want = []string{"openapi: 3"}
				case "/api/orchestrators": // gateway webhook: service URIs
					want = []string{`{"address":"https://`}
				case "/api/flags": // the seeded network games nothing: the rules, no flag
					want = []string{`"flags":[]`}
				}
				fetch(t, lb.URL, path+"?"+query, want)
			}

			// explorer-api: every route of its mux.
			addr := seed.C
			for _, tc := range []struct {
				path string
				want []string
			}{
				{"/healthz", []string{`"ok":true`}},
				{"/api/overview", []string{seed.T2I, `"orchestrators_tested":4`}},
				{"/api/leaderboard?" + q("pipeline", seed.T2I, "model", seed.M1), []string{seed.A, seed.B, seed.C}},
				{"/api/leaderboard?" + q("pipeline", seed.T2I, "model", seed.M1, "region", "FRA"), []string{seed.C}},
				// The profile: scores, phases, history, errors and the failure streak.
				{"/api/orchestrators/" + addr, []string{`"scores":[{`, `"phases":[{`, `"points":[{`, `"errors":[{`, `"failure_streak":0`}},
				{"/api/orchestrators/" + addr + "?" + q("pipeline", seed.T2I, "model", seed.M1, "bucket", "day"), []string{`"bucket":"day"`, `"points":[{`}},
				{"/api/live?region=GLOBAL", []string{seed.A, seed.B, seed.C, `"rank":3`}},
				{"/api/live?orchestrator=" + addr, []string{`"region":"FRA"`, `"model":"noop"`}},
				{"/", []string{"<html"}},
			} {
				fetch(t, ex.URL, tc.path, tc.want)
			}
		})
	}
}

// fetch asks base+path and wants 200 with a body holding one of want (for
// the explorer-api, all of them).
func fetch(t *testing.T, base, path string, want []string) {
	t.Helper()
	resp, err := http.Get(base + path)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET %s = %d %s, want 200", path, resp.StatusCode, body)
		return
	}
	b := string(body)
	if strings.HasPrefix(path, "/api/orchestrators/") || strings.HasPrefix(path, "/api/overview") || strings.HasPrefix(path, "/api/leaderboard") || strings.HasPrefix(path, "/api/live?") {
		for _, w := range want {
			if !strings.Contains(b, w) {
				t.Errorf("GET %s: no %s in %s", path, w, b)
			}
		}
		return
	}
	for _, w := range want {
		if strings.Contains(b, w) {
			return
		}
	}
	t.Errorf("GET %s = 200 without data (none of %q): %.300s", path, want, b)
}
