//go:build !linux

package webtest

import (
	"errors"
	"syscall"
)

// sysProcAttr returns nil where the kernel cannot tie a child's life to its
// parent's (Cleanup still stops the child on a normal test end), and an
// error when the child must run as another user.
func sysProcAttr(as string, lowPort bool) (*syscall.SysProcAttr, error) {
	if as != "" {
		return nil, errors.New("webtest: running a program as another user needs Linux")
	}
	return nil, nil
}

// removeShm does nothing: squid's shared memory is in Linux's /dev/shm.
func removeShm(service string) {}

// deleteStaleShm does nothing: squid's shared memory is in Linux's
// /dev/shm.
func deleteStaleShm() {}
