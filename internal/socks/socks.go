// Package socks answers SOCKS4, SOCKS4a, SOCKS5 and HTTP proxy requests on
// one listener, as ssh -D does. It speaks the protocols only: where a
// connection goes is up to the Dial function the caller provides, which for
// dynamic forwarding opens a stream through the tunnel.
//
// The protocol of each client is told by its first byte: 0x04 is SOCKS4 or
// SOCKS4a, 0x05 is SOCKS5, and anything else is read as an HTTP request.
package socks

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/pinhole-dev/pinhole/internal/accept"
	"github.com/pinhole-dev/pinhole/internal/relay"
)

// ErrNotAllowed is what a Dial function wraps when policy forbids the
// target. The client is told so: SOCKS5 reply 0x02, SOCKS4 0x5B, HTTP 403.
var ErrNotAllowed = errors.New("socks: connection not allowed by ruleset")

const (
	defaultDialTimeout      = 10 * time.Second
	defaultHandshakeTimeout = 10 * time.Second

	// maxHandshake caps what a client may send before it is connected:
	// SOCKS fields are far smaller, and it is the HTTP header limit.
	maxHandshake = 64 << 10
)

// Credentials checks a user name and password: SOCKS5 username/password
// authentication (RFC 1929) and HTTP Basic proxy authentication.
type Credentials interface {
	Valid(user, password string) bool
}

// Server answers SOCKS4, SOCKS4a, SOCKS5 (CONNECT) and HTTP proxy requests
// (CONNECT to any port, and absolute-form requests like GET http://host/path)
// on one listener. The zero value is usable: direct dialing, no auth.
//
// A Server must not be copied after first use.
type Server struct {
	// Dial opens the connection to the target. addr is "host:port" where
	// host may be a name (resolved by Dial, i.e. at the far end of a tunnel,
	// as curl --socks5-hostname and socks4a expect) or an IP literal.
	// Errors that wrap ErrNotAllowed, syscall.ECONNREFUSED,
	// syscall.EHOSTUNREACH, syscall.ENETUNREACH or *net.DNSError, or that
	// are timeouts, get the matching answer in each protocol.
	// nil means a net.Dialer with a 10 s timeout.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	// Credentials checks SOCKS5 username/password (RFC 1929) and HTTP Basic
	// proxy auth. nil means no auth is asked for. With it set, SOCKS4
	// (which has no password) is refused, SOCKS5 offers only method 0x02,
	// and HTTP without valid Proxy-Authorization gets 407.
	Credentials Credentials

	// HandshakeTimeout is how long a client has to send a complete request;
	// one that is silent or slow is dropped. 0 means 10 s.
	HandshakeTimeout time.Duration

	// DialUDP opens a datagram flow to addr ("host:port", the host
	// resolved by DialUDP) for SOCKS5 UDP ASSOCIATE: each Write sends one
	// datagram, each Read returns one. nil means a plain UDP socket.
	DialUDP func(ctx context.Context, addr string) (net.Conn, error)

	// NoUDP, if set, is asked at each UDP ASSOCIATE whether the path
	// cannot carry UDP now (a tunnel through a stock sshd); true answers
	// "command not supported".
	NoUDP func() bool

	// UDPIdleTimeout ends an association's flow to one destination after
	// this long without a datagram. 0 means 60 s.
	UDPIdleTimeout time.Duration

	// Logger receives one debug record per connection. nil means discard.
	Logger *slog.Logger

	mu        sync.Mutex
	closed    bool
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]*client
	wg        sync.WaitGroup
	transport *http.Transport // for absolute-form HTTP requests; made on first use
}

// Serve accepts clients on l and answers each in its own goroutine until l
// fails or the Server is closed. After Close it returns net.ErrClosed.
// Serve does not close l unless Close is called.
func (s *Server) Serve(l net.Listener) error {
	if !s.addListener(l) {
		return net.ErrClosed
	}
	defer s.removeListener(l)
	var closed bool
	err := accept.Loop(l, s.logger(), func(c net.Conn) {
		ctx, ok := s.track(context.Background(), c)
		if !ok {
			c.Close()
			closed = true
			l.Close()
			return
		}
		go func() {
			defer s.untrack(c)
			s.handle(ctx, c)
		}()
	})
	if closed || s.isClosed() {
		return net.ErrClosed
	}
	return fmt.Errorf("socks: %w", err)
}

