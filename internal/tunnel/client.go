package tunnel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pinhole-dev/pinhole/internal/ssh"

	"github.com/pinhole-dev/pinhole/internal/auth"
	"github.com/pinhole-dev/pinhole/internal/spec"
)

// ClientConfig configures a Client. Fields left zero take their defaults.
type ClientConfig struct {
	// Addr is the server's host:port.
	Addr string
	// User is the user name to log in as.
	User string
	// Auth is how to authenticate, usually ssh.PublicKeys or
	// ssh.PublicKeysCallback over an agent.
	Auth []ssh.AuthMethod
	// HostKeyCallback checks the server's host key. It is required: there is
	// no default, as in x/crypto/ssh.
	HostKeyCallback ssh.HostKeyCallback
	// HostKeyAlgorithms, if set, are the host key types to ask for, so a
	// server with several keys shows the one known_hosts holds.
	HostKeyAlgorithms []string

	// Local are the -L forwards: listen here, connect from the server.
	Local []spec.Forward
	// Remote are the -R forwards: listen on the server, connect from here.
	Remote []spec.Forward

	// KeepaliveInterval is how often the server is asked whether it is
	// alive (ssh's ServerAliveInterval). 0 means 15 s; negative: never.
	KeepaliveInterval time.Duration
	// KeepaliveCountMax unanswered keepalives drop the connection, which
	// is then reconnected. 0 means 3.
	KeepaliveCountMax int
	// ConnectTimeout bounds one TCP connect plus SSH handshake. 0 means 15 s.
	ConnectTimeout time.Duration
	// BackoffMin and BackoffMax bound the wait between reconnect attempts,
	// which doubles from Min to Max with ±20% jitter. 0 means 250 ms and
	// 5 s.
	BackoffMin, BackoffMax time.Duration
	// StreamWait is how long a new local connection waits for the tunnel
	// while it is reconnecting. 0 means 10 s.
	StreamWait time.Duration

	// UDPIdleTimeout ends a local UDP forward's flow after this long
	// without a datagram. 0 means 60 s.
	UDPIdleTimeout time.Duration
	// UDPMaxFlows caps the flows of one local UDP forward. 0 means 1024.
	UDPMaxFlows int
	// UDPOptional makes a server without pinhole's UDP extension (a stock
	// sshd) a warning instead of an error: the /udp forwards are dropped and
	// the rest go on. Otherwise Dial fails with ErrNoUDP.
	UDPOptional bool

	// Dial opens the TCP connection to the server. nil means net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Listen opens -L listeners. nil means net.Listen, with TCP keepalive
	// at the system's timing on accepted connections.
	Listen func(network, addr string) (net.Listener, error)
	// Cores, if set, is told how many SSH connections the client holds
	// (cores.go). nil leaves GOMAXPROCS alone.
	Cores *CoreBudget

	// Logger gets one line per state change. nil discards.
	Logger *slog.Logger
}

// Client is a tunnel that stays up: it reconnects with backoff when the
// connection drops and restores every remote forward; local listeners stay
// bound throughout. Create one with Dial.
type Client struct {
	cfg    ClientConfig
	sshCfg *ssh.ClientConfig
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc
	locals []net.Listener // TCP -L listeners, in order
	udps   []*net.UDPConn // UDP -L sockets, in order
	laddrs []net.Addr     // every -L's address, in cfg.Local order
	udp    atomic.Bool    // the server speaks pinhole's UDP extension
	meter  meter
	banner authBanners // what the server said while refusing our keys (authmsg.go)

	mu      sync.Mutex
	conn    *link         // nil while disconnected
	up      chan struct{} // closed while conn != nil
	remotes []string      // per Remote forward: where the server listens, "" if not now
	err     error         // why the client stopped
	done    chan struct{}
	wg      sync.WaitGroup
}

