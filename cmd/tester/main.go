// Command tester is one region's Livepeer AI tester: it probes every
// orchestrator of a list for each pipeline and model, and stores per-phase
// timings and error classes in ClickHouse. See tester/README.md; the
// program itself is tester/node.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/lpgauge/lpgauge/tester/node"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := node.Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tester:", err)
		os.Exit(1)
	}
}