// ServeConn answers one client on c and closes c. It returns when the
// client's connection, and any relay it asked for, has ended, or ctx is done.
// The error is why the request failed, or nil for a request that was
// answered.
func (s *Server) ServeConn(ctx context.Context, c net.Conn) error {
	ctx, ok := s.track(ctx, c)
	if !ok {
		c.Close()
		return net.ErrClosed
	}
	defer s.untrack(c)
	return s.handle(ctx, c)
}

// Close stops every Serve loop (closing their listeners), closes every
// client connection and waits for their goroutines to end. It is safe to
// call more than once; later calls wait too.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for l := range s.listeners {
		l.Close()
	}
	for c, cl := range s.conns {
		cl.cancel()
		c.Close()
	}
	t := s.transport
	s.mu.Unlock()
	s.wg.Wait()
	if t != nil {
		t.CloseIdleConnections()
	}
	return nil
}

// Shutdown stops the Server gracefully: it closes the listeners, so no new
// client comes in, lets the clients being served (and their relays, and
// UDP associations) finish until ctx ends, and then closes what is left as
// Close does. It returns ctx's error if clients were still there then.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	for l := range s.listeners {
		l.Close()
	}
	for c, cl := range s.conns {
		if cl.idle {
			c.Close() // waiting for a request that is not wanted now
		}
	}
	s.mu.Unlock()
	var err error
	for delay := time.Millisecond; s.active() > 0; delay = min(2*delay, 100*time.Millisecond) {
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			err = fmt.Errorf("socks: %d clients still connected: %w", s.active(), ctx.Err())
		case <-t.C:
		}
		if err != nil {
			break
		}
	}
	s.Close()
	return err
}

// client is one connection being served.
type client struct {
	cancel context.CancelFunc
	// idle: waiting for a request (the first, or the next on a kept-alive
	// HTTP connection), which Shutdown does not wait for.
	idle bool
}

// setIdle marks c waiting for a request, or serving one. It reports
// false when c is to stop: idle while the Server shuts down.
func (s *Server) setIdle(c net.Conn, idle bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cl := s.conns[c]; cl != nil {
		cl.idle = idle
	}
	return !idle || !s.closed
}

// active is how many clients are being served.
func (s *Server) active() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *Server) addListener(l net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.listeners == nil {
		s.listeners = make(map[net.Listener]struct{})
	}
	s.listeners[l] = struct{}{}
	return true
}

func (s *Server) removeListener(l net.Listener) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.listeners, l)
}

// track registers c so that Close can end it, and returns the context its
// work runs under. It reports false once the Server is closed.
func (s *Server) track(parent context.Context, c net.Conn) (context.Context, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, false
	}
	if s.conns == nil {
		s.conns = make(map[net.Conn]*client)
	}
	ctx, cancel := context.WithCancel(parent)
	s.conns[c] = &client{cancel: cancel, idle: true}
	s.wg.Add(1)
	return ctx, true
}

func (s *Server) untrack(c net.Conn) {
	c.Close()
	s.mu.Lock()
	cl := s.conns[c]
	delete(s.conns, c)
	s.mu.Unlock()
	if cl != nil {
		cl.cancel()
	}
	s.wg.Done()
}

