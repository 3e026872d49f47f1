package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"

	"github.com/lpgauge/lpgauge/internal/results"
)

// schemaChecker validates JSON values against the subset of OpenAPI 3 schemas
// leaderboard.yaml uses: $ref, type, properties, required,
// additionalProperties (false or a schema), items and enum.
type schemaChecker struct{ doc map[string]any }

func (sc schemaChecker) resolve(s map[string]any) map[string]any {
	for {
		ref, ok := s["$ref"].(string)
		if !ok {
			return s
		}
		var cur any = sc.doc
		for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			cur = cur.(map[string]any)[part]
		}
		s = cur.(map[string]any)
	}
}

func (sc schemaChecker) check(path string, s map[string]any, v any) []string {
	s = sc.resolve(s)
	var errs []string
	if enum, ok := s["enum"].([]any); ok {
		found := false
		for _, e := range enum {
			if fmt.Sprint(e) == fmt.Sprint(v) {
				found = true
			}
		}
		if !found {
			errs = append(errs, fmt.Sprintf("%s: %v not in %v", path, v, enum))
		}
	}
	switch s["type"] {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			return append(errs, fmt.Sprintf("%s: want object, got %T", path, v))
		}
		props, _ := s["properties"].(map[string]any)
		for _, r := range asList(s["required"]) {
			if _, ok := m[r]; !ok {
				errs = append(errs, fmt.Sprintf("%s: required %q missing", path, r))
			}
		}
		for k, val := range m {
			if ps, ok := props[k].(map[string]any); ok {
				errs = append(errs, sc.check(path+"."+k, ps, val)...)
				continue
			}
			switch ap := s["additionalProperties"].(type) {
			case map[string]any:
				errs = append(errs, sc.check(path+"."+k, ap, val)...)
			case bool:
				if !ap {
					errs = append(errs, fmt.Sprintf("%s: property %q not allowed", path, k))
				}
			default:
				if props != nil {
					errs = append(errs, fmt.Sprintf("%s: undocumented property %q", path, k))
				}
			}
		}
	case "array":
		a, ok := v.([]any)
		if !ok {
			return append(errs, fmt.Sprintf("%s: want array, got %T", path, v))
		}
		for i, el := range a {
			errs = append(errs, sc.check(fmt.Sprintf("%s[%d]", path, i), s["items"].(map[string]any), el)...)
		}
	case "string":
		if _, ok := v.(string); !ok {
			errs = append(errs, fmt.Sprintf("%s: want string, got %T", path, v))
		}
	case "number":
		if _, ok := v.(float64); !ok {
			errs = append(errs, fmt.Sprintf("%s: want number, got %T", path, v))
		}
	case "integer":
		if f, ok := v.(float64); !ok || f != float64(int64(f)) {
			errs = append(errs, fmt.Sprintf("%s: want integer, got %v", path, v))
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			errs = append(errs, fmt.Sprintf("%s: want boolean, got %T", path, v))
		}
	}
	return errs
}

func asList(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, x := range l {
		out = append(out, fmt.Sprint(x))
	}
	return out
}

// responseSchema finds the JSON schema of (path, method, status).
func (sc schemaChecker) responseSchema(path, method string, status int) (map[string]any, error) {
	op, ok := sc.doc["paths"].(map[string]any)[path].(map[string]any)[strings.ToLower(method)].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s %s is not described", method, path)
	}
	resp, ok := op["responses"].(map[string]any)[fmt.Sprint(status)].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s %s: status %d is not described", method, path, status)
	}
	resp = sc.resolve(resp)
	media, ok := resp["content"].(map[string]any)["application/json"].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("%s %s %d: no application/json schema", method, path, status)
	}
	return media["schema"].(map[string]any), nil
}

