// Command pinhole-bench runs pinhole and OpenSSH side by side on loopback
// and prints one markdown table of their throughput, latency, connection
// rate, memory and UDP figures: go run ./cmd/pinhole-bench -h.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/pinhole-dev/pinhole/internal/bench"
)

func main() {
	if bench.ServeEchoChild() {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := bench.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
