package tunnel

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pinhole-dev/pinhole/internal/ssh"

	"github.com/pinhole-dev/pinhole/internal/auth"
	"github.com/pinhole-dev/pinhole/internal/observe"
	"github.com/pinhole-dev/pinhole/internal/socks"
	"github.com/pinhole-dev/pinhole/internal/spec"
)

// ClientConfig configures a Client. Fields left zero take their defaults.
type ClientConfig struct {
	// Addr is the server's host:port as SSH names it: the name its host
	// key is checked under (HostKeyCallback, known_hosts) and the one
	// logs and errors show. It is also where Dial connects unless Target
	// says otherwise.
	Addr string
	// Target is what Dial is asked to connect to, when that is not Addr:
	// a URL such as wss://host/ssh for a transport.Dialer, or the real
	// host:port behind an alias. "" means Addr.
	Target string
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

	// Local, Remote and Dynamic are the -L, -R and -D forwards Dial sets up,
	// as Client.Forward would one by one. More can be added, and any
	// removed, while the client runs.
	Local, Remote, Dynamic []spec.Forward

	// ProxyCredentials, if set, are what clients of a -D proxy must give
	// (SOCKS5 username/password, HTTP Basic). nil asks for none.
	ProxyCredentials socks.Credentials
	// AllowOpenProxy lets a -D proxy listen on a non-loopback address
	// without ProxyCredentials. Without it such a forward is refused: it
	// would let anyone who reaches this machine connect from the server.
	AllowOpenProxy bool

	// KeepaliveInterval is how often the server is asked whether it is
	// alive (ssh's ServerAliveInterval). 0 means DefaultKeepaliveInterval;
	// negative: never.
	KeepaliveInterval time.Duration
	// KeepaliveCountMax unanswered keepalives drop the connection, which
	// is then reconnected. 0 means DefaultKeepaliveCountMax.
	KeepaliveCountMax int
	// ConnectTimeout bounds one TCP connect plus SSH handshake. 0 means 15 s.
	ConnectTimeout time.Duration
	// BackoffMin and BackoffMax bound the wait between reconnect attempts,
	// and between the attempts at a remote forward the server refuses,
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
	// sshd) a warning instead of an error when Dial meets it: the /udp
	// forwards are closed, with ErrNoUDP as their Err, and the rest go on.
	// Otherwise Dial fails with ErrNoUDP.
	UDPOptional bool

	// TunnelOptions are option words for the server's side of this
	// client's remote forwards (auth=USER:PASS, allow=CIDR,...,
	// host-header=HOST, proxy-protocol=v1|v2; docs/names.md), sent
	// before the forwards at each connect. "" sends none. A server that
	// is not pinhole takes none: then Dial fails.
	TunnelOptions string

	// Dial opens the TCP connection to the server. nil means net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Listen opens -L and -D listeners. nil means net.Listen, with TCP
	// keepalive at the system's timing on accepted connections.
	Listen func(network, addr string) (net.Listener, error)
	// Cores, if set, is told how many SSH connections the client holds
	// (cores.go). nil leaves GOMAXPROCS alone.
	Cores *CoreBudget

	// Name names the tunnel in its Snapshot and events (pinhole up's
	// [tunnel.NAME]). "" means Addr.
	Name string
	// Events, if set, receives the client's refusals (observe.Ring),
	// and may be shared by many clients. nil: the client keeps a Ring of
	// its own.
	Events *observe.Ring

	// Logger gets one line per state change. nil discards.
	Logger *slog.Logger
}

// State is where a Client or a Forwarding is in its life.
//
// A Client's states, and what moves it from one to the next (setState is
// the only place that changes it):
//
//	                 connected                 connection lost
//	Dial ─► connecting ────────► up ◄──────────────────► reconnecting
//	            │                 │        reconnected        │
//	            │                 │ Shutdown                  │
//	            │                 ▼                           │
//	            │             draining ─streams done, or ctx─┐│
//	            │                                            ▼▼
//	            └── Dial fails, Close, fatal error ────────► closed
//
// (Close, and a fatal error on reconnecting, lead from every state to
// closed; a connection that completes after Close is closed at once.)
//
// A Forwarding follows its client: it is up while the client is (a
// remote forward only once the server listens for it, connecting until
// then), connecting or reconnecting while the client is, draining while
// it or its client drains, and closed once it or its client is.
type State uint8

