// Package streamtest checks that TCP connections cross a forwarding path
// intact: every byte, in both directions at once, with the half-close carried
// through. It is a test double in the manner of wireguard-go's conn/bindtest:
// tests of the tunnel, the relay and the CLI import it and point Exchange or
// Many at whatever listener they forward to a Target.
//
// The exchange, client (Exchange) to server (Target):
//
//	client → server  seed (8 bytes, big-endian), n (8 bytes, big-endian),
//	                 then any number of request bytes, then a half-close (FIN)
//	server → client  n bytes of the reply stream, then, only once the
//	                 client's half-close has arrived, the SHA-256 of the
//	                 request bytes, then close
//
// The reply stream is math/rand/v2's ChaCha8 keyed by the seed, the request
// stream ChaCha8 keyed by the seed in another domain, so both ends generate
// what they check instead of keeping it, and a 64 MiB exchange costs no
// memory. Both directions run at the same time, so a relay that copies one
// direction after the other, or that loses or reorders a byte, or that turns
// a half-close into a full close, is caught.
package streamtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const (
	headerLen = 16
	hashLen   = sha256.Size
	chunkLen  = 64 << 10

	// Key domains, so the two directions never carry the same bytes.
	replyDomain   = 'r'
	requestDomain = 'q'
)

// newStream returns the deterministic byte stream for seed in domain.
func newStream(seed uint64, domain byte) *rand.ChaCha8 {
	var key [32]byte
	binary.BigEndian.PutUint64(key[:8], seed)
	key[8] = domain
	copy(key[9:], "pinhole streamtest")
	return rand.NewChaCha8(key)
}

// server accepts connections on a listener and runs handle on each, keeping
// track of them so that close can end them all.
type server struct {
	tb     testing.TB
	ln     net.Listener
	handle func(net.Conn) error

	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
}

func newServer(tb testing.TB, ln net.Listener, handle func(net.Conn) error) *server {
	s := &server{tb: tb, ln: ln, handle: handle, conns: make(map[net.Conn]struct{})}
	tb.Cleanup(func() { s.close() })
	s.wg.Go(s.serve)
	return s
}

func listenLoopback(tb testing.TB) net.Listener {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("streamtest: listen on 127.0.0.1: %v", err)
	}
	return ln
}

func (s *server) serve() {
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			if !s.isClosed() {
				s.tb.Logf("streamtest: accept on %v: %v", s.ln.Addr(), err)
			}
			return
		}
		if !s.track(conn) {
			conn.Close()
			return
		}
		s.wg.Go(func() {
			defer s.untrack(conn)
			defer conn.Close()
			if err := s.handle(conn); err != nil && !s.isClosed() {
				s.tb.Logf("streamtest: connection from %v: %v", conn.RemoteAddr(), err)
			}
		})
	}
}

func (s *server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *server) close() error {
	s.mu.Lock()
	var err error
	if !s.closed {
		s.closed = true
		err = s.ln.Close()
		for c := range s.conns {
			c.Close()
		}
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

func (s *server) port() int {
	if a, ok := s.ln.Addr().(*net.TCPAddr); ok {
		return a.Port
	}
	return 0
}

// Target is the server side of the exchange described in the package
// comment. Each connection is served on its own goroutine; problems on the
// server side are written to the test log, and the client sees them as a
// mismatch or an early close.
type Target struct {
	s *server
}

// NewTarget starts a Target on a new listener on 127.0.0.1 and closes it when
// the test ends.
func NewTarget(tb testing.TB) *Target {
	tb.Helper()
	return NewTargetListener(tb, listenLoopback(tb))
}

// NewTargetListener starts a Target on ln, which it owns from then on, and
// closes it when the test ends.
func NewTargetListener(tb testing.TB, ln net.Listener) *Target {
	return &Target{s: newServer(tb, ln, serveExchange)}
}

// Addr returns the listener's address, "127.0.0.1:PORT" for NewTarget.
func (t *Target) Addr() string { return t.s.ln.Addr().String() }

// Port returns the listener's TCP port, or 0 if it is not a TCP listener.
func (t *Target) Port() int { return t.s.port() }

// Close closes the listener and every live connection and waits for their
// goroutines to return. It is idempotent; only the first call returns the
// listener's close error.
func (t *Target) Close() error { return t.s.close() }

// serveExchange is the Target's side of one connection.
func serveExchange(conn net.Conn) error {
	var hdr [headerLen]byte
	if n, err := io.ReadFull(conn, hdr[:]); err != nil {
		if n == 0 && errors.Is(err, io.EOF) {
			return nil // a probe that connected and left
		}
		return fmt.Errorf("reading the header: %w", err)
	}
	seed := binary.BigEndian.Uint64(hdr[:8])
	n := binary.BigEndian.Uint64(hdr[8:])

	var writeErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		writeErr = sendReply(conn, seed, n)
	})
	h := sha256.New()
	_, readErr := io.Copy(h, conn)
	wg.Wait()
	if readErr != nil {
		return fmt.Errorf("reading the request: %w", readErr)
	}
	if writeErr != nil {
		return fmt.Errorf("writing the reply: %w", writeErr)
	}
	if _, err := conn.Write(h.Sum(nil)); err != nil {
		return fmt.Errorf("writing the hash: %w", err)
	}
	return nil
}

