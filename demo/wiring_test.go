package demo

import (
	"flag"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/lpgauge/lpgauge/internal/cli"
)

// The demo takes the house log flags (warnings only by default: its output
// is the tables) and refuses a malformed value naming the flag.
func TestLogFlags(t *testing.T) {
	parse := func(args ...string) (Config, error) {
		var c Config
		fs := flag.NewFlagSet("demo", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		c.RegisterFlags(fs)
		return c, cli.Parse(fs, args)
	}
	if c, err := parse(); err != nil || c.Log.Level != slog.LevelWarn {
		t.Errorf("default level %v (%v), want warn", c.Log.Level, err)
	}
	if c, err := parse("-log.level", "debug", "-log.format", "json"); err != nil || c.Log.Level != slog.LevelDebug || c.Log.Format != "json" {
		t.Errorf("-log.level debug -log.format json: %+v %v", c.Log, err)
	}
	for arg, want := range map[string]string{
		"-log.level=loud": `invalid value "loud" for flag -log.level: want debug, info, warn or error`,
		"-log.format=xml": `invalid value "xml" for flag -log.format: want text or json`,
		"-interval=soon":  `invalid value "soon" for flag -interval`,
	} {
		if _, err := parse(arg); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", arg, err, want)
		}
	}
}