const (
	StateConnecting State = iota
	StateUp
	StateReconnecting
	StateDraining
	StateClosed
)

func (s State) String() string {
	switch s {
	case StateConnecting:
		return "connecting"
	case StateUp:
		return "up"
	case StateReconnecting:
		return "reconnecting"
	case StateDraining:
		return "draining"
	case StateClosed:
		return "closed"
	}
	return fmt.Sprintf("State(%d)", uint8(s))
}

// Client is a tunnel that stays up: it reconnects with backoff when the
// connection drops and restores every remote forward; local listeners stay
// bound throughout. Forwards are handles (Forward) that can be added and
// closed while it runs. Create one with Dial.
type Client struct {
	cfg    ClientConfig
	sshCfg *ssh.ClientConfig
	log    *slog.Logger
	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	meter  meter          // streams opened by DialContext and DialUDP
	ev     events         // reconnects, keepalives, UDP (counters.go)
	udp    atomic.Bool    // the server last connected to speaks pinhole's UDP extension
	wg     sync.WaitGroup // the supervisor and every goroutine of DialContext's streams
	banner authBanners    // what the server said while refusing our keys (authmsg.go)

	mu       sync.Mutex
	state    State
	link     *link         // the connection; set in up and, while it lasts, draining
	up       chan struct{} // closed when the client leaves connecting or reconnecting
	forwards []*Forwarding // in the order added, until closed by their owner
	retired  Stats         // of forwards closed and removed
	err      error         // why the client closed
	lastErr  error         // why it last lost or could not make its connection
	since    time.Time     // when it entered state
	done     chan struct{} // closed in closed
}

