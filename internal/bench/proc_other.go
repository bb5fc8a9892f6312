//go:build !linux

package bench

import (
	"errors"
	"net"
	"os/exec"
)

// dieWithParent does nothing where the kernel cannot tie a child's life
// to its parent's.
func dieWithParent(cmd *exec.Cmd) {}

// raiseFileLimit is not done outside Linux, where the benchmark cannot run
// anyway (it reads /proc).
func raiseFileLimit(n uint64) (uint64, error) {
	return 0, errors.New("bench: raising the open-file limit is done on Linux only")
}

// stillOpen is not checked outside Linux.
func stillOpen(c net.Conn) error { return nil }
