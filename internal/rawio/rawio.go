// Package rawio reads and writes non-blocking sockets with
// syscall.RawSyscall instead of syscall.Read and syscall.Write.
//
// Why: on Linux a write(2) on loopback runs the receiver's TCP work inside
// the call and often takes tens of µs. The runtime's sysmon thread takes
// the P away from a goroutine that stays in an ordinary system call that
// long and wakes another thread to run it; the first thread then parks
// when the call returns, and sysmon itself is woken by the first system
// call after every idle spell. A raw system call tells the scheduler
// nothing, so none of that happens. Under an OpenSSH client sending to
// pinhole server this took a third of the server's context switches and a
// fifth of its CPU per GB away (BENCHMARKS.md).
//
// That is safe only for calls that cannot block: Go keeps every socket it
// opens non-blocking, so read(2) and write(2) return EAGAIN instead of
// waiting, and Read and Write here then wait in the runtime's poller, as
// the net package does.
//
// The raw calls are made on Linux only. On other Unix systems ReadOnce and
// WriteOnce are syscall.Read and syscall.Write. Where sockets are not file
// descriptors with non-blocking calls (Windows), they return
// errors.ErrUnsupported, and NewReader and NewWriter return the connection
// itself.
package rawio

import (
	"errors"
	"io"
	"net"
	"os"
	"syscall"
)

// NewReader returns a reader of c whose Read is one raw read(2) per call,
// waiting in the poller while there is nothing to read. It honours c's read
// deadline, and its errors are *net.OpError as c.Read's are. Unlike c, it
// takes one Read at a time (as a bufio.Reader's source or a copy loop
// does): it allocates nothing per Read. Where raw calls are not supported
// it returns c.
func NewReader(c *net.TCPConn) io.Reader {
	rc, err := c.SyscallConn()
	if !supported || err != nil {
		return c
	}
	r := &reader{c: c, rc: rc}
	r.try = r.readOnce
	return r
}

// NewWriter returns a writer to c whose Write writes all of p with raw
// write(2) calls, waiting in the poller while the socket is full. It
// honours c's write deadline, and its errors are *net.OpError as c.Write's
// are. Where raw calls are not supported it returns c.
func NewWriter(c *net.TCPConn) io.Writer {
	rc, err := c.SyscallConn()
	if !supported || err != nil {
		return c
	}
	return &writer{c: c, rc: rc}
}

type reader struct {
	c   *net.TCPConn
	rc  syscall.RawConn
	try func(fd uintptr) bool // r.readOnce, made once

	// Read's buffer, and what read(2) returned, for readOnce.
	p     []byte
	n     int
	err   error
	calls int // readOnce's calls in this Read: more than one if it waited

	busy busy
}

func (r *reader) readOnce(fd uintptr) bool {
	r.calls++
	for {
		r.n, r.err = ReadOnce(fd, r.p)
		if r.err != syscall.EINTR {
			return r.err != syscall.EAGAIN
		}
	}
}

func (r *reader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r.p, r.calls = p, 0
	err := r.rc.Read(r.try)
	n, rerr := r.n, r.err
	r.p, r.n, r.err = nil, 0, nil
	if n > 0 {
		r.busy.read(r.calls > 1)
	} else {
		// An error is no data found at once: net/http ends the read it
		// keeps waiting behind each request with a deadline in the past,
		// which returns at the first try. Counted as busy, it made every
		// public HTTP connection yield once a request.
		r.busy.idle()
	}
	switch {
	case err != nil:
		return 0, opError("read", r.c, err)
	case rerr != nil:
		return 0, opError("read", r.c, os.NewSyscallError("read", rerr))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

type writer struct {
	c  *net.TCPConn
	rc syscall.RawConn
}

func (w *writer) Write(p []byte) (int, error) {
	var (
		n    int
		werr error
	)
	err := w.rc.Write(func(fd uintptr) bool {
		for n < len(p) {
			m, err := WriteOnce(fd, p[n:])
			switch {
			case err == syscall.EINTR:
				continue
			case err == syscall.EAGAIN:
				return false // wait until the socket takes more
			case err != nil:
				werr = err
				return true
			}
			n += m
		}
		return true
	})
	switch {
	case err != nil:
		return n, opError("write", w.c, err)
	case werr != nil:
		return n, opError("write", w.c, os.NewSyscallError("write", werr))
	}
	return n, nil
}

// opError makes err read as the net package's own errors for c do. The
// RawConn's errors (a closed connection, a deadline) are *net.OpError
// already, with the operation named "raw-read" or "raw-write".
func opError(op string, c *net.TCPConn, err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) {
		e := *oe
		e.Op = op
		return &e
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}
