// Command explorer-api serves the Explorer's AI leaderboard data and the built-in
// web leaderboard from the probe results in ClickHouse. See
// explorer-api/README.md; the program itself is explorer-api/node.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/lpgauge/lpgauge/explorer-api/node"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := node.Main(ctx, os.Args[1:], os.Stderr, nil)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "explorer-api:", err)
		os.Exit(1)
	}
}
