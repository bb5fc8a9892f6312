// Command pinhole forwards ports: through an SSH tunnel (-L, -R, -D), as an
// SSH-protocol forwarding server, and as a standalone proxy.
package main

import (
	"context"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/pinhole-dev/pinhole/internal/cli"
)

func main() {
	// x/crypto allocates a fresh buffer for every SSH packet it reads; at
	// the default GOGC the collector and the scavenger take a large share
	// of a transfer's CPU (BENCHMARKS.md). The live heap is small, so a
	// higher GOGC costs little memory. GOGC in the environment still wins.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
