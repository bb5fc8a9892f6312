package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// Dispatcher serves SSH, SSH inside TLS, SSH inside WebSocket and HTTP on
// one port. Its Unwrap looks at the first byte of each connection:
//
//	'S' (SSH-2.0-...)            raw SSH: the conn itself goes to the SSH server
//	0x16 (a TLS ClientHello)     by its SNI: a name Passthrough takes → that
//	                             service, TLS and all; else TLS, then by ALPN:
//	                             "ssh" → SSH; "h2", "http/1.1" → HTTP; none →
//	                             SSH if the SNI is one of SSHNames or the first
//	                             byte inside is 'S', else HTTP
//	'A'-'Z' (GET, POST, ...)     HTTP, plain
//	anything else                closed
//
// HTTP, plain or inside TLS, goes to one http.Server: a WebSocket upgrade
// at Path becomes an SSH stream (given to SSH), every other request goes to
// HTTP. docs/protocol.md has the wire format.
//
// Set the fields before the first Unwrap and do not change them after.
type Dispatcher struct {
	// TLS answers TLS handshakes, with its Certificates or
	// GetCertificate; Unwrap offers the ALPN protocols "ssh", "h2" and
	// "http/1.1", in that order of preference, before any of its own
	// NextProtos. nil: a connection that starts with a TLS handshake is
	// closed.
	TLS *tls.Config
	// Passthrough, if set, is asked for each TLS connection's server name
	// (SNI, never "") before anything is answered: a non-nil serve takes
	// the connection whole, its ClientHello not yet read, for a service
	// that ends TLS itself (a name's -R NAME:443 forward, docs/names.md);
	// serve then owns it and closes it. nil: TLS ends here.
	Passthrough func(serverName string) (serve func(net.Conn))
	// SSHNames are TLS server names (SNI) that mean SSH for a client that
	// offers no ALPN protocol, such as openssl s_client or socat.
	SSHNames []string
	// Path is where a WebSocket upgrade carries SSH; "" means DefaultPath.
	Path string
	// SSH serves one SSH stream that arrived as a WebSocket, and returns
	// when it ends. nil refuses WebSocket upgrades with 503.
	SSH func(net.Conn)
	// HTTP answers every HTTP request that is not a WebSocket upgrade at
	// Path. nil means a small 404 page.
	HTTP http.Handler
	// TrustedProxies are the reverse proxies (nginx and the like) whose
	// X-Forwarded-For header names the real client of a WebSocket: from
	// them, the last address in that header is the client's address that
	// SSH sees (authorized_keys from=, per-source limits, logs). Empty
	// means the header is never believed.
	TrustedProxies []netip.Prefix
	// LoginGrace is the deadline the caller set on each connection before
	// Unwrap (the SSH server's HandshakeTimeout): it also bounds how long
	// an HTTP request's header may take to arrive, and it is the deadline
	// a connection gets back after a wait for its first byte. 0 means
	// 30 s; negative means no limit.
	LoginGrace time.Duration
	// SilentSSH is how long Unwrap waits for a client's first byte. A
	// client that has sent nothing by then is taken for SSH, and the SSH
	// server speaks first, as sshd does, for the clients and probes
	// (monitoring, nmap) that wait for the server's version line. 0 means
	// 2 s; never more than half the login grace.
	SilentSSH time.Duration
	// MaxHTTPConns caps the connections counted as HTTP at once: from
	// their accept (Sort) until their first bytes show they may be SSH,
	// and if they are HTTP (plain, inside TLS, or passed through to a
	// name's TLS service) until they close or are upgraded
	// (httplimit.go). One past the cap is closed at once. 0 means
	// DefaultMaxHTTPConns; negative, no cap.
	MaxHTTPConns int
	// MaxHTTPConnsPerSource is that cap for one source address (IPv6:
	// one /64). 0 means DefaultMaxHTTPConnsPerSource; negative, no cap.
	MaxHTTPConnsPerSource int
	// Hold, if set, is called for each connection the HTTP server takes,
	// and what it returns when that connection closes or is upgraded: the
	// command line counts HTTP connections toward GOMAXPROCS as it counts
	// SSH ones (tunnel.CoreBudget), so that a server busy with names'
	// HTTP is not held to one core by its one SSH connection.
	Hold func() (release func())
	// Logger gets a debug line for each connection closed for what its
	// first bytes were, and a warning (a line a second at most) when the
	// HTTP limits drop connections. nil discards.
	Logger *slog.Logger

	once   sync.Once
	ctx    context.Context
	cancel context.CancelFunc
	tlsCfg *tls.Config
	srv    *http.Server
	ln     *connListener
	gate   *httpGate
	conns  sync.Map // net.Conn → *httpConn: the HTTP server's, until closed or hijacked
}