func sendReply(w io.Writer, seed, n uint64) error {
	rng := newStream(seed, replyDomain)
	buf := make([]byte, chunkLen)
	for n > 0 {
		b := buf[:min(n, uint64(len(buf)))]
		rng.Read(b)
		if _, err := w.Write(b); err != nil {
			return err
		}
		n -= uint64(len(b))
	}
	return nil
}

// Exchange runs the client side of the exchange over conn: it asks the
// Target for recv bytes, sends send bytes while it reads them, half-closes,
// and checks the reply, the server's hash of what it sent, and the final EOF.
// conn must have a CloseWrite method, as *net.TCPConn does.
//
// The error says what went wrong ("streamtest: byte 1234567 of the reply
// differs: ..."); Exchange never calls t.Fatal, so it may run on any
// goroutine. The deadline of ctx becomes conn's deadline, and canceling ctx
// interrupts the exchange. Exchange does not close conn, but after an error
// conn's deadlines are in the past.
func Exchange(ctx context.Context, conn net.Conn, seed uint64, send, recv int64) error {
	if err := exchange(ctx, conn, seed, send, recv, hooks{}); err != nil {
		return fmt.Errorf("streamtest: %w", err)
	}
	return nil
}

// hooks let Many hold many exchanges at the same point.
type hooks struct {
	replied     func()                          // the whole reply has arrived and is correct
	beforeClose func(ctx context.Context) error // before the half-close
}

type closeWriter interface {
	CloseWrite() error
}

