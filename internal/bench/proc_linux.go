package bench

import (
	"errors"
	"fmt"
	"net"
	"os/exec"
	"syscall"
)

// dieWithParent makes the kernel kill cmd when this process dies, so a run
// that is killed leaves no forwarder behind.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// raiseFileLimit raises this process's limit of open files to at least n
// (children inherit it): the hold check keeps two sockets per connection
// here. It returns the limit in force.
func raiseFileLimit(n uint64) (uint64, error) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0, err
	}
	if lim.Cur >= n {
		return lim.Cur, nil
	}
	want := lim
	want.Cur = n
	want.Max = max(lim.Max, n) // raising the hard limit needs root
	hardErr := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want)
	if hardErr == nil {
		return n, nil
	}
	want.Cur, want.Max = lim.Max, lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		return lim.Cur, err
	}
	return lim.Max, fmt.Errorf("raising the hard limit to %d: %w", n, hardErr)
}

// stillOpen reports an error when the peer has closed or reset c, or sent
// something unexpected, without waiting: a non-blocking peek.
func stillOpen(c net.Conn) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return errors.New("bench: not a socket")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	var n int
	var rerr error
	err = raw.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, rerr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true // never wait
	})
	switch {
	case err != nil:
		return err
	case errors.Is(rerr, syscall.EAGAIN):
		return nil // open, nothing to read: as it should be
	case rerr != nil:
		return rerr
	case n == 0:
		return errors.New("bench: the forwarder closed the connection")
	}
	return errors.New("bench: unexpected bytes on an idle connection")
}