// errEmpty is the error for a connection that closed before its first
// byte.
var errEmpty = errors.New("transport: the connection closed before sending anything")

// Sort is the tunnel.ServerConfig.Sort of a server on a shared port: it
// takes a connection just accepted, before it counts toward the SSH
// server's pre-authentication limits, and waits for its first bytes,
// counting it toward the HTTP limits meanwhile. A connection that shows
// it is HTTP (a method; a ClientHello offering h2 or http/1.1 and not
// ssh, or naming a public name), or that a passthrough takes, it serves
// and returns nil for, no error. Any other (SSH, SSH inside TLS, TLS it
// cannot tell yet, a client that sends nothing within SilentSSH) it
// returns for Unwrap, which carries on from what Sort read. On an error
// the caller closes c.
func (d *Dispatcher) Sort(c net.Conn) (net.Conn, error) {
	d.init()
	st, out, err := d.sort(c)
	if st == nil {
		return nil, err
	}
	return &sortedConn{Conn: out, st: st}, nil
}

// sortedConn is a conn Sort returned, with what it learned, for Unwrap.
type sortedConn struct {
	net.Conn
	st *sorted
}

// Unwrap takes a connection just accepted, or one Sort returned, with the
// deadline of its login grace set, and returns the conn its SSH stream
// travels on: c itself for raw SSH, a TLS conn for SSH inside TLS. It
// returns nil and no error as soon as c is known to be HTTP (or a
// passthrough's): then the Dispatcher owns c, and counts it toward its
// HTTP limits instead. On an error the caller closes c. It is the
// tunnel.ServerConfig.Unwrap of a server on a shared port.
func (d *Dispatcher) Unwrap(c net.Conn) (net.Conn, error) {
	d.init()
	if sc, ok := c.(*sortedConn); ok {
		return d.unwrap(sc.Conn, sc.st)
	}
	st, c, err := d.sort(c)
	if st == nil {
		return nil, err
	}
	return d.unwrap(c, st)
}

// sorted is what sort learned of a connection that may be SSH.
type sorted struct {
	deadline time.Time   // of the whole way in: first byte, TLS, HTTP header
	bc       *batchConn  // TLS: the conn, its ClientHello read into the buffer
	hello    clientHello // TLS: what the ClientHello says
}

