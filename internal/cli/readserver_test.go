package cli

import (
	"flag"
	"io"
	"strings"
	"testing"
)

// The read servers' house flags: each binary's port, migrate default and
// words reach -h, the shared defaults are the same for both, and every
// non-positive duration is named in one error.
func TestReadServerFlags(t *testing.T) {
	for _, d := range []ReadServerDefaults{
		{Listen: ":8080", Migrate: true, WindowUsage: "w1", QueryTimeoutUsage: "q1", MigrateUsage: "m1"},
		{Listen: ":8081", Migrate: false, WindowUsage: "w2", QueryTimeoutUsage: "q2", MigrateUsage: "m2"},
	} {
		var s ReadServer
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		s.RegisterFlags(fs, d)
		for name, want := range map[string][2]string{
			"listen":           {d.Listen, "HTTP listen address"},
			"window":           {"24h0m0s", d.WindowUsage},
			"query-timeout":    {"8s", d.QueryTimeoutUsage},
			"shutdown-timeout": {"15s", "time in-flight requests get to finish on SIGTERM"},
			"migrate":          {map[bool]string{true: "true", false: "false"}[d.Migrate], d.MigrateUsage},
		} {
			f := fs.Lookup(name)
			if f == nil || f.DefValue != want[0] || f.Usage != want[1] {
				t.Errorf("-%s: %+v, want default %q usage %q", name, f, want[0], want[1])
			}
		}
		if err := s.Validate(); err != nil {
			t.Errorf("defaults %+v refused: %v", s, err)
		}
		if err := Parse(fs, []string{"-window", "0s", "-shutdown-timeout", "-1s", "-migrate=false"}); err != nil {
			t.Fatal(err)
		}
		err := s.Validate()
		if err == nil || !strings.Contains(err.Error(), "-window 0s: must be positive") ||
			!strings.Contains(err.Error(), "-shutdown-timeout -1s: must be positive") || strings.Contains(err.Error(), "-query-timeout") {
			t.Errorf("non-positive -window and -shutdown-timeout: %v", err)
		}
		if s.Migrate {
			t.Error("-migrate=false left Migrate true")
		}
	}
}