// Dial sets up every forward of cfg, connects to the server, asks for the
// remote forwards and returns a Client that keeps them working until
// Close; ctx bounds only this first connect. It fails at once, without
// retrying, when a local port cannot be bound, the server cannot be
// reached, the host key is wrong or authentication fails. A remote forward
// the server refuses is logged and retried, and the others go on.
func Dial(ctx context.Context, cfg ClientConfig) (*Client, error) {
	c, err := newClient(cfg)
	if err != nil {
		return nil, err
	}
	// Local ports first, so that a taken one fails before connecting.
	for _, f := range slices.Concat(cfg.Local, cfg.Dynamic) {
		if _, err := c.Forward(ctx, f); err != nil {
			c.Close()
			return nil, err
		}
	}
	l, err := c.connect(ctx)
	if err == nil && !l.caps.udp && !cfg.UDPOptional && c.hasUDP() {
		l.Close()
		err = &FatalError{Err: fmt.Errorf("%w (%s says it is %q): /udp forwards need pinhole server at the far end; drop them or run pinhole server there", ErrNoUDP, cfg.Addr, l.ServerVersion())}
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	if !c.connected(l) {
		return nil, net.ErrClosed
	}
	c.log.Info("connected", "user", cfg.User)
	for _, f := range cfg.Remote {
		_, err := c.Forward(ctx, f)
		switch {
		case errors.Is(err, ErrNoUDP):
			c.skip(f, err)
		case err != nil:
			c.Close()
			return nil, err
		}
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.supervise(l)
	}()
	return c, nil
}

func newClient(cfg ClientConfig) (*Client, error) {
	if cfg.HostKeyCallback == nil {
		return nil, errors.New("tunnel: ClientConfig.HostKeyCallback is nil; use an auth.KnownHosts callback")
	}
	if cfg.KeepaliveInterval == 0 {
		cfg.KeepaliveInterval = DefaultKeepaliveInterval
	}
	if cfg.KeepaliveCountMax <= 0 {
		cfg.KeepaliveCountMax = DefaultKeepaliveCountMax
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
	for _, set := range []struct {
		kind spec.Kind
		fs   []spec.Forward
	}{{spec.Local, cfg.Local}, {spec.Remote, cfg.Remote}, {spec.Dynamic, cfg.Dynamic}} {
		for _, f := range set.fs {
			if f.Kind != set.kind {
				return nil, fmt.Errorf("tunnel: %s %s is not a %s forward", f.Kind, f, set.kind)
			}
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
		log:   tunnelLogger(log, cfg),
		up:    make(chan struct{}),
		done:  make(chan struct{}),
		since: time.Now(),
	}
	if c.cfg.Events == nil {
		c.cfg.Events = new(observe.Ring)
	}
	if c.cfg.Name == "" {
		c.cfg.Name = cfg.Addr
	}
	c.sshCfg.BannerCallback = c.banner.record
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c, nil
}

func (c *Client) hasUDP() bool {
	for _, f := range slices.Concat(c.cfg.Local, c.cfg.Remote) {
		if f.Proto == spec.UDP {
			return true
		}
	}
	return false
}

// State is where the client is in its life (the diagram on State).
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// setState moves the client to st; c.mu is held. It is the only place the
// state changes, and it refuses what the diagram on State has no arrow
// for, reporting false. l is the new connection when st is up, else nil.
//   - up: l becomes the connection and those waiting for one go on.
//   - reconnecting: the connection is gone; waiters wait again.
//   - draining: nothing waits for a connection any more.
//   - closed: the client's context ends, and with it the connection,
//     every stream and the supervisor; Done is closed. A closed client
//     stays closed: a connection that completes afterwards is closed by
//     its caller.
func (c *Client) setState(st State, l *link) bool {
	from := c.state
	switch {
	case from == StateClosed, from == st:
		return false
	case from == StateDraining && st != StateClosed:
		return false
	case st == StateUp && from != StateConnecting && from != StateReconnecting:
		return false
	case st == StateReconnecting && from != StateUp:
		return false
	}
	c.state = st
	c.since = time.Now()
	wasWaiting := from == StateConnecting || from == StateReconnecting
	switch st {
	case StateUp:
		c.link = l
	case StateReconnecting:
		c.link = nil
		c.up = make(chan struct{})
	case StateClosed:
		c.cancel()
		if c.link != nil {
			c.link.Close()
		}
		close(c.done)
	}
	if wasWaiting && st != StateReconnecting {
		close(c.up)
	}
	return true
}

// connected makes l the client's connection, restores the remote forwards
// on it, and reports true; a client closed in the meantime closes l and
// reports false.
func (c *Client) connected(l *link) bool {
	c.mu.Lock()
	if !c.setState(StateUp, l) {
		c.mu.Unlock()
		l.Close()
		return false
	}
	fs := slices.Clone(c.forwards)
	c.mu.Unlock()
	c.udp.Store(l.caps.udp)
	// The answers are awaited for as long as a connect may take: keepalives
	// watch the connection only once this returns. One that comes later is
	// still used.
	ctx, cancel := context.WithTimeout(l.ctx, c.cfg.ConnectTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, f := range fs {
		switch {
		case f.spec.Proto == spec.UDP && !l.caps.udp:
			c.log.Warn("forward closed: the server does not speak pinhole's UDP extension", "forward", f.flag())
			f.close(fmt.Errorf("%w (%s is not pinhole server)", ErrNoUDP, c.cfg.Addr))
		case f.spec.Kind == spec.Remote:
			wg.Go(func() { f.request(ctx, l) })
		}
	}
	wg.Wait()
	return true
}

// skip lists f as a forward the client could not start, closed, with err.
func (c *Client) skip(f spec.Forward, err error) {
	c.log.Warn("forward skipped", "forward", f.Kind.String()+" "+f.String(), "err", err)
	fw := &Forwarding{c: c, spec: f, closed: true, err: err, since: time.Now()}
	fw.label = fw.flag()
	fw.ctx, fw.cancel = context.WithCancel(c.ctx)
	fw.cancel()
	c.mu.Lock()
	c.forwards = append(c.forwards, fw)
	c.mu.Unlock()
}

// current returns the live connection, waiting for a reconnect while ctx
// allows.
func (c *Client) current(ctx context.Context) (*link, error) {
	for {
		c.mu.Lock()
		l, up, st := c.link, c.up, c.state
		c.mu.Unlock()
		switch {
		case l != nil && st != StateDraining:
			return l, nil
		case st == StateDraining || st == StateClosed:
			return nil, net.ErrClosed
		}
		select {
		case <-up:
		case <-ctx.Done():
			return nil, fmt.Errorf("tunnel: not connected to %s: %w", c.cfg.Addr, ctx.Err())
		}
	}
}

// currentUntil is current with a deadline; it makes a context only when
// there is no connection to return at once.
func (c *Client) currentUntil(ctx context.Context, deadline time.Time) (*link, error) {
	c.mu.Lock()
	l, st := c.link, c.state
	c.mu.Unlock()
	if l != nil && st == StateUp {
		return l, nil
	}
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	return c.current(ctx)
}

// UDP reports whether the server last connected to speaks pinhole's UDP
// extension, so /udp forwards and SOCKS5 UDP ASSOCIATE work.
func (c *Client) UDP() bool { return c.udp.Load() }

// Forwardings are the client's forwards in the order they were added,
// without those closed by Forwarding.Close (a forward the client had to
// close, such as a /udp one on a server without UDP, stays, closed, with
// its Err).
func (c *Client) Forwardings() []*Forwarding {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.forwards)
}

// Stats are the figures of every forward the client has had, and of the
// streams of DialContext and DialUDP.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	s := c.retired.Add(c.meter.stats())
	fs := slices.Clone(c.forwards)
	c.mu.Unlock()
	for _, f := range fs {
		s = s.Add(f.Stats())
	}
	return s
}

// LocalAddrs are the addresses the -L forwards listen on, in the order
// added: a *net.TCPAddr or, for /udp, a *net.UDPAddr; nil for one closed.
func (c *Client) LocalAddrs() []net.Addr {
	var out []net.Addr
	for _, f := range c.Forwardings() {
		if f.spec.Kind == spec.Local {
			out = append(out, f.netAddr())
		}
	}
	return out
}

// RemoteAddrs are where the server listens for each -R forward, in the
// order added: host:port with the port the server chose for port 0; "" for
// a forward the server refused or while disconnected.
func (c *Client) RemoteAddrs() []string {
	var out []string
	for _, f := range c.Forwardings() {
		if f.spec.Kind == spec.Remote {
			out = append(out, f.remoteAddr())
		}
	}
	return out
}

// Close stops reconnecting, closes every forward, the connection and every
// stream, and waits for them. It is idempotent, and returns within a
// moment in every state.
func (c *Client) Close() error {
	c.mu.Lock()
	c.setState(StateClosed, nil)
	fs := slices.Clone(c.forwards)
	c.mu.Unlock()
	for _, f := range fs {
		f.close(nil)
	}
	c.wg.Wait()
	return nil
}

// Shutdown stops the client gracefully, as http.Server.Shutdown does: every
// forward stops taking new connections (local listeners close, the server
// is told to stop listening for the remote ones), open TCP streams go on
// until they end or ctx ends, and then everything is closed as Close
// does. It returns ctx's error if streams were still open then.
func (c *Client) Shutdown(ctx context.Context) error {
	c.mu.Lock()
	c.setState(StateDraining, nil)
	fs := slices.Clone(c.forwards)
	c.mu.Unlock()
	for _, f := range fs {
		f.stopAccepting()
	}
	err := drain(ctx, func() int64 {
		n := c.meter.streams.Load()
		for _, f := range fs {
			n += f.meter.streams.Load()
		}
		return n
	})
	c.Close()
	return err
}

// Wait blocks until the client stops and returns why: nil after Close or
// Shutdown, or the fatal error (a host key mismatch or refused
// authentication on reconnect) that ended it.
func (c *Client) Wait() error {
	<-c.done
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Done is closed when the client has stopped.
func (c *Client) Done() <-chan struct{} { return c.done }

// fail closes the client for a reason retrying cannot fix.
func (c *Client) fail(err error) {
	c.log.Error("giving up", "err", err)
	c.mu.Lock()
	if c.state != StateClosed {
		c.err = err
	}
	c.mu.Unlock()
	go c.Close() // Close waits for the supervisor, which calls fail
}

// supervise watches the connection and reconnects when it drops, until
// the client closes.
func (c *Client) supervise(l *link) {
	for {
		kctx, kcancel := context.WithCancel(l.ctx)
		timeouts := c.ev.keepalive.timeouts.Load()
		go keepalive(kctx, l, c.cfg.KeepaliveInterval, c.cfg.KeepaliveCountMax, l.activity, c.log, &c.ev.keepalive)
		err := l.Wait()
		l.cancel()
		kcancel()
		c.mu.Lock()
		lost := c.setState(StateReconnecting, nil)
		if lost && err != nil {
			c.lastErr = err
		}
		c.mu.Unlock()
		if !lost {
			return // closed, or draining: nothing to reconnect for
		}
		cause := c.ev.lost(timeouts, err)
		c.log.Warn("connection lost; reconnecting", "reason", cause, "err", err)
		if l = c.reconnect(); l == nil {
			return
		}
		c.log.Info("reconnected")
	}
}

// reconnect connects again with backoff until it succeeds, the client
// closes, or a fatal error closes it; nil for the last two.
func (c *Client) reconnect() *link {
	delay := c.cfg.BackoffMin
	for attempt := 1; ; attempt++ {
		t := time.NewTimer(jitter(delay))
		select {
		case <-c.ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		l, err := c.connect(c.ctx)
		if err == nil {
			if !c.connected(l) {
				return nil
			}
			return l
		}
		var fatal *FatalError
		if errors.As(err, &fatal) {
			c.fail(err)
			return nil
		}
		delay = min(2*delay, c.cfg.BackoffMax)
		c.ev.reconnectsFailed.Add(1)
		c.mu.Lock()
		c.lastErr = err
		c.mu.Unlock()
		c.log.Warn("reconnect failed", "attempt", attempt, "err", err, "next", delay)
	}
}

// link is one SSH connection to the server. Its ctx ends when the
// connection does, and with it every stream it carried.
type link struct {
	*ssh.Client
	ctx      context.Context
	cancel   context.CancelFunc
	caps     peerCaps
	early    atomic.Bool   // the server takes direct-tcpip-early@pinhole (early.go)
	activity func() uint64 // reads from the server so far, for keepalive

	mu      sync.Mutex
	remotes map[remoteKey][]*Forwarding // the -R forwards the server listens for on this connection
}

// connect dials the server, runs the handshake and starts serving the
// channels the server opens back; ctx and the client's own bound it.
func (c *Client) connect(ctx context.Context) (_ *link, err error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ConnectTimeout)
	defer cancel()
	stopOnClose := context.AfterFunc(c.ctx, cancel)
	defer stopOnClose()
	release := c.cfg.Cores.Hold() // until the link ends
	defer func() {
		if err != nil {
			release()
		}
	}()
	target := cmp.Or(c.cfg.Target, c.cfg.Addr)
	nc, err := c.cfg.Dial(ctx, "tcp", target)
	if err != nil {
		return nil, fmt.Errorf("tunnel: cannot reach %s: %w", target, err)
	}
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	c.banner.take() // a new login: forget the last one's banners
	bc := newBufferedConn(nc)
	sc, chans, reqs, err := ssh.NewClientConn(bc, c.cfg.Addr, c.sshCfg)
	if !stop() || err != nil {
		nc.Close()
		if err == nil {
			err = ctx.Err()
		}
		return nil, c.explain(err)
	}
	nc.SetDeadline(time.Time{})
	conn := ssh.NewClient(sc, chans, reqs)
	caps := capsOf(conn.ServerVersion())
	// Handlers first, so no forwarded channel can come before them.
	forwarded := conn.HandleChannelOpen(chanForwardedTCPIP)
	var forwardedUDP, forwardedEarly <-chan ssh.NewChannel
	if caps.udp {
		forwardedUDP = conn.HandleChannelOpen(chanForwardedUDP)
	}
	if caps.early {
		forwardedEarly = conn.HandleChannelOpen(chanForwardedTCPIPEarly)
	}
	l := &link{Client: conn, caps: caps, activity: bc.activity, remotes: make(map[remoteKey][]*Forwarding)}
	l.early.Store(caps.early)
	l.ctx, l.cancel = context.WithCancel(c.ctx)
	context.AfterFunc(l.ctx, func() {
		l.Close()
		release()
	})
	for _, in := range []struct {
		ch  <-chan ssh.NewChannel
		udp bool
	}{{forwarded, false}, {forwardedUDP, true}, {forwardedEarly, false}} {
		if in.ch != nil {
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				l.serveForwarded(in.ch, in.udp)
			}()
		}
	}
	if err := c.sendOptions(ctx, l); err != nil {
		l.cancel()
		return nil, err
	}
	return l, nil
}

// ErrNoUDP means the server is not pinhole and so cannot carry UDP.
var ErrNoUDP = errors.New("tunnel: the server does not speak pinhole's UDP extension")

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

// jitter spreads d by ±20% so many clients do not reconnect in step.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}