// sort is Sort: for a connection that may be SSH, what it learned and
// the conn to go on with; nil for one it has taken.
func (d *Dispatcher) sort(c net.Conn) (*sorted, net.Conn, error) {
	release, err := d.admitHTTP(c)
	if err != nil {
		return nil, nil, err
	}
	taken := false
	defer func() {
		if !taken {
			release()
		}
	}()
	st := &sorted{}
	if grace := d.loginGrace(); grace > 0 {
		st.deadline = time.Now().Add(grace)
	}
	first, c, err := d.peek(c, st.deadline)
	if errors.Is(err, errSilent) {
		return st, c, nil // SSH, the server first
	}
	if err != nil {
		return nil, nil, err
	}
	switch {
	case first == 'S':
		return st, c, nil
	case first == 0x16:
		if d.tlsCfg == nil {
			d.logger().Debug("closed: a TLS handshake on a port without a certificate", "peer", c.RemoteAddr().String())
			return nil, nil, errors.New("transport: a TLS handshake, and this port has no TLS certificate")
		}
		st.bc = newBatchConn(c, true)
		if st.hello, err = readClientHello(st.bc.r.(*bufio.Reader)); err != nil {
			d.logger().Debug("closed: not a TLS ClientHello", "peer", c.RemoteAddr().String(), "err", err)
			return nil, nil, err
		}
		if serve := d.passthrough(st.hello); serve != nil {
			// The service's to time out from here, as a remote
			// forward's port is.
			taken = true
			c.SetDeadline(time.Time{})
			go serve(&gatedConn{passConn: passConn{st.bc}, release: release})
			return nil, nil, nil
		}
		if d.helloIsHTTP(st.hello) {
			// The HTTP server does the handshake, bounded by the grace.
			taken = true
			return nil, nil, d.serveHTTP(tls.Server(st.bc, d.tlsCfg), st.deadline, release)
		}
		return st, c, nil
	case 'A' <= first && first <= 'Z':
		taken = true
		return nil, nil, d.serveHTTP(newBatchConn(c, true), st.deadline, release)
	}
	d.logger().Debug("closed: not SSH, TLS or HTTP", "peer", c.RemoteAddr().String(), "first_byte", fmt.Sprintf("%#02x", first))
	return nil, nil, fmt.Errorf("transport: the first byte %#02x is not SSH, TLS or HTTP", first)
}

// passthrough is what serves a ClientHello's server name raw, if
// anything.
func (d *Dispatcher) passthrough(h clientHello) func(net.Conn) {
	if d.Passthrough == nil || h.ServerName == "" {
		return nil
	}
	return d.Passthrough(h.ServerName)
}

// unwrap goes on from sort, in the SSH server's slot: c is SSH, or TLS
// that may carry SSH.
func (d *Dispatcher) unwrap(c net.Conn, st *sorted) (net.Conn, error) {
	if st.bc == nil {
		return c, nil
	}
	bc, deadline := st.bc, st.deadline
	tc := tls.Server(bc, d.tlsCfg)
	if err := tc.HandshakeContext(d.ctx); err != nil {
		d.logger().Debug("closed: TLS handshake failed", "peer", c.RemoteAddr().String(), "err", err)
		return nil, fmt.Errorf("transport: TLS handshake: %w", err)
	}
	cs := tc.ConnectionState()
	switch cs.NegotiatedProtocol {
	case ALPN:
		return newWriterConn(tc, bc), nil
	case "":
		if slices.ContainsFunc(d.SSHNames, func(n string) bool { return strings.EqualFold(n, cs.ServerName) }) {
			return newWriterConn(tc, bc), nil
		}
		first, inner, err := d.peek(tc, deadline)
		if errors.Is(err, errSilent) || err == nil && first == 'S' {
			return newWriterConn(inner, bc), nil
		}
		if err != nil {
			return nil, err
		}
		return nil, d.serveHTTP(inner, deadline, nil)
	}
	return nil, d.serveHTTP(tc, deadline, nil)
}

// errSilent is peek's error for a client that sent nothing within
// SilentSSH.
var errSilent = errors.New("transport: the client sent nothing yet")