// exchange is Exchange without the package prefix on its errors.
func exchange(ctx context.Context, conn net.Conn, seed uint64, send, recv int64, h hooks) error {
	if send < 0 || recv < 0 {
		return fmt.Errorf("negative size (send %d, recv %d)", send, recv)
	}
	cw, ok := conn.(closeWriter)
	if !ok {
		return fmt.Errorf("%T cannot half-close (it has no CloseWrite method); pass a *net.TCPConn or another conn that has one", conn)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(d); err != nil {
			return fmt.Errorf("setting the deadline: %w", err)
		}
	}
	abort := func() { conn.SetDeadline(time.Unix(1, 0)) }
	defer context.AfterFunc(ctx, abort)()

	// hctx ends the hooks' waits when this exchange fails.
	hctx, hcancel := context.WithCancel(ctx)
	defer hcancel()
	var first firstError
	fail := func(err error) {
		if first.set(err) {
			abort()
			hcancel()
		}
	}
	var sent, received atomic.Int64
	var halfClosed atomic.Bool

	var hdr [headerLen]byte
	binary.BigEndian.PutUint64(hdr[:8], seed)
	binary.BigEndian.PutUint64(hdr[8:], uint64(recv))
	if _, err := conn.Write(hdr[:]); err != nil {
		return fmt.Errorf("writing the header: %w", err)
	}

	var wg sync.WaitGroup
	var sum []byte
	wg.Go(func() {
		s, err := sendRequest(conn, seed, send, &sent)
		if err != nil {
			fail(fmt.Errorf("sending byte %d of %d: %w", sent.Load(), send, err))
			return
		}
		sum = s
		if h.beforeClose != nil {
			if err := h.beforeClose(hctx); err != nil {
				fail(err)
				return
			}
		}
		halfClosed.Store(true) // before the FIN, so the reader sees it after any reaction to it
		if err := cw.CloseWrite(); err != nil {
			fail(fmt.Errorf("half-closing: %w", err))
		}
	})

	if err := receiveReply(conn, seed, recv, &received, &halfClosed); err != nil {
		fail(err)
	} else if h.replied != nil {
		h.replied()
	}
	var theirs [hashLen]byte
	if first.get() == nil {
		if _, err := io.ReadFull(conn, theirs[:]); err != nil {
			if isClosed(err) {
				err = fmt.Errorf("connection closed before the reply's end: half-close lost? (all %d reply bytes arrived, but not the server's hash, which it sends once it has read the client's half-close): %w", recv, err)
			} else {
				err = fmt.Errorf("reading the server's hash: %w", err)
			}
			fail(err)
		}
	}
	wg.Wait()
	if err := first.get(); err != nil {
		ctxErr := ctx.Err()
		if d, ok := ctx.Deadline(); ok && ctxErr == nil && errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(d) {
			ctxErr = context.DeadlineExceeded // conn's deadline, ctx's, came first
		}
		if ctxErr != nil {
			return fmt.Errorf("%w (sent %d of %d bytes, received %d of %d): %w", ctxErr, sent.Load(), send, received.Load(), recv, err)
		}
		return err
	}
	if !bytes.Equal(theirs[:], sum) {
		return fmt.Errorf("the server hashed the %d bytes sent differently: the request stream was altered on the way", send)
	}
	var extra [1]byte
	switch n, err := conn.Read(extra[:]); {
	case n > 0:
		return errors.New("unexpected bytes after the server's hash")
	case !errors.Is(err, io.EOF):
		return fmt.Errorf("expected EOF after the server's hash: %w", err)
	}
	return nil
}

// firstError keeps the first of the errors set from several goroutines.
type firstError struct {
	mu  sync.Mutex
	err error
}

// set records err if it is the first, and reports whether it was.
func (f *firstError) set(err error) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return false
	}
	f.err = err
	return true
}

func (f *firstError) get() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// sendRequest writes n bytes of the request stream and returns their hash.
func sendRequest(w io.Writer, seed uint64, n int64, sent *atomic.Int64) ([]byte, error) {
	rng := newStream(seed, requestDomain)
	h := sha256.New()
	buf := make([]byte, chunkLen)
	for n > 0 {
		b := buf[:min(n, int64(len(buf)))]
		rng.Read(b)
		h.Write(b)
		m, err := w.Write(b)
		sent.Add(int64(m))
		if err != nil {
			return nil, err
		}
		n -= int64(m)
	}
	return h.Sum(nil), nil
}

// receiveReply reads n bytes and checks them against the reply stream.
func receiveReply(r io.Reader, seed uint64, n int64, received *atomic.Int64, halfClosed *atomic.Bool) error {
	rng := newStream(seed, replyDomain)
	got := make([]byte, chunkLen)
	want := make([]byte, chunkLen)
	var off int64
	for off < n {
		m, err := r.Read(got[:min(n-off, int64(len(got)))])
		if m > 0 {
			w := want[:m]
			rng.Read(w)
			if i := firstDiff(got[:m], w); i >= 0 {
				return fmt.Errorf("byte %d of the reply differs: got %#02x, want %#02x", off+int64(i), got[i], w[i])
			}
			off += int64(m)
			received.Store(off)
		}
		if err != nil && off < n {
			if isClosed(err) {
				hint := ""
				if halfClosed.Load() {
					hint = ": half-close lost? (the client had half-closed; the reply must go on until its end)"
				}
				return fmt.Errorf("connection closed after %d of %d reply bytes%s: %w", off, n, hint, err)
			}
			return fmt.Errorf("reading byte %d of %d of the reply: %w", off, n, err)
		}
	}
	return nil
}

