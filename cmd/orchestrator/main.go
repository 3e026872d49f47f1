// Command orchestrator is the reference AI orchestrator: go-livepeer's AI
// HTTP endpoints in front of CPU reference runners, runner containers or
// external runner URLs. See orchestrator/README.md; the program itself is
// orchestrator/node.
package main

import (
	"context"
	"os"

	"github.com/lpgauge/lpgauge/internal/cli"
	"github.com/lpgauge/lpgauge/orchestrator/node"
)

func main() {
	cli.Main("orchestrator", func(ctx context.Context) error { return node.Run(ctx, os.Args[1:]) })
}