// peek returns c's first byte and a conn that reads from that byte on:
// c itself for a TCP conn (MSG_PEEK), else c behind a buffer. A client
// silent for SilentSSH gets errSilent, and that conn, with the login
// grace's deadline again.
func (d *Dispatcher) peek(c net.Conn, deadline time.Time) (byte, net.Conn, error) {
	start := time.Now()
	silent := d.SilentSSH
	if silent <= 0 {
		silent = 2 * time.Second
	}
	if !deadline.IsZero() {
		// Within the grace, so that a silent client meets the SSH
		// server's own timeout, and its log line, as with sshd.
		silent = min(silent, time.Until(deadline)/2)
	}
	c.SetReadDeadline(start.Add(silent))
	b, pc, err := peekConn(c)
	c.SetDeadline(deadline)
	if tc, ok := c.(*net.TCPConn); ok && isTimeout(err) {
		// A first byte that came while this goroutine waited to run
		// is not silence.
		if nb, nerr := peekTCPNow(tc); nerr == nil {
			return nb, c, nil
		}
	}
	if isTimeout(err) {
		if pc == nil {
			pc = c
		}
		return 0, pc, errSilent
	}
	return b, pc, err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// peekConn is peek without the wait for a silent client.
func peekConn(c net.Conn) (byte, net.Conn, error) {
	if tc, ok := c.(*net.TCPConn); ok {
		b, err := peekTCP(tc)
		if !errors.Is(err, errors.ErrUnsupported) {
			return b, c, err
		}
	}
	br := bufio.NewReader(c)
	pc := &peekedConn{Conn: c, r: br}
	p, err := br.Peek(1)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = errEmpty
		}
		return 0, pc, err
	}
	return p[0], pc, nil
}

// loginGrace is LoginGrace with its default; 0 for no limit.
func (d *Dispatcher) loginGrace() time.Duration {
	switch {
	case d.LoginGrace == 0:
		return 30 * time.Second
	case d.LoginGrace < 0:
		return 0
	}
	return d.LoginGrace
}

// peekedConn is a conn whose first bytes were read into r.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (d *Dispatcher) init() {
	d.once.Do(func() {
		d.ctx, d.cancel = context.WithCancel(context.Background())
		if d.TLS != nil {
			d.tlsCfg = d.TLS.Clone()
			// crypto/tls picks the first of these the client offers:
			// SSH, then HTTP/2 for browsers, then HTTP/1.1 (WebSocket
			// clients offer only that).
			protos := []string{ALPN, "h2", "http/1.1"}
			for _, p := range d.TLS.NextProtos {
				if !slices.Contains(protos, p) {
					protos = append(protos, p)
				}
			}
			d.tlsCfg.NextProtos = protos
		}
		// Without an HTTP handler, HTTP here serves 404s and WebSocket
		// upgrades: one request a connection, each bounded as a login
		// is. With one (names, docs/names.md), browsers get keep-alive,
		// each request's header and each idle wait bounded the same way;
		// the handler may lift the read and write deadlines of a request
		// it streams.
		timeout := d.loginGrace()
		if timeout <= 0 {
			timeout = 30 * time.Second
		}
		d.gate = newHTTPGate(limitOr(d.MaxHTTPConns, DefaultMaxHTTPConns), limitOr(d.MaxHTTPConnsPerSource, DefaultMaxHTTPConnsPerSource), d.logger())
		d.ln = &connListener{conns: make(chan net.Conn), done: make(chan struct{})}
		d.srv = &http.Server{
			Handler:           http.HandlerFunc(d.serve),
			ReadHeaderTimeout: timeout,
			ReadTimeout:       timeout,
			WriteTimeout:      timeout,
			IdleTimeout:       timeout,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          slog.NewLogLogger(d.logger().Handler(), slog.LevelDebug),
			ConnContext: func(ctx context.Context, c net.Conn) context.Context {
				return context.WithValue(ctx, connKey{}, c)
			},
			ConnState: func(c net.Conn, st http.ConnState) {
				if st == http.StateClosed || st == http.StateHijacked {
					d.httpDone(c)
				}
			},
		}
		d.srv.SetKeepAlivesEnabled(d.HTTP != nil)
		go d.srv.Serve(d.ln)
	})
}

type connKey struct{}

// limitOr is a limit field with its default: 0 means def, negative none.
func limitOr(n, def int) int {
	if n == 0 {
		return def
	}
	return n
}

func (d *Dispatcher) logger() *slog.Logger {
	if d.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return d.Logger
}

