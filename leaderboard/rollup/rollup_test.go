package rollup

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"
)

// -rebuild-rollups takes FROM/TO or a duration counted back from the last
// closed hour; anything else is refused with the forms it takes, and the
// retention flags are checked together.
func TestConfig(t *testing.T) {
	now := time.Date(2026, 3, 2, 10, 30, 0, 0, time.UTC)
	parse := func(args ...string) (Config, error) {
		var c Config
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		c.RegisterFlags(fs)
		if err := fs.Parse(args); err != nil {
			return c, err
		}
		return c, c.Validate()
	}
	c, err := parse("-rebuild-rollups", "48h")
	if err != nil {
		t.Fatal(err)
	}
	if from, to, err := c.rebuildRange(now); err != nil || !to.Equal(now.Truncate(time.Hour)) || to.Sub(from) != 48*time.Hour {
		t.Errorf("48h: %s..%s %v", from, to, err)
	}
	c, _ = parse("-rebuild-rollups", "2026-03-01T00:00:00Z/2026-03-02T00:00:00Z")
	if from, to, err := c.rebuildRange(now); err != nil || to.Sub(from) != 24*time.Hour {
		t.Errorf("FROM/TO: %s..%s %v", from, to, err)
	}
	for args, want := range map[string]string{
		"-rebuild-rollups=-1h": "duration must be positive",
		"-rebuild-rollups=2026-03-02T00:00:00Z/2026-03-01T00:00:00Z": "FROM before TO",
		"-retention=24h": "-retention below 48h",
	} {
		if _, err := parse(args); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", args, err, want)
		}
	}
	_, err = parse("-retention=-1h", "-retention.rollups=720h", "-retention.interval=0s")
	if err == nil || !strings.Contains(err.Error(), "must not be negative") || !strings.Contains(err.Error(), "-retention.interval must be positive") {
		t.Errorf("every problem at once: %v", err)
	}
}
