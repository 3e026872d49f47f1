// Command explorer-api serves the Explorer's AI leaderboard data and the built-in
// web leaderboard from the probe results in ClickHouse. See
// explorer-api/README.md; the program itself is explorer-api/node.
package main

import (
	"context"
	"os"

	"github.com/lpgauge/lpgauge/explorer-api/node"
	"github.com/lpgauge/lpgauge/internal/cli"
)

func main() {
	cli.Main("explorer-api", func(ctx context.Context) error { return node.Main(ctx, os.Args[1:], os.Stderr, nil) })
}
