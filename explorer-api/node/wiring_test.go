package node

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
)

// The house flags: -log.level and -log.format are accepted, a malformed value
// is refused naming the flag and the values it takes, and explorer-api
// answers /healthz and /metrics (which it lacked).
func TestLogFlagsAndOperatorEndpoints(t *testing.T) {
	for _, tc := range []struct{ arg, want string }{
		{"-log.level=loud", `invalid value "loud" for flag -log.level: want debug, info, warn or error`},
		{"-log.format=xml", `invalid value "xml" for flag -log.format: want text or json`},
		{"-eth.pool-ttl=often", `invalid value "often" for flag -eth.pool-ttl`},
	} {
		err := Main(context.Background(), []string{tc.arg}, io.Discard, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.arg, err, tc.want)
		}
	}
	base, _ := startServer(t)
	// In this order: /metrics counts the /healthz answer before it (a map's
	// random order asked /metrics first now and then, with nothing counted).
	for _, c := range []struct{ path, want string }{{"/healthz", ""}, {"/metrics", `explorer_api_http_requests_total{code="200"}`}} {
		path, want := c.path, c.want
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Errorf("%s: %d %.300s", path, resp.StatusCode, b)
		}
	}
}