// Dial binds every local forward, connects to the server, asks for every
// remote forward and returns a Client that keeps them working until Close;
// ctx bounds only this first connect. It fails at once, without retrying, when a local port cannot
// be bound, the server cannot be reached, the host key is wrong or
// authentication fails. A remote forward the server refuses is logged and
// the others go on.
func Dial(ctx context.Context, cfg ClientConfig) (*Client, error) {
	if cfg.HostKeyCallback == nil {
		return nil, errors.New("tunnel: ClientConfig.HostKeyCallback is nil; use an auth.KnownHosts callback")
	}
	if cfg.KeepaliveInterval == 0 {
		cfg.KeepaliveInterval = 15 * time.Second
	}
	if cfg.KeepaliveCountMax <= 0 {
		cfg.KeepaliveCountMax = 3
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 15 * time.Second
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = 250 * time.Millisecond
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 5 * time.Second
	}
	if cfg.StreamWait <= 0 {
		cfg.StreamWait = 10 * time.Second
	}
	if cfg.Dial == nil {
		cfg.Dial = new(net.Dialer).DialContext
	}
	if cfg.Listen == nil {
		cfg.Listen = listenStreams
	}
	for _, f := range cfg.Local {
		if f.Kind != spec.Local {
			return nil, fmt.Errorf("tunnel: %s %s is not a local forward", f.Kind, f)
		}
	}
	for _, f := range cfg.Remote {
		if f.Kind != spec.Remote {
			return nil, fmt.Errorf("tunnel: %s %s is not a remote forward", f.Kind, f)
		}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Client{
		cfg: cfg,
		sshCfg: &ssh.ClientConfig{
			Config:            ssh.Config{Ciphers: ciphers},
			User:              cfg.User,
			Auth:              cfg.Auth,
			HostKeyCallback:   cfg.HostKeyCallback,
			HostKeyAlgorithms: cfg.HostKeyAlgorithms,
			ClientVersion:     versionPrefix + "_" + Version,
			Timeout:           cfg.ConnectTimeout,
		},
		log:     log.With("tunnel", cfg.Addr),
		up:      make(chan struct{}),
		remotes: make([]string, len(cfg.Remote)),
		done:    make(chan struct{}),
	}
	c.sshCfg.BannerCallback = c.banner.record
	c.ctx, c.cancel = context.WithCancel(context.Background())
	if err := c.bindLocals(); err != nil {
		c.cancel()
		c.closeListeners()
		return nil, err
	}
	conn, err := c.connect(ctx)
	if err != nil {
		c.cancel()
		c.closeListeners()
		c.wg.Wait()
		return nil, err
	}
	c.setConn(conn)
	c.log.Info("connected", "user", cfg.User)
	c.serveLocals()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.maintain(conn)
	}()
	return c, nil
}

// remoteBindHost is what a tcpip-forward asks for, as OpenSSH's ssh sends
// it: "localhost" when no bind address was given, "" for "*".
func remoteBindHost(f spec.Forward) string {
	switch f.BindHost {
	case "":
		return "localhost"
	case "*":
		return ""
	}
	return f.BindHost
}

// LocalAddrs are the addresses the -L forwards listen on, in order: a
// *net.TCPAddr or, for /udp, a *net.UDPAddr.
func (c *Client) LocalAddrs() []net.Addr {
	return append([]net.Addr(nil), c.laddrs...)
}

// UDP reports whether the server speaks pinhole's UDP extension, so /udp
// forwards and SOCKS5 UDP ASSOCIATE work.
func (c *Client) UDP() bool { return c.udp.Load() }

// RemoteAddrs are where the server listens for each -R forward, in order:
// host:port with the port the server chose for port 0; "" for a forward the
// server refused or while disconnected.
func (c *Client) RemoteAddrs() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.remotes...)
}

// Close stops reconnecting, closes the listeners, the connection and every
// stream, and waits for them. It is idempotent.
func (c *Client) Close() error {
	c.cancel()
	c.closeListeners()
	c.mu.Lock()
	if c.conn != nil {
		c.conn.Close()
	}
	c.mu.Unlock()
	c.wg.Wait()
	c.stop(nil)
	return nil
}

// Wait blocks until the client stops and returns why: nil after Close, or
// the fatal error (a host key mismatch or refused authentication on
// reconnect) that ended it.
func (c *Client) Wait() error {
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Done is closed when the client has stopped.
func (c *Client) Done() <-chan struct{} { return c.done }

func (c *Client) stop(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.done:
	default:
		c.err = err
		close(c.done)
	}
}

