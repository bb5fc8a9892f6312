//go:build linux

package rawio

import (
	"syscall"
	"unsafe"
)

const supported = true

// ReadOnce is one read(2) on fd, which must be non-blocking, through
// syscall.RawSyscall. It returns what read(2) returns: 0 and no error at
// the end of the stream, and the errno (EAGAIN when nothing is there).
func ReadOnce(fd uintptr, p []byte) (int, error) { return call(syscall.SYS_READ, fd, p) }

// WriteOnce is one write(2) on fd, which must be non-blocking, through
// syscall.RawSyscall. It returns how much the socket took, or the errno
// (EAGAIN when it took nothing).
func WriteOnce(fd uintptr, p []byte) (int, error) { return call(syscall.SYS_WRITE, fd, p) }

// call is read(2) or write(2) of p on fd as a raw system call.
func call(trap, fd uintptr, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, errno := syscall.RawSyscall(trap, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}
