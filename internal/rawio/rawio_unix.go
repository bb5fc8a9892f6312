//go:build unix && !linux

package rawio

import "syscall"

const supported = true

// ReadOnce is one read(2) on fd, which must be non-blocking. Outside Linux
// it is syscall.Read: raw system calls there are not measured, and some
// systems (OpenBSD) allow system calls only through libc.
func ReadOnce(fd uintptr, p []byte) (int, error) {
	n, err := syscall.Read(int(fd), p)
	if err != nil {
		return 0, err
	}
	return n, nil
}

// WriteOnce is one write(2) on fd, which must be non-blocking; outside
// Linux it is syscall.Write.
func WriteOnce(fd uintptr, p []byte) (int, error) {
	n, err := syscall.Write(int(fd), p)
	if err != nil {
		return 0, err
	}
	return n, nil
}