// Every route the server registers is in /api/openapi.yaml, and every JSON
// answer of every endpoint (successes and refusals) matches its schema, so
// a client generated from the document reads what the server sends.
func TestOpenAPIDescribesEveryAnswer(t *testing.T) {
	f := newFixture(t, func(now time.Time) []results.Result { return withURIs(now) })
	r := f.get(t, "/api/openapi.yaml")
	if r.status != 200 || r.header.Get("Content-Type") != "application/yaml" {
		t.Fatalf("openapi.yaml: %d %s", r.status, r.header.Get("Content-Type"))
	}
	var doc map[string]any
	if err := yaml.Unmarshal(r.body, &doc); err != nil {
		t.Fatalf("openapi.yaml does not parse: %v", err)
	}
	if v, _ := doc["openapi"].(string); !strings.HasPrefix(v, "3.") {
		t.Fatalf("openapi = %v, want 3.x", doc["openapi"])
	}
	// goccy/go-yaml gives maps as map[string]any; round-trip through JSON
	// so every number is a float64 and every map the same type.
	b, _ := json.Marshal(doc)
	_ = json.Unmarshal(b, &doc)
	sc := schemaChecker{doc}

	engine := newEngine(Config{}, f.st)
	for _, rt := range engine.Routes() {
		if _, err := sc.responseSchemaAny(rt.Path, rt.Method); err != nil {
			t.Error(err)
		}
	}

	pair := "pipeline=" + q(t2i) + "&model=" + q(sdxl)
	for _, path := range []string{
		"/healthz", "/api/health", "/api/regions", "/api/regions?with_data=1", "/api/regions?with_data=x",
		"/api/pipelines", "/api/pipelines?region=nowhere",
		"/api/aggregated_stats?" + pair, "/api/aggregated_stats?" + pair + "&global=1", "/api/aggregated_stats",
		"/api/aggregated_stats?pipeline=x",
		"/api/raw_stats?orchestrator=" + bad + "&" + pair + "&include_excused=true", "/api/raw_stats",
		"/api/top_ai_score?orchestrator=" + fast, "/api/top_ai_score?orchestrator=0x1",
		"/api/percentiles?" + pair, "/api/percentiles",
		"/api/history?orchestrator=" + fast + "&" + pair, "/api/history?orchestrator=" + fast + "&" + pair + "&bucket=day",
		"/api/history?orchestrator=" + fast,
		"/api/errors?orchestrator=" + bad, "/api/errors?orchestrator=" + fast, "/api/errors",
		"/api/flags", "/api/flags?orchestrator=" + bad, "/api/flags?since=x",
		"/api/perf_scores", "/api/perf_scores?" + pair + "&global=1", "/api/perf_scores?global=2",
		"/api/blocklist?format=json&failures=1&min_score=0.95", "/api/blocklist?format=csv",
		"/api/orchestrators?" + pair, "/api/orchestrators?limit=5000",
	} {
		r := f.get(t, path)
		route := strings.SplitN(path, "?", 2)[0]
		schema, err := sc.responseSchema(route, http.MethodGet, r.status)
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		var v any
		if err := json.Unmarshal(r.body, &v); err != nil {
			t.Errorf("%s: body is not JSON: %s", path, r.body)
			continue
		}
		for _, e := range sc.check("$", schema, v) {
			t.Errorf("%s (%d): %s", path, r.status, e)
		}
	}
}

// responseSchemaAny reports whether (path, method) is described at all.
func (sc schemaChecker) responseSchemaAny(path, method string) (map[string]any, error) {
	paths, _ := sc.doc["paths"].(map[string]any)
	p, ok := paths[path].(map[string]any)
	if !ok {
		known := make([]string, 0, len(paths))
		for k := range paths {
			known = append(known, k)
		}
		sort.Strings(known)
		return nil, fmt.Errorf("route %s %s is not in openapi.yaml (described: %v)", method, path, known)
	}
	op, ok := p[strings.ToLower(method)].(map[string]any)
	if !ok {
		return nil, fmt.Errorf("route %s %s: method not in openapi.yaml", method, path)
	}
	return op, nil
}