func (c *Client) closeListeners() {
	for _, ln := range c.locals {
		ln.Close()
	}
	for _, pc := range c.udps {
		pc.Close()
	}
}

func (c *Client) setConn(conn *link) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.conn = conn
	if conn != nil {
		close(c.up)
	} else {
		c.up = make(chan struct{})
		for i := range c.remotes {
			c.remotes[i] = ""
		}
	}
}

// current returns the live connection, waiting for a reconnect while ctx
// allows.
func (c *Client) current(ctx context.Context) (*link, error) {
	for {
		c.mu.Lock()
		conn, up := c.conn, c.up
		c.mu.Unlock()
		if conn != nil {
			return conn, nil
		}
		select {
		case <-up:
		case <-ctx.Done():
			return nil, fmt.Errorf("tunnel: not connected to %s: %w", c.cfg.Addr, ctx.Err())
		case <-c.ctx.Done():
			return nil, net.ErrClosed
		}
	}
}

// connect dials the server, runs the handshake and asks for the remote
// forwards.
func (c *Client) connect(ctx context.Context) (_ *link, err error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ConnectTimeout)
	defer cancel()
	release := c.cfg.Cores.Hold() // until the link ends
	defer func() {
		if err != nil {
			release()
		}
	}()
	nc, err := c.cfg.Dial(ctx, "tcp", c.cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("tunnel: cannot reach %s: %w", c.cfg.Addr, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	c.banner.take() // a new login: forget the last one's banners
	sc, chans, reqs, err := ssh.NewClientConn(newBufferedConn(nc), c.cfg.Addr, c.sshCfg)
	if !stop() || err != nil {
		nc.Close()
		if err == nil {
			err = ctx.Err()
		}
		return nil, c.explain(err)
	}
	nc.SetDeadline(time.Time{})
	conn := ssh.NewClient(sc, chans, reqs)
	udp := strings.HasPrefix(string(conn.ServerVersion()), versionPrefix)
	c.udp.Store(udp)
	if !udp && c.hasUDP() && !c.cfg.UDPOptional {
		conn.Close()
		return nil, &FatalError{Err: fmt.Errorf("%w (%s says it is %q): /udp forwards need pinhole server at the far end; drop them or run pinhole server there", ErrNoUDP, c.cfg.Addr, conn.ServerVersion())}
	}
	forwarded := conn.HandleChannelOpen(chanForwardedTCPIP)
	// Handlers first, so no forwarded channel can come before them.
	var forwardedUDP, forwardedEarly <-chan ssh.NewChannel
	if udp {
		forwardedUDP = conn.HandleChannelOpen(chanForwardedUDP)
		forwardedEarly = conn.HandleChannelOpen(chanForwardedTCPIPEarly)
	}
	l := &link{Client: conn}
	l.early.Store(udp) // a pinhole server
	l.ctx, l.cancel = context.WithCancel(c.ctx)
	context.AfterFunc(l.ctx, release)
	table := c.requestRemotes(conn)
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.serveForwarded(l, forwarded, table, false)
	}()
	if forwardedUDP != nil {
		c.wg.Add(2)
		go func() {
			defer c.wg.Done()
			c.serveForwarded(l, forwardedUDP, table, true)
		}()
		go func() {
			defer c.wg.Done()
			c.serveForwarded(l, forwardedEarly, table, false)
		}()
	}
	return l, nil
}

// ErrNoUDP means the server is not pinhole and so cannot carry UDP.
var ErrNoUDP = errors.New("tunnel: the server does not speak pinhole's UDP extension")

func (c *Client) hasUDP() bool {
	for _, fs := range [][]spec.Forward{c.cfg.Local, c.cfg.Remote} {
		for _, f := range fs {
			if f.Proto == spec.UDP {
				return true
			}
		}
	}
	return false
}

// link is one SSH connection to the server. Its ctx ends when the
// connection does, and with it every stream it carried.
type link struct {
	*ssh.Client
	ctx    context.Context
	cancel context.CancelFunc
	early  atomic.Bool // the server takes direct-tcpip-early@pinhole (early.go)
}

