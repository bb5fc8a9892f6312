//go:build unix

// This file is pinhole's, not upstream's: see FORK.md.

package ssh

import "syscall"

// writeNow is one write(2) on the socket fd, which Go keeps non-blocking.
func writeNow(fd uintptr, p []byte) (int, error) { return syscall.Write(int(fd), p) }
