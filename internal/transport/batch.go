package transport

import (
	"bufio"
	"errors"
	"io"
	"net"
	"sync"

	"github.com/pinhole-dev/pinhole/internal/rawio"
)

// Under TLS and WebSocket framing, one write of the SSH layer (a batch of
// packets, up to hundreds of KiB) becomes many small writes: crypto/tls
// writes each 16 KiB record with its own Write, coder/websocket flushes
// every 4 KiB of frame. On loopback each of them is a write(2) that runs
// the receiver's TCP work too. batchConn and writerConn turn them back
// into about one write(2) per write of the SSH layer, as raw SSH has
// (BENCHMARKS.md, "Transports").

// batchBufSize is the read and write buffer of a batchConn.
const batchBufSize = 64 << 10

// batchConn is a connection under TLS or WebSocket framing. Writes go
// straight through, except between begin and end (while writerConn
// writes one write of the SSH layer through the layers above), when they
// collect in a buffer that end sends. Writes from elsewhere (a TLS
// handshake, a WebSocket pong) are never held back for long: at most
// until the end of the write in progress. Reads, when buffered, come
// through a large buffer: one read(2) brings several TLS records. On a
// TCP connection it reads and writes with internal/rawio, as the SSH
// layer does on raw TCP.
type batchConn struct {
	net.Conn
	r  io.Reader
	rw io.Writer // the connection's own writes

	mu       sync.Mutex // batching, w, and every write
	batching bool
	w        *bufio.Writer
}

// newBatchConn wraps c; bufferReads puts a large buffer under Read.
func newBatchConn(c net.Conn, bufferReads bool) *batchConn {
	var r io.Reader = c
	var w io.Writer = c
	if tc, ok := c.(*net.TCPConn); ok {
		r, w = rawio.NewReader(tc), rawio.NewWriter(tc)
	}
	if bufferReads {
		r = bufio.NewReaderSize(r, batchBufSize)
	}
	return &batchConn{Conn: c, r: r, rw: w}
}

func (c *batchConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *batchConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.batching {
		return c.w.Write(p)
	}
	return c.rw.Write(p)
}

// begin holds writes back until end.
func (c *batchConn) begin() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.w == nil {
		c.w = bufio.NewWriterSize(c.rw, batchBufSize)
	}
	c.batching = true
}

// end sends what was held back since begin.
func (c *batchConn) end() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.batching = false
	if c.w == nil {
		return nil
	}
	return c.w.Flush()
}

// writerConn is the conn the SSH layer gets for a TLS or WebSocket
// transport. Its Write hands p to one goroutine per connection, which
// writes it through the transport and flushes the batchConns below:
// TLS's and WebSocket's deep write paths then grow that goroutine's
// stack, not the stack of every stream's goroutine that happens to
// write (about 4 kB each, which an idle stream keeps). Everything else
// is top's.
type writerConn struct {
	net.Conn              // top: the TLS conn or the WebSocket
	below    []*batchConn // flushed after each write, the nearest first

	mu   sync.Mutex // one Write at a time
	reqs chan []byte
	errs chan error
	quit chan struct{}
	once sync.Once
}

// newWriterConn starts top's writer.
func newWriterConn(top net.Conn, below ...*batchConn) *writerConn {
	c := &writerConn{Conn: top, below: below, reqs: make(chan []byte), errs: make(chan error), quit: make(chan struct{})}
	go c.writeLoop()
	return c
}

func (c *writerConn) writeLoop() {
	for {
		select {
		case p := <-c.reqs:
			c.errs <- c.writeNow(p)
		case <-c.quit:
			return
		}
	}
}

// writeNow writes p through top, the layers below holding back their
// writes until it is all through, and then sends them, the nearest layer
// first (into the next, which sends it on).
func (c *writerConn) writeNow(p []byte) error {
	for _, b := range c.below {
		b.begin()
	}
	_, err := c.Conn.Write(p)
	for _, b := range c.below {
		if ferr := b.end(); err == nil {
			err = ferr
		}
	}
	return err
}

func (c *writerConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case c.reqs <- p:
	case <-c.quit:
		return 0, net.ErrClosed
	}
	if err := <-c.errs; err != nil {
		return 0, err
	}
	return len(p), nil
}

// CloseWrite half-closes where top can (TLS's close_notify).
func (c *writerConn) CloseWrite() error {
	cw, ok := c.Conn.(interface{ CloseWrite() error })
	if !ok {
		return errors.ErrUnsupported
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return cw.CloseWrite()
}

// Close closes at once: the socket first, then the layers above it,
// whose goodbyes (TLS's close_notify, a WebSocket close frame) then fail
// at once. A peer that stopped reading would otherwise hold Close for
// their timeouts (5 s each, set by crypto/tls and coder/websocket), and
// SSH has said its goodbye already.
func (c *writerConn) Close() error {
	c.once.Do(func() { close(c.quit) })
	if n := len(c.below); n > 0 {
		err := c.below[n-1].Conn.Close()
		c.Conn.Close() // fails on the closed socket, having let go of what it holds
		return err
	}
	return c.Conn.Close()
}
