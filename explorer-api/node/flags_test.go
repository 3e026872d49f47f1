package node

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"strings"
	"testing"

	lbnode "github.com/lpgauge/lpgauge/leaderboard/node"
)

// The house flags of both read servers, registered once in internal/cli,
// keep each binary's port, -migrate default (the leaderboard owns the
// migrations) and words in -h.
func TestHouseFlagsHelp(t *testing.T) {
	for _, tc := range []struct {
		name string
		main func(context.Context, []string, io.Writer, chan<- string) error
		want []string
	}{
		{"leaderboard", lbnode.Main, []string{
			"-listen string\n    \tHTTP listen address (default \":8080\")",
			"-window duration\n    \tdefault look-back when a request gives no since (leaderboard-serverless START_TIME_WINDOW) (default 24h0m0s)",
			"-query-timeout duration\n    \tstore time allowed to one request (default 8s)",
			"-migrate\n    \tapply the schema migrations at start (default true)",
		}},
		{"explorer-api", Main, []string{
			"-listen string\n    \tHTTP listen address (default \":8081\")",
			"-window duration\n    \tscore look-back when a request gives no since (default 24h0m0s)",
			"-query-timeout duration\n    \tstore and chain time allowed to one request (default 8s)",
			"-migrate\n    \tapply the schema migrations at start (the leaderboard normally does)\n",
		}},
	} {
		var out bytes.Buffer
		if err := tc.main(context.Background(), []string{"-h"}, &out, nil); !errors.Is(err, flag.ErrHelp) {
			t.Fatalf("%s -h: %v", tc.name, err)
		}
		for _, want := range append(tc.want, "-shutdown-timeout duration\n    \ttime in-flight requests get to finish on SIGTERM (default 15s)") {
			if !strings.Contains(out.String(), want) {
				t.Errorf("%s -h lacks %q", tc.name, want)
			}
		}
	}
}
