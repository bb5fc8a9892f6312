// Command pinhole forwards ports: through an SSH tunnel (-L, -R, -D), as an
// SSH-protocol forwarding server, and as a standalone proxy.
package main

import (
	"os"

	"github.com/pinhole-dev/pinhole/internal/cli"
)

func main() {
	os.Exit(cli.Run(os.Args[1:], os.Stdout, os.Stderr))
}
