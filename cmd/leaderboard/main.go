// Command leaderboard serves the leaderboard API (Explorer-compatible scores,
// raw stats, pipelines, regions) from the probe results in ClickHouse. See
// leaderboard/README.md; the program itself is leaderboard/node.
package main

import (
	"context"
	"os"

	"github.com/gin-gonic/gin"

	"github.com/lpgauge/lpgauge/internal/cli"
	"github.com/lpgauge/lpgauge/leaderboard/node"
)

func main() {
	// gin's mode is process-wide, so the binary sets it, never a library
	// init: release mode drops gin's debug route listing.
	gin.SetMode(gin.ReleaseMode)
	cli.Main("leaderboard", func(ctx context.Context) error { return node.Main(ctx, os.Args[1:], os.Stderr, nil) })
}
