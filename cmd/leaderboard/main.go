// Command leaderboard serves the leaderboard API (Explorer-compatible scores,
// raw stats, pipelines, regions) from the probe results in ClickHouse. See
// leaderboard/README.md; the program itself is leaderboard/node.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/gin-gonic/gin"

	"github.com/lpgauge/lpgauge/leaderboard/node"
)

func main() {
	// gin's mode is process-wide, so the binary sets it, never a library
	// init: release mode drops gin's debug route listing.
	gin.SetMode(gin.ReleaseMode)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := node.Main(ctx, os.Args[1:], os.Stderr, nil)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "leaderboard:", err)
		os.Exit(1)
	}
}
