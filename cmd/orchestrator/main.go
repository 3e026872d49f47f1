// Command orchestrator is the reference AI orchestrator: go-livepeer's AI
// HTTP endpoints in front of CPU reference runners, runner containers or
// external runner URLs. See orchestrator/README.md; the program itself is
// orchestrator/node.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/lpgauge/lpgauge/orchestrator/node"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := node.Run(ctx, os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "orchestrator:", err)
		os.Exit(1)
	}
}