// FatalError is an error the client does not retry: the host key is wrong
// or the server refuses our keys.
type FatalError struct{ Err error }

func (e *FatalError) Error() string { return e.Err.Error() }
func (e *FatalError) Unwrap() error { return e.Err }

// explain turns a handshake error into one that says what to do, and marks
// the ones that retrying cannot fix.
func (c *Client) explain(err error) error {
	switch {
	case errors.Is(err, auth.ErrHostKeyMismatch), errors.Is(err, auth.ErrHostKeyUnknown):
		return &FatalError{Err: fmt.Errorf("tunnel: %s: %w", c.cfg.Addr, err)}
	case isAuthRefusal(err):
		return &FatalError{Err: authRefused(c.cfg.Addr, c.cfg.User, c.banner.take(), err)}
	}
	return fmt.Errorf("tunnel: %s: %w", c.cfg.Addr, err)
}

// remoteTable maps the protocol and port the server listens on to the -R
// forward.
type remoteTable map[remoteKey][]remoteEntry

type remoteKey struct {
	proto spec.Proto
	port  uint32
}

type remoteEntry struct {
	host string // as sent in tcpip-forward
	f    spec.Forward
}

// requestRemotes asks conn for every -R forward. Refused ones are logged
// and retried in the background while conn lives: right after a reconnect
// the server may not yet have noticed that our old connection is gone.
func (c *Client) requestRemotes(conn *ssh.Client) *syncTable {
	t := &syncTable{m: make(remoteTable)}
	for i, f := range c.cfg.Remote {
		if f.Proto == spec.UDP && !c.udp.Load() {
			c.log.Warn("remote forward skipped: the server does not speak pinhole's UDP extension", "forward", "-R "+f.String())
			continue
		}
		if err := c.requestRemote(conn, i, f, t); err != nil {
			c.log.Warn("remote forward refused; retrying while connected", "err", err)
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				c.retryRemote(conn, i, f, t)
			}()
		}
	}
	return t
}

func (c *Client) requestRemote(conn *ssh.Client, i int, f spec.Forward, t *syncTable) error {
	host := remoteBindHost(f)
	req := reqTCPIPForward
	if f.Proto == spec.UDP {
		req = reqUDPForward
	}
	ok, reply, err := conn.SendRequest(req, true, ssh.Marshal(forwardRequest{BindHost: host, BindPort: uint32(f.BindPort)}))
	if err != nil {
		return fmt.Errorf("tunnel: -R %s: %w", f, err)
	}
	if !ok {
		return &ForwardError{Spec: f.String(), Reason: string(reply)}
	}
	port := uint32(f.BindPort)
	if port == 0 {
		var r forwardReply
		if err := ssh.Unmarshal(reply, &r); err != nil {
			return fmt.Errorf("tunnel: -R %s: the server's reply has no port: %w", f, err)
		}
		port = r.Port
	}
	t.add(f.Proto, port, remoteEntry{host: host, f: f})
	where := net.JoinHostPort(host, strconv.Itoa(int(port)))
	c.mu.Lock()
	c.remotes[i] = where
	c.mu.Unlock()
	c.log.Info("remote forward listening", "laddr", where, "raddr", f.Target())
	return nil
}

func (c *Client) retryRemote(conn *ssh.Client, i int, f spec.Forward, t *syncTable) {
	delay := c.cfg.BackoffMin
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(jitter(delay)):
		}
		err := c.requestRemote(conn, i, f, t)
		if err == nil {
			return
		}
		var fe *ForwardError
		if !errors.As(err, &fe) {
			return // the connection is gone; the reconnect asks again
		}
		c.log.Debug("remote forward still refused", "err", err)
		delay = min(2*delay, 30*time.Second)
	}
}

type syncTable struct {
	mu sync.Mutex
	m  remoteTable
}

func (t *syncTable) add(proto spec.Proto, port uint32, e remoteEntry) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k := remoteKey{proto, port}
	t.m[k] = append(t.m[k], e)
}

