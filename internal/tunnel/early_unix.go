//go:build unix

package tunnel

import "syscall"

// readNow is one read(2) on the socket fd, which Go keeps non-blocking.
func readNow(fd uintptr, p []byte) (int, error) { return syscall.Read(int(fd), p) }