func firstDiff(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// isClosed reports whether err means the peer ended the connection.
func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// Many proves that a forwarding path holds n connections at once. It dials n
// connections concurrently with dial, waits until all of them are open, runs
// an exchange of size bytes each way on each (seed = its index), and lets
// none of them half-close until every one has received its whole reply; so
// all n were open end to end at the same time. size must be at least 1.
//
// It returns the first error, naming the connection's index; the others are
// then canceled. Many closes the connections it dials.
func Many(ctx context.Context, n int, size int64, dial func(ctx context.Context) (net.Conn, error)) error {
	if n < 1 || size < 1 {
		return fmt.Errorf("streamtest: Many needs n ≥ 1 and size ≥ 1 (got n %d, size %d)", n, size)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var first firstError
	fail := func(i int, err error) {
		if first.set(fmt.Errorf("streamtest: connection %d of %d: %w", i, n, err)) {
			cancel()
		}
	}
	dialed := newBarrier(n)
	replied := newBarrier(n)
	h := hooks{replied: replied.arrive, beforeClose: replied.wait}

	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			conn, err := dial(ctx)
			if err != nil {
				fail(i, fmt.Errorf("dial: %w", err))
				return
			}
			defer conn.Close()
			dialed.arrive()
			if err := dialed.wait(ctx); err != nil {
				fail(i, fmt.Errorf("waiting for the others to connect: %w", err))
				return
			}
			if err := exchange(ctx, conn, uint64(i), size, size, h); err != nil {
				fail(i, err)
			}
		})
	}
	wg.Wait()
	return first.get()
}

// barrier lets goroutines wait until count of them have arrived.
type barrier struct {
	mu   sync.Mutex
	left int
	done chan struct{}
}

func newBarrier(count int) *barrier {
	return &barrier{left: count, done: make(chan struct{})}
}

func (b *barrier) arrive() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.left--
	if b.left == 0 {
		close(b.done)
	}
}

func (b *barrier) wait(ctx context.Context) error {
	select {
	case <-b.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Echo is a TCP server that writes back whatever each connection sends and
// half-closes once the client has, for request/response tests.
type Echo struct {
	s *server
}

// NewEcho starts an Echo on a new listener on 127.0.0.1 and closes it when
// the test ends.
func NewEcho(tb testing.TB) *Echo {
	tb.Helper()
	return NewEchoListener(tb, listenLoopback(tb))
}

// NewEchoListener starts an Echo on ln, which it owns from then on, and
// closes it when the test ends.
func NewEchoListener(tb testing.TB, ln net.Listener) *Echo {
	return &Echo{s: newServer(tb, ln, serveEcho)}
}

// Addr returns the listener's address.
func (e *Echo) Addr() string { return e.s.ln.Addr().String() }

// Port returns the listener's TCP port, or 0 if it is not a TCP listener.
func (e *Echo) Port() int { return e.s.port() }

// Close is like Target.Close.
func (e *Echo) Close() error { return e.s.close() }

func serveEcho(conn net.Conn) error {
	if _, err := io.Copy(conn, conn); err != nil {
		return fmt.Errorf("echo: %w", err)
	}
	if cw, ok := conn.(closeWriter); ok {
		return cw.CloseWrite()
	}
	return nil
}

// NewUDPEcho answers every datagram sent to it (on 127.0.0.1) with the
// same bytes, with 4 MiB socket buffers, until the test ends.
func NewUDPEcho(tb testing.TB) *net.UDPConn {
	tb.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		tb.Fatalf("streamtest: %v", err)
	}
	return NewUDPEchoConn(tb, pc)
}

// NewUDPEchoConn is NewUDPEcho on pc, which it owns from then on: for a
// socket somewhere other than loopback, such as one in a network namespace.
func NewUDPEchoConn(tb testing.TB, pc *net.UDPConn) *net.UDPConn {
	pc.SetReadBuffer(4 << 20)
	pc.SetWriteBuffer(4 << 20)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			pc.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	tb.Cleanup(func() {
		pc.Close()
		<-done
	})
	return pc
}

// TCPPair returns both ends of a new loopback TCP connection, the dialled
// one first; both are closed when the test ends.
func TCPPair(t testing.TB) (dialed, accepted *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan *net.TCPConn, 1)
	go func() {
		c, err := ln.AcceptTCP()
		if err != nil {
			t.Error(err)
		}
		got <- c
	}()
	dialed, err = net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dialed.Close() })
	accepted = <-got
	if accepted == nil {
		t.FailNow()
	}
	t.Cleanup(func() { accepted.Close() })
	return dialed, accepted
}
