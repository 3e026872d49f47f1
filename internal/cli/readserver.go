package cli

import (
	"errors"
	"flag"
	"fmt"
	"time"
)

// ReadServer is the house set-up of the HTTP servers that answer reads from
// the store (leaderboard, explorer-api): where they listen, the look-back a
// read gets when it names no since, how long one request and the drain on
// SIGTERM may take, and whether the binary applies the migrations at start.
type ReadServer struct {
	Listen          string        // -listen
	Window          time.Duration // -window
	QueryTimeout    time.Duration // -query-timeout
	ShutdownTimeout time.Duration // -shutdown-timeout
	Migrate         bool          // -migrate
}

// ReadServerDefaults is what the read servers do differently: their port,
// whether they own the migrations, and how they word -window,
// -query-timeout and -migrate for their users.
type ReadServerDefaults struct {
	Listen                                       string
	Migrate                                      bool
	WindowUsage, QueryTimeoutUsage, MigrateUsage string
}

// RegisterFlags adds -listen, -window (24h), -query-timeout (8s),
// -shutdown-timeout (15s) and -migrate with d's defaults and words.
func (s *ReadServer) RegisterFlags(fs *flag.FlagSet, d ReadServerDefaults) {
	fs.StringVar(&s.Listen, "listen", d.Listen, "HTTP listen address")
	fs.DurationVar(&s.Window, "window", 24*time.Hour, d.WindowUsage)
	fs.DurationVar(&s.QueryTimeout, "query-timeout", 8*time.Second, d.QueryTimeoutUsage)
	fs.DurationVar(&s.ShutdownTimeout, "shutdown-timeout", 15*time.Second, "time in-flight requests get to finish on SIGTERM")
	fs.BoolVar(&s.Migrate, "migrate", d.Migrate, d.MigrateUsage)
}

// Validate names every duration that is not positive: a zero window reads
// nothing, a zero query timeout fails every request, a zero shutdown
// timeout cuts in-flight answers.
func (s *ReadServer) Validate() error {
	var errs []error
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"-window", s.Window}, {"-query-timeout", s.QueryTimeout}, {"-shutdown-timeout", s.ShutdownTimeout}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("%s %s: must be positive", d.name, d.v))
		}
	}
	return errors.Join(errs...)
}
