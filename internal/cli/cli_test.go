package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func newSet() (*flag.FlagSet, *Log, *bool) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var l Log
	l.RegisterFlags(fs, "text")
	reuse := fs.Bool("reuse-sessions", false, "")
	Alias(fs, "reuseSessions", "reuse-sessions")
	Alias(fs, "log-level", "log.level")
	BoolAlias(fs, "verbose", "log.level", "debug")
	return fs, &l, reuse
}

// The log flags set the logger; a wrong value is refused naming the flag and
// the values it takes.
func TestLogFlags(t *testing.T) {
	cases := []struct {
		args  []string
		level slog.Level
		json  bool
		err   string
	}{
		{args: nil, level: slog.LevelInfo},
		{args: []string{"-log.level", "debug", "-log.format", "json"}, level: slog.LevelDebug, json: true},
		{args: []string{"-log.level", "WARN"}, level: slog.LevelWarn},
		{args: []string{"-log.level", "loud"}, err: `invalid value "loud" for flag -log.level: want debug, info, warn or error`},
		{args: []string{"-log.format", "xml"}, err: `invalid value "xml" for flag -log.format: want text or json`},
		{args: []string{"-log-level", "error"}, level: slog.LevelError},
		{args: []string{"-verbose"}, level: slog.LevelDebug},
		{args: []string{"stray"}, err: "every setting is a flag"},
	}
	for _, tc := range cases {
		fs, l, _ := newSet()
		err := Parse(fs, tc.args)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: error %v, want %q", tc.args, err, tc.err)
			}
			continue
		}
		if err != nil || l.Validate() != nil {
			t.Fatalf("%q: %v %v", tc.args, err, l.Validate())
		}
		var buf bytes.Buffer
		log := l.New(&buf)
		log.Log(context.Background(), tc.level, "at level")
		log.Log(context.Background(), tc.level-1, "below level")
		out := buf.String()
		if !strings.Contains(out, "at level") || strings.Contains(out, "below level") {
			t.Errorf("%q: level %v not applied: %q", tc.args, tc.level, out)
		}
		if got := strings.HasPrefix(out, "{"); got != tc.json {
			t.Errorf("%q: json=%v, output %q", tc.args, got, out)
		}
	}
}

// An old spelling still works and says what to write instead.
func TestAliasWarns(t *testing.T) {
	fs, _, reuse := newSet()
	if err := Parse(fs, []string{"-reuseSessions", "-verbose"}); err != nil {
		t.Fatal(err)
	}
	if !*reuse {
		t.Error("-reuseSessions did not set -reuse-sessions")
	}
	var buf bytes.Buffer
	WarnDeprecated(fs, slog.New(slog.NewTextHandler(&buf, nil)))
	for _, want := range []string{"flag -reuseSessions is deprecated: use -reuse-sessions", "flag -verbose is deprecated: use -log.level debug"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("warnings %q lack %q", buf.String(), want)
		}
	}
	fs, _, _ = newSet()
	_ = Parse(fs, []string{"-reuse-sessions"})
	if d := Deprecated(fs); len(d) != 0 {
		t.Errorf("new names warned: %q", d)
	}
}

func TestSecret(t *testing.T) {
	t.Setenv("LPGAUGE_TEST_SECRET", "from-env")
	p := filepath.Join(t.TempDir(), "s")
	if err := os.WriteFile(p, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := Secret(p, "LPGAUGE_TEST_SECRET"); err != nil || s != "from-file" {
		t.Errorf("file: %q %v", s, err)
	}
	if s, err := Secret("", "LPGAUGE_TEST_SECRET"); err != nil || s != "from-env" {
		t.Errorf("env: %q %v", s, err)
	}
	if _, err := Secret(p+"x", "LPGAUGE_TEST_SECRET"); err == nil {
		t.Error("missing file accepted")
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	Refused(fs, "auth-token", "put it in $AUTH_TOKEN or -auth-token-file")
	if err := Parse(fs, []string{"-auth-token", "x"}); err == nil || !strings.Contains(err.Error(), "$AUTH_TOKEN") {
		t.Errorf("refused flag: %v", err)
	}
}

// -h lists the flags with their defaults and names the deprecated aliases on
// one line instead of a block each.
func TestHelpHidesAliases(t *testing.T) {
	fs, _, _ := newSet()
	var out bytes.Buffer
	fs.SetOutput(&out)
	if err := Parse(fs, []string{"-h"}); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	help := out.String()
	for _, want := range []string{"-log.level value", "(default info)", "(default text)", "-reuse-sessions",
		"Deprecated aliases (still accepted, with a warning): -log-level (-log.level), -reuseSessions (-reuse-sessions), -verbose (-log.level debug)"} {
		if !strings.Contains(help, want) {
			t.Errorf("help lacks %q:\n%s", want, help)
		}
	}
	if strings.Contains(help, "  -reuseSessions") {
		t.Errorf("alias listed as a flag:\n%s", help)
	}
}
