// Command demo runs the whole loop on one machine: reference orchestrators
// with different profiles, regional testers, the leaderboard and the web
// page, printing the ranked board after each round; Ctrl-C stops all. The
// program itself is the demo package.
package main

import (
	"context"
	"flag"
	"log/slog"
	"os"

	"github.com/gin-gonic/gin"

	"github.com/lpgauge/lpgauge/demo"
	"github.com/lpgauge/lpgauge/internal/cli"
)

func main() {
	// gin's mode is process-wide, so the binary sets it, never a library
	// init: release mode drops gin's debug route listing.
	gin.SetMode(gin.ReleaseMode)
	cli.Main("demo", func(ctx context.Context) error {
		var cfg demo.Config
		fs := flag.NewFlagSet("demo", flag.ContinueOnError)
		cfg.RegisterFlags(fs)
		if err := cli.Parse(fs, os.Args[1:]); err != nil {
			return err
		}
		slog.SetDefault(cfg.Log.New(os.Stderr))
		return demo.Run(ctx, cfg)
	})
}