// helloIsHTTP reports whether a ClientHello shows HTTP before the
// handshake: it offers h2 or http/1.1 and not ssh, or, offering none of
// those, names a public name of the HTTP handler (and not one of
// SSHNames).
func (d *Dispatcher) helloIsHTTP(h clientHello) bool {
	if slices.Contains(h.ALPN, ALPN) {
		return false
	}
	// acme-tls/1 is an ACME CA checking TLS-ALPN-01 (certs): the HTTP
	// server's handshake answers it, and it is not an SSH login.
	if slices.Contains(h.ALPN, "h2") || slices.Contains(h.ALPN, "http/1.1") || slices.Contains(h.ALPN, "acme-tls/1") {
		return true
	}
	if len(h.ALPN) > 0 || h.ServerName == "" || slices.ContainsFunc(d.SSHNames, func(n string) bool { return strings.EqualFold(n, h.ServerName) }) {
		return false
	}
	o, ok := d.HTTP.(interface{ Owns(host string) bool })
	return ok && o.Owns(h.ServerName)
}

// admitHTTP counts c toward the HTTP limits, or says why it cannot be.
func (d *Dispatcher) admitHTTP(c net.Conn) (release func(), err error) {
	release, reason := d.gate.admit(c.RemoteAddr())
	if release == nil {
		return nil, fmt.Errorf("transport: too many HTTP connections (%s); raise --%s if they are welcome", reason, reason)
	}
	return release, nil
}

// httpConn is what the Dispatcher keeps of a conn the HTTP server has.
type httpConn struct {
	timer   *time.Timer // closes the conn if its first request's header has not come by the deadline; nil: none
	release func()      // of its place in the HTTP limits
}

// serveHTTP gives c to the HTTP server, without waiting: it no longer
// counts as a connection that has not shown what it is. release is of its
// place in the HTTP limits; nil takes one.
func (d *Dispatcher) serveHTTP(c net.Conn, deadline time.Time, release func()) error {
	if release == nil {
		var err error
		if release, err = d.admitHTTP(c); err != nil {
			return err
		}
	}
	// From here the HTTP server sets the conn's deadlines; the login
	// grace's deadline still bounds the first request's header, TLS
	// handshake included, by a timer that closes c.
	c.SetDeadline(time.Time{})
	if d.Hold != nil {
		held, limits := d.Hold(), release
		release = func() { held(); limits() }
	}
	hc := &httpConn{release: release}
	if !deadline.IsZero() {
		hc.timer = time.AfterFunc(time.Until(deadline), func() { c.Close() })
	}
	d.conns.Store(c, hc)
	select {
	case d.ln.conns <- c:
		return nil
	case <-d.ln.done:
		d.httpDone(c)
		return net.ErrClosed
	}
}

// firstRequest notes that c's first request has arrived: its header is
// no longer bounded by the login grace.
func (d *Dispatcher) firstRequest(c net.Conn) {
	if v, ok := d.conns.Load(c); ok && v.(*httpConn).timer != nil {
		v.(*httpConn).timer.Stop()
	}
}

// httpDone notes that c has closed, or been upgraded and taken by its
// handler: it leaves the HTTP limits.
func (d *Dispatcher) httpDone(c net.Conn) {
	if v, ok := d.conns.LoadAndDelete(c); ok {
		hc := v.(*httpConn)
		if hc.timer != nil {
			hc.timer.Stop()
		}
		hc.release()
	}
}

func (d *Dispatcher) path() string {
	if d.Path == "" {
		return DefaultPath
	}
	return d.Path
}

