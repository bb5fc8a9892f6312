package transport

import (
	"net"

	"golang.org/x/sys/unix"
)

// peekTCP reads the first byte of c without taking it from the socket
// (MSG_PEEK), so that the SSH server gets the *net.TCPConn itself and its
// fast path (internal/rawio). It waits for data as a Read would, under
// c's read deadline.
func peekTCP(c *net.TCPConn) (byte, error) { return peekSocket(c, true) }

// peekTCPNow is peekTCP without waiting and without the read deadline:
// the first byte if one has come, else an error. peek asks it after a
// timeout, since a goroutine scheduled late on a loaded machine finds its
// deadline passed before it has looked at the socket.
func peekTCPNow(c *net.TCPConn) (byte, error) { return peekSocket(c, false) }

func peekSocket(c *net.TCPConn, wait bool) (byte, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var (
		b    [1]byte
		n    int
		rerr error
	)
	if wait {
		err = rc.Read(func(fd uintptr) bool {
			for {
				n, _, rerr = unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK)
				if rerr != unix.EINTR {
					return rerr != unix.EAGAIN
				}
			}
		})
	} else {
		err = rc.Control(func(fd uintptr) {
			n, _, rerr = unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		})
	}
	if err != nil {
		return 0, err
	}
	if rerr != nil {
		return 0, rerr
	}
	if n == 0 {
		return 0, errEmpty
	}
	return b[0], nil
}
