// Command pinhole forwards ports: through an SSH tunnel (-L, -R, -D), as an
// SSH-protocol forwarding server, and as a standalone proxy.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/pinhole-dev/pinhole/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