// lookup finds the forward for a forwarded-tcpip channel: by port, and by
// host when several forwards share the port.
func (t *syncTable) lookup(proto spec.Proto, host string, port uint32) (spec.Forward, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	es := t.m[remoteKey{proto, port}]
	if len(es) == 1 {
		return es[0].f, true
	}
	for _, e := range es {
		if e.host == host {
			return e.f, true
		}
	}
	return spec.Forward{}, false
}

// serveForwarded connects each forwarded-tcpip (or forwarded-udp@pinhole)
// channel to its -R target, until the connection closes.
func (c *Client) serveForwarded(l *link, in <-chan ssh.NewChannel, t *syncTable, udp bool) {
	proto := spec.TCP
	if udp {
		proto = spec.UDP
	}
	for nc := range in {
		p, early, err := parseOpen(nc.ChannelType(), nc.ExtraData())
		if err != nil {
			nc.Reject(ssh.ConnectionFailed, "malformed "+nc.ChannelType()+" request")
			continue
		}
		f, ok := t.lookup(proto, p.Host, p.Port)
		if !ok {
			nc.Reject(ssh.Prohibited, "no remote forward for "+p.target())
			continue
		}
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.forwardIn(l, nc, p, early, f)
		}()
	}
}

func (c *Client) forwardIn(l *link, nc ssh.NewChannel, p channelOpen, early []byte, f spec.Forward) {
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	d := net.Dialer{KeepAliveConfig: streamKeepAlive}
	conn, err := d.DialContext(ctx, f.Proto.String(), f.Target())
	cancel()
	if err != nil {
		c.log.Info("remote forward: cannot reach target", "raddr", f.Target(), "peer", p.origin(), "err", err)
		nc.Reject(ssh.ConnectionFailed, dialReason(err))
		return
	}
	if err := writeEarly(conn, f.Target(), early); err != nil {
		c.log.Info("remote forward: cannot reach target", "raddr", f.Target(), "peer", p.origin(), "err", err)
		nc.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	if c.log.Enabled(c.ctx, slog.LevelDebug) { // p.origin() allocates even when discarded
		c.log.Debug("forwarded channel", "type", nc.ChannelType(), "raddr", f.Target(), "origin", p.origin())
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		conn.Close()
		return
	}
	ignoreRequests(reqs)
	if f.Proto == spec.UDP {
		stop := context.AfterFunc(l.ctx, func() { conn.Close() })
		defer stop()
		pipeDatagrams(newDatagramConn(ch, conn.LocalAddr(), conn.RemoteAddr()), conn)
		return
	}
	pipe(l.ctx, &c.wg, &c.meter, true, conn, ch)
}

// serveLocal accepts on a -L listener until it is closed.
func (c *Client) serveLocal(ln net.Listener, f spec.Forward) {
	for {
		conn, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return
		}
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.forwardOut(conn, f)
		}()
	}
}

// forwardOut carries a connection accepted by a -L listener. It waits up to
// StreamWait for the tunnel and for the server to open the stream; when
// that passes first, conn is closed then, and the stream when it comes.
//
// Unlike open, it waits for the server's answer itself, with a timer for
// StreamWait rather than a context: one goroutine and one hand-off fewer
// for each new connection (BenchmarkNewConn).
func (c *Client) forwardOut(conn net.Conn, f spec.Forward) {
	deadline := time.Now().Add(c.cfg.StreamWait)
	l, err := c.currentUntil(deadline)
	var ch ssh.Channel
	if err == nil {
		expired := time.AfterFunc(time.Until(deadline), func() { conn.Close() })
		p := newChannelOpen(f.Host, f.HostPort, conn.RemoteAddr())
		var early []byte
		if l.early.Load() {
			early = readEarly(conn)
		}
		ch, err = openEarly(l.openChannel, chanDirectTCPIP, chanDirectTCPIPEarly, p, early, &l.early)
		putEarly(early)
		if !expired.Stop() {
			if ch != nil {
				ch.Close()
			}
			ch, err = nil, fmt.Errorf("tunnel: open %s: %w", p.target(), context.DeadlineExceeded)
		}
	}
	if err != nil {
		c.log.Info("local forward failed", "laddr", conn.LocalAddr().String(), "raddr", f.Target(), "err", err)
		conn.Close()
		return
	}
	pipe(l.ctx, &c.wg, &c.meter, false, conn, ch)
}

