// Command tester is one region's Livepeer AI tester: it probes every
// orchestrator of a list for each pipeline and model, and stores per-phase
// timings and error classes in ClickHouse. See tester/README.md; the
// program itself is tester/node.
package main

import (
	"context"
	"os"

	"github.com/lpgauge/lpgauge/internal/cli"
	"github.com/lpgauge/lpgauge/tester/node"
)

func main() {
	cli.Main("tester", func(ctx context.Context) error { return node.Run(ctx, os.Args[1:], os.Stdout, os.Stderr) })
}
