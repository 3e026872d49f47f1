package node

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"strings"
	"testing"
)

// The house flags, registered once in internal/cli for both read servers,
// keep the leaderboard's port, its migrations on by default and its words.
func TestHouseFlagsHelp(t *testing.T) {
	var out bytes.Buffer
	if err := Main(context.Background(), []string{"-h"}, &out, nil); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	for _, want := range []string{
		"-listen string\n    \tHTTP listen address (default \":8080\")",
		"-window duration\n    \tdefault look-back when a request gives no since (leaderboard-serverless START_TIME_WINDOW) (default 24h0m0s)",
		"-query-timeout duration\n    \tstore time allowed to one request (default 8s)",
		"-shutdown-timeout duration\n    \ttime in-flight requests get to finish on SIGTERM (default 15s)",
		"-migrate\n    \tapply the schema migrations at start (default true)",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("-h lacks %q", want)
		}
	}
}