func (d *Dispatcher) serve(w http.ResponseWriter, r *http.Request) {
	if c, ok := r.Context().Value(connKey{}).(net.Conn); ok {
		d.firstRequest(c)
		if pc, ok := c.(*peekedConn); ok && r.TLS == nil {
			// TLS without ALPN, told from SSH by its first byte: still
			// TLS to whoever answers.
			if tc, ok := pc.Conn.(*tls.Conn); ok {
				cs := tc.ConnectionState()
				r.TLS = &cs
			}
		}
	}
	// A host the HTTP handler owns (a public name) is all its own, /ssh
	// included.
	if o, ok := d.HTTP.(interface{ Owns(host string) bool }); ok && o.Owns(r.Host) {
		d.HTTP.ServeHTTP(w, r)
		return
	}
	if r.URL.Path != d.path() {
		if d.HTTP != nil {
			d.HTTP.ServeHTTP(w, r)
			return
		}
		notFound(w)
		return
	}
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusUpgradeRequired)
		io.WriteString(w, "pinhole: this is an SSH-over-WebSocket endpoint; connect with pinhole connect wss://HOST"+d.path()+", or ssh -o ProxyCommand='pinhole stdio wss://HOST"+d.path()+"' HOST\n")
		return
	}
	if d.SSH == nil {
		http.Error(w, "pinhole: SSH over WebSocket is not served here", http.StatusServiceUnavailable)
		return
	}
	// The SSH inside authenticates; no cookie or browser credential is
	// involved, so a cross-origin request gains nothing: the Origin
	// header is not checked.
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		d.logger().Debug("WebSocket upgrade failed", "peer", r.RemoteAddr, "err", err)
		return
	}
	under, _ := r.Context().Value(connKey{}).(net.Conn) // what Accept hijacked
	if under != nil {
		under.SetDeadline(time.Time{}) // the HTTP server's; the SSH server sets its own
	}
	var nc net.Conn = newWSConn(d.ctx, ws, under)
	if bc := below(under); bc != nil {
		nc = newWriterConn(nc, bc)
	}
	if remote := d.forwardedFor(nc.RemoteAddr(), r.Header.Values("X-Forwarded-For")); remote != nil {
		nc = &addrConn{Conn: nc, remote: remote}
	}
	d.SSH(nc)
}

// addrConn is a conn whose peer is another address: the client's, that a
// trusted proxy named.
type addrConn struct {
	net.Conn
	remote net.Addr
}

func (c *addrConn) RemoteAddr() net.Addr { return c.remote }

// below is the batchConn under c, the conn of an HTTP request, if it has
// one (plain HTTP, or TLS with ALPN).
func below(c net.Conn) *batchConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	bc, _ := c.(*batchConn)
	return bc
}

// forwardedFor is the client's address that a trusted proxy at peer
// names in X-Forwarded-For (the last entry: the one the proxy itself
// added), nil when peer is not a trusted proxy or names none.
func (d *Dispatcher) forwardedFor(peer net.Addr, values []string) net.Addr {
	if len(d.TrustedProxies) == 0 || len(values) == 0 {
		return nil
	}
	ap, err := netip.ParseAddrPort(peer.String())
	if err != nil {
		return nil
	}
	trusted := false
	for _, p := range d.TrustedProxies {
		if p.Contains(ap.Addr().Unmap()) {
			trusted = true
		}
	}
	if !trusted {
		return nil
	}
	list := strings.Split(values[len(values)-1], ",")
	a, err := netip.ParseAddr(strings.TrimSpace(list[len(list)-1]))
	if err != nil {
		return nil
	}
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(a.Unmap(), 0))
}

func notFound(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusNotFound)
	io.WriteString(w, "<!doctype html>\n<title>404 Not Found</title>\n<h1>404 Not Found</h1>\n<p>Nothing is served here.</p>\n")
}

// Close closes the HTTP connections and ends the WebSocket streams'
// contexts. It is idempotent.
func (d *Dispatcher) Close() error {
	d.init()
	d.cancel()
	d.ln.Close()
	return d.srv.Close()
}

// Shutdown stops taking connections for HTTP and waits, until ctx ends,
// for the HTTP requests in progress, as http.Server.Shutdown does. The
// SSH streams that arrived as WebSockets go on: they belong to the SSH
// server, whose Shutdown drains them. Close ends them.
func (d *Dispatcher) Shutdown(ctx context.Context) error {
	d.init()
	d.ln.Close()
	return d.srv.Shutdown(ctx)
}

// connListener is the listener the HTTP server accepts from: Unwrap
// hands it the connections that are HTTP.
type connListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *connListener) Addr() net.Addr { return dispatchAddr{} }

type dispatchAddr struct{}

func (dispatchAddr) Network() string { return "dispatch" }
func (dispatchAddr) String() string  { return "dispatch" }