// currentUntil is current with a deadline; it makes a context only when
// there is no connection to return at once.
func (c *Client) currentUntil(deadline time.Time) (*link, error) {
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn != nil {
		return conn, nil
	}
	ctx, cancel := context.WithDeadline(c.ctx, deadline)
	defer cancel()
	return c.current(ctx)
}

func newChannelOpen(host string, port uint16, origin net.Addr) channelOpen {
	p := channelOpen{Host: host, Port: uint32(port)}
	if origin != nil {
		p.OriginHost, p.OriginPort = hostPort(origin)
	}
	return p
}

// openChannel opens a channel of chanType for p (marshalled as payload)
// on l and waits for the server's answer.
func (l *link) openChannel(chanType string, p channelOpen, payload []byte) (ssh.Channel, error) {
	ch, reqs, err := l.OpenChannel(chanType, payload)
	if err != nil {
		return nil, openError(p.target(), err)
	}
	ignoreRequests(reqs)
	return ch, nil
}

// open opens a channel of chanType to host:port on the current
// connection, and returns it with that connection.
func (c *Client) open(ctx context.Context, chanType, host string, port uint16, origin net.Addr) (ssh.Channel, *link, error) {
	conn, err := c.current(ctx)
	if err != nil {
		return nil, nil, err
	}
	p := newChannelOpen(host, port, origin)
	type result struct {
		ch  ssh.Channel
		err error
	}
	res := make(chan result, 1)
	go func() {
		ch, err := conn.openChannel(chanType, p, ssh.Marshal(p))
		res <- result{ch, err}
	}()
	select {
	case r := <-res:
		if r.err != nil {
			return nil, nil, r.err
		}
		return r.ch, conn, nil
	case <-ctx.Done():
		go func() {
			if r := <-res; r.ch != nil {
				r.ch.Close()
			}
		}()
		return nil, nil, fmt.Errorf("tunnel: open %s: %w", p.target(), ctx.Err())
	}
}

// DialContext opens a stream to addr (host:port, the host resolved by the
// server) through the tunnel, waiting for a reconnect if need be. network
// must be "tcp" (or "tcp4"/"tcp6"). It is what -D hands to the SOCKS server.
func (c *Client) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, fmt.Errorf("tunnel: network %q: only tcp is carried over direct-tcpip", network)
	}
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("tunnel: dial %q: %w", addr, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("tunnel: dial %q: bad port", addr)
	}
	ch, _, err := c.open(ctx, chanDirectTCPIP, host, uint16(port), nil)
	if err != nil {
		return nil, err
	}
	return &chanConn{Channel: ch, raddr: addrString{addr}, laddr: addrString{c.cfg.Addr}}, nil
}

// maintain watches the connection and reconnects when it drops.
func (c *Client) maintain(conn *link) {
	for {
		kctx, kcancel := context.WithCancel(c.ctx)
		go keepalive(kctx, conn, c.cfg.KeepaliveInterval, c.cfg.KeepaliveCountMax, c.log)
		err := conn.Wait()
		conn.cancel()
		kcancel()
		c.setConn(nil)
		if c.ctx.Err() != nil {
			return
		}
		c.log.Warn("connection lost; reconnecting", "err", err)
		delay := c.cfg.BackoffMin
		for attempt := 1; ; attempt++ {
			select {
			case <-c.ctx.Done():
				return
			case <-time.After(jitter(delay)):
			}
			conn, err = c.connect(c.ctx)
			if err == nil {
				break
			}
			var fatal *FatalError
			if errors.As(err, &fatal) {
				c.log.Error("giving up", "err", err)
				c.stop(err)
				c.cancel()
				c.closeListeners()
				return
			}
			delay = min(2*delay, c.cfg.BackoffMax)
			c.log.Warn("reconnect failed", "attempt", attempt, "err", err, "next", delay)
		}
		c.setConn(conn)
		c.log.Info("reconnected")
	}
}

// jitter spreads d by ±20% so many clients do not reconnect in step.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}
