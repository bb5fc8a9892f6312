package relay

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// setBuffers sets c's receive and send buffers to size bytes each: forced
// past the sysctl limits where the process may (CAP_NET_ADMIN), else as
// far as they allow.
func setBuffers(c any, size int) Buffers {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return Buffers{}
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return Buffers{}
	}
	var b Buffers
	raw.Control(func(ufd uintptr) {
		fd := int(ufd)
		for _, o := range [][2]int{{unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}, {unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}} {
			if unix.SetsockoptInt(fd, unix.SOL_SOCKET, o[0], size) != nil {
				unix.SetsockoptInt(fd, unix.SOL_SOCKET, o[1], size)
			}
		}
		// Linux reports twice what was set: the other half is its
		// bookkeeping.
		r, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF)
		w, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF)
		b = Buffers{Read: r / 2, Write: w / 2}
		b.Capped = b.Read < size || b.Write < size
	})
	return b
}