// handle answers the client on c; c is closed by the caller.
func (s *Server) handle(ctx context.Context, c net.Conn) error {
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer stop()

	timeout := s.HandshakeTimeout
	if timeout <= 0 {
		timeout = defaultHandshakeTimeout
	}
	c.SetDeadline(time.Now().Add(timeout))
	lr := &capReader{r: c, n: maxHandshake}
	br := bufio.NewReader(lr)
	first, err := br.Peek(1)
	if err != nil {
		return fmt.Errorf("socks: reading from client %s: %w", c.RemoteAddr(), err)
	}
	hs := &handshake{s: s, ctx: ctx, c: c, br: br, lr: lr, timeout: timeout}
	switch first[0] {
	case socks4Version:
		err = hs.socks4()
	case socks5Version:
		err = hs.socks5()
	default:
		err = hs.http()
	}
	if err != nil {
		s.logger().Debug("socks: request failed", "peer", c.RemoteAddr(), "err", err)
	}
	return err
}

// handshake is one client connection while its request is being read.
type handshake struct {
	s       *Server
	ctx     context.Context
	c       net.Conn
	br      *bufio.Reader // over lr over c
	lr      *capReader
	timeout time.Duration
}

// dial opens the connection a client asked for.
func (s *Server) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if s.Dial != nil {
		return s.Dial(ctx, network, addr)
	}
	d := net.Dialer{Timeout: defaultDialTimeout}
	return d.DialContext(ctx, network, addr)
}

// connect dials addr for the client, clearing the handshake deadline first
// so that a slow dial is bounded by Dial alone.
func (hs *handshake) connect(addr string) (net.Conn, error) {
	hs.s.setIdle(hs.c, false)
	hs.c.SetDeadline(time.Time{})
	t, err := hs.s.dial(hs.ctx, "tcp", addr)
	if err != nil {
		hs.s.logger().Debug("socks: dial failed", "peer", hs.c.RemoteAddr(), "raddr", addr, "err", err)
		return nil, fmt.Errorf("socks: dial %s: %w", addr, err)
	}
	return t, nil
}

// relay forwards whatever the client sent after its request, then copies
// between the client and t in both directions until both are done.
func (hs *handshake) relay(t net.Conn, addr string) error {
	defer t.Close()
	hs.c.SetDeadline(time.Time{})
	if n := hs.br.Buffered(); n > 0 {
		b, _ := hs.br.Peek(n)
		if _, err := t.Write(b); err != nil {
			return fmt.Errorf("socks: writing to %s: %w", addr, err)
		}
	}
	up, down, _ := relay.Pipe(hs.c, t)
	hs.s.logger().Debug("socks: relay done", "peer", hs.c.RemoteAddr(), "raddr", addr, "bytes", up+down)
	return nil
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// Reply codes of SOCKS5 (RFC 1928 section 6). They are also the
// protocol-neutral classification of dial errors: see classify.
const (
	repSucceeded          = 0x00
	repGeneralFailure     = 0x01
	repNotAllowed         = 0x02
	repNetworkUnreachable = 0x03
	repHostUnreachable    = 0x04
	repConnectionRefused  = 0x05
	repTTLExpired         = 0x06
	repCommandUnsupported = 0x07
	repAddressUnsupported = 0x08
)

// classify turns a Dial error into a SOCKS5 reply code.
func classify(err error) byte {
	var dnsErr *net.DNSError
	var netErr net.Error
	switch {
	case errors.Is(err, ErrNotAllowed):
		return repNotAllowed
	case errors.Is(err, syscall.ECONNREFUSED):
		return repConnectionRefused
	case errors.Is(err, syscall.ENETUNREACH):
		return repNetworkUnreachable
	case errors.Is(err, syscall.EHOSTUNREACH):
		return repHostUnreachable
	case errors.As(err, &dnsErr) && !dnsErr.IsTimeout:
		return repHostUnreachable
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &netErr) && netErr.Timeout():
		return repTTLExpired
	}
	return repGeneralFailure
}

// capReader reads from r until n bytes have been read, then reports EOF.
// It bounds how much a client can make us buffer before its request is
// complete.
type capReader struct {
	r io.Reader
	n int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		return 0, errTooLarge
	}
	if int64(len(p)) > c.n {
		p = p[:c.n]
	}
	n, err := c.r.Read(p)
	c.n -= int64(n)
	return n, err
}

var errTooLarge = errors.New("socks: request too large")
