// Package cli is what every lpgauge binary shares on its command line: the
// flag-parsing rules, the -log.level/-log.format logger, deprecated flag
// aliases, secrets read from files or the environment (never flags), and the
// house flags of the read servers (ReadServer: leaderboard, explorer-api).
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Parse parses args into fs and refuses positional arguments: every setting
// of an lpgauge binary is a flag. A malformed value comes back as the flag
// package's "invalid value … for flag -x: <what to write>" error, printed
// once by the binary instead of beside the whole flag list; -h prints the
// flags without their deprecated aliases (Usage) and returns flag.ErrHelp.
func Parse(fs *flag.FlagSet, args []string) error {
	out := fs.Output()
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.SetOutput(out)
	switch {
	case errors.Is(err, flag.ErrHelp):
		Usage(fs)
		return err
	case err != nil:
		return fmt.Errorf("%w (-h lists every flag)", err)
	case fs.NArg() > 0:
		return fmt.Errorf("unexpected arguments %q: every setting is a flag (see -h)", fs.Args())
	}
	return nil
}

// Usage prints fs's flags as flag.PrintDefaults does, leaving out the
// deprecated aliases, which it names on one line at the end.
func Usage(fs *flag.FlagSet) {
	out := fs.Output()
	shown := flag.NewFlagSet(fs.Name(), flag.ContinueOnError)
	shown.SetOutput(out)
	var old []string
	fs.VisitAll(func(f *flag.Flag) {
		switch a := f.Value.(type) {
		case *alias:
			old = append(old, "-"+a.old+" (-"+a.new+")")
		case *boolAlias:
			old = append(old, "-"+a.old+" (-"+a.new+" "+a.value+")")
		default:
			shown.Var(f.Value, f.Name, f.Usage)
			shown.Lookup(f.Name).DefValue = f.DefValue
		}
	})
	fmt.Fprintf(out, "Usage of %s:\n", fs.Name())
	shown.PrintDefaults()
	if len(old) > 0 {
		fmt.Fprintf(out, "Deprecated aliases (still accepted, with a warning): %s\n", strings.Join(old, ", "))
	}
}

// Log is the logging set-up of every binary: slog, a level and a format.
type Log struct {
	Level  slog.Level
	Format string // text or json; "" (a Log built without flags) is text
}

// RegisterFlags adds -log.level and -log.format with the given default
// format (the tester and demo write text for people, the servers JSON for
// log collectors).
func (l *Log) RegisterFlags(fs *flag.FlagSet, defaultFormat string) {
	l.Format = defaultFormat
	fs.Var(levelValue{&l.Level}, "log.level", "log level: debug, info, warn or error")
	fs.Var(formatValue{&l.Format}, "log.format", "log format: text or json")
}

// Validate is here for the pattern's sake: both flags check their value
// when set, so a parsed Log is always valid.
func (l *Log) Validate() error {
	if l.Format != "" && l.Format != "text" && l.Format != "json" {
		return fmt.Errorf("-log.format %q: want text or json", l.Format)
	}
	return nil
}

// New builds the logger writing to w.
func (l *Log) New(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: l.Level}
	if l.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

type levelValue struct{ l *slog.Level }

func (v levelValue) String() string {
	if v.l == nil {
		return "" // the zero Value, so -h shows every default
	}
	return strings.ToLower(v.l.String())
}

func (v levelValue) Set(s string) error {
	switch strings.ToLower(s) {
	case "debug", "info", "warn", "error":
		return v.l.UnmarshalText([]byte(s))
	}
	return errors.New("want debug, info, warn or error")
}

type formatValue struct{ f *string }

func (v formatValue) String() string {
	if v.f == nil {
		return ""
	}
	return *v.f
}

func (v formatValue) Set(s string) error {
	if s != "text" && s != "json" {
		return errors.New("want text or json")
	}
	*v.f = s
	return nil
}

// alias is a deprecated flag name that sets its replacement.
type alias struct {
	target   *flag.Flag
	old, new string
}

func (a *alias) String() string {
	if a == nil || a.target == nil {
		return ""
	}
	return a.target.Value.String()
}
func (a *alias) Set(s string) error { return a.target.Value.Set(s) }

// IsBoolFlag lets "-old" stand alone when the new flag is a bool.
func (a *alias) IsBoolFlag() bool {
	b, ok := a.target.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// Alias registers old as a deprecated name of the already registered flag
// new, so scripts written for the old spelling keep working; Deprecated
// reports each use so the binary can log a warning.
func Alias(fs *flag.FlagSet, old, new string) {
	f := fs.Lookup(new)
	if f == nil {
		panic("cli.Alias: flag -" + new + " is not registered")
	}
	fs.Var(&alias{target: f, old: old, new: new}, old, "deprecated: use -"+new)
}

// BoolAlias registers old as a deprecated bool flag that, when true, sets the
// flag new to value (e.g. -verbose → -log.level debug).
func BoolAlias(fs *flag.FlagSet, old, new, value string) {
	f := fs.Lookup(new)
	if f == nil {
		panic("cli.BoolAlias: flag -" + new + " is not registered")
	}
	fs.Var(&boolAlias{alias{target: f, old: old, new: new}, value}, old, "deprecated: use -"+new+" "+value)
}

type boolAlias struct {
	alias
	value string
}

func (a *boolAlias) String() string   { return "false" }
func (a *boolAlias) IsBoolFlag() bool { return true }
func (a *boolAlias) Set(s string) error {
	switch s {
	case "true", "1":
		return a.target.Value.Set(a.value)
	case "false", "0":
		return nil
	}
	return errors.New("want true or false")
}

// Deprecated lists, after Parse, one sentence per deprecated alias the
// command line used, saying the name to use instead.
func Deprecated(fs *flag.FlagSet) []string {
	var out []string
	fs.Visit(func(f *flag.Flag) {
		switch a := f.Value.(type) {
		case *alias:
			out = append(out, fmt.Sprintf("flag -%s is deprecated: use -%s", a.old, a.new))
		case *boolAlias:
			out = append(out, fmt.Sprintf("flag -%s is deprecated: use -%s %s", a.old, a.new, a.value))
		}
	})
	return out
}

// WarnDeprecated logs Deprecated's sentences as warnings.
func WarnDeprecated(fs *flag.FlagSet, log *slog.Logger) {
	for _, s := range Deprecated(fs) {
		log.Warn(s)
	}
}

// Secret reads a secret from the file path (trimmed of surrounding space)
// when path is set, else from the environment variable env; "" when
// neither. Secrets never come from a flag's value: ps shows every flag.
func Secret(path, env string) (string, error) {
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("read secret file: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	return os.Getenv(env), nil
}

// Refused registers a former secret-bearing flag that now fails the parse
// with a message saying where the secret goes instead.
func Refused(fs *flag.FlagSet, name, instead string) {
	fs.Func(name, "removed: "+instead, func(string) error {
		return errors.New("secrets are not taken as flags (ps shows them): " + instead)
	})
}

// Main is every binary's main: run under a context that ends on SIGINT or
// SIGTERM (the start of the ordered shutdown), then exit 0 on success or
// -h, else print "name: error" and exit 1.
func Main(name string, run func(ctx context.Context) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	stop()
	if err == nil || errors.Is(err, flag.ErrHelp) || (errors.Is(err, context.Canceled) && ctx.Err() != nil) {
		return
	}
	fmt.Fprintln(os.Stderr, name+":", err)
	os.Exit(1)
}
