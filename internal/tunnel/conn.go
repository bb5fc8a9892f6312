package tunnel

import (
	"bufio"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pinhole-dev/pinhole/internal/rawio"
	"github.com/pinhole-dev/pinhole/internal/ssh"
)

// chanConn is an SSH channel seen as a net.Conn. CloseWrite sends EOF.
//
// x/crypto/ssh channels have no deadlines and a blocked Read or Write
// cannot be interrupted except by closing the channel, so a deadline here
// is a timer that closes the channel when it passes: afterwards every Read
// and Write fails with os.ErrDeadlineExceeded. Moving a deadline before it
// passes (or clearing it with the zero time) costs nothing.
type chanConn struct {
	ssh.Channel
	laddr, raddr net.Addr
	deadline     deadline
}

func (c *chanConn) LocalAddr() net.Addr  { return c.laddr }
func (c *chanConn) RemoteAddr() net.Addr { return c.raddr }

func (c *chanConn) Read(p []byte) (int, error) {
	n, err := c.Channel.Read(p)
	if err != nil && c.deadline.passed() {
		err = os.ErrDeadlineExceeded
	}
	return n, err
}

func (c *chanConn) Write(p []byte) (int, error) {
	n, err := c.Channel.Write(p)
	if err != nil && c.deadline.passed() {
		err = os.ErrDeadlineExceeded
	}
	return n, err
}

func (c *chanConn) SetDeadline(t time.Time) error {
	c.deadline.set(t, func() { c.Channel.Close() })
	return nil
}

// SetReadDeadline and SetWriteDeadline share one deadline: a passed one
// ends the channel both ways.
func (c *chanConn) SetReadDeadline(t time.Time) error  { return c.SetDeadline(t) }
func (c *chanConn) SetWriteDeadline(t time.Time) error { return c.SetDeadline(t) }

// deadline runs expire once when the time set last passes.
type deadline struct {
	mu      sync.Mutex
	timer   *time.Timer
	expired bool
}

func (d *deadline) set(t time.Time, expire func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	if d.expired || t.IsZero() {
		return
	}
	d.timer = time.AfterFunc(time.Until(t), func() {
		d.mu.Lock()
		d.expired = true
		d.mu.Unlock()
		expire()
	})
}

func (d *deadline) passed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.expired
}

// addrString is a net.Addr for a host:port that may be a name.
type addrString struct{ s string }

func (a addrString) Network() string { return "tcp" }
func (a addrString) String() string  { return a.s }

// readBufSize is how much one read(2) on the SSH connection may take in.
// x/crypto reads through a 4 KiB bufio.Reader and reads a 32 KiB packet
// mostly straight from the socket, in pieces; a larger buffer below it
// turns several read(2) calls per packet into one per several packets.
const readBufSize = 128 << 10

// bufferedConn is the TCP connection under an SSH transport, with a large
// read buffer. On a TCP connection it reads and writes through rawio, so
// that the runtime's sysmon does not hand the transport's goroutines to
// other threads in the middle of a long loopback write, and the kernel
// keeps little of it unsent (shortSendQueue).
type bufferedConn struct {
	net.Conn
	r     *bufio.Reader
	w     io.Writer
	reads atomic.Uint64 // reads that brought data: keepalive's sign of life
}

func newBufferedConn(c net.Conn) *bufferedConn {
	var r io.Reader = c
	var w io.Writer = c
	if tc, ok := c.(*net.TCPConn); ok {
		r, w = rawio.NewReader(tc), rawio.NewWriter(tc)
		shortSendQueue(tc)
	}
	return &bufferedConn{Conn: c, r: bufio.NewReaderSize(r, readBufSize), w: w}
}

func (c *bufferedConn) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if n > 0 {
		c.reads.Add(1)
	}
	return n, err
}

// activity counts the reads that brought data, for keepalive.
func (c *bufferedConn) activity() uint64            { return c.reads.Load() }
func (c *bufferedConn) Write(p []byte) (int, error) { return c.w.Write(p) }
