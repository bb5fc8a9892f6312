package tunnel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pinhole-dev/pinhole/internal/ssh"

	"github.com/pinhole-dev/pinhole/internal/accept"
	"github.com/pinhole-dev/pinhole/internal/auth"
	"github.com/pinhole-dev/pinhole/internal/observe"
)

// GatewayPorts says which address a remote forward listens on, with sshd's
// meaning of the GatewayPorts option.
type GatewayPorts int

const (
	// GatewayNo binds every remote forward to loopback (127.0.0.1).
	GatewayNo GatewayPorts = iota
	// GatewayYes binds every remote forward to all addresses.
	GatewayYes
	// GatewayClientSpecified binds where the client asks: "" or "*" for all
	// addresses, "localhost" for loopback, else that address.
	GatewayClientSpecified
)

// ParseGatewayPorts reads "no", "yes" or "clientspecified".
func ParseGatewayPorts(s string) (GatewayPorts, error) {
	switch strings.ToLower(s) {
	case "no":
		return GatewayNo, nil
	case "yes":
		return GatewayYes, nil
	case "clientspecified":
		return GatewayClientSpecified, nil
	}
	return 0, fmt.Errorf("tunnel: gateway ports %q: want no, yes or clientspecified", s)
}

func (g GatewayPorts) String() string {
	switch g {
	case GatewayYes:
		return "yes"
	case GatewayClientSpecified:
		return "clientspecified"
	}
	return "no"
}

// ServerConfig configures a Server. The zero value of every field but
// HostKeys and Authorize means its default.
type ServerConfig struct {
	// HostKeys identify the server. At least one is required.
	HostKeys []ssh.Signer

	// Authorize decides whether key may log in as user from conn's remote
	// address, and returns the options (permitopen, permitlisten, ...) that
	// govern what the connection may forward. A nil Options with a nil
	// error refuses the key. nil Authorize refuses every key.
	Authorize func(conn ssh.ConnMetadata, key ssh.PublicKey) (*auth.Options, error)

	// GatewayPorts is where remote forwards listen; default GatewayNo.
	GatewayPorts GatewayPorts

	// Dial connects direct-tcpip channels to their targets. nil means a
	// net.Dialer with a 10 s timeout and TCP keepalive at the system's
	// timing.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	// Listen opens remote-forward listeners. nil means net.Listen, with TCP
	// keepalive at the system's timing on accepted connections.
	Listen func(network, addr string) (net.Listener, error)

	// KeepaliveInterval is how often an idle client is asked whether it is
	// alive (sshd's ClientAliveInterval). 0 means DefaultKeepaliveInterval;
	// negative turns keepalives off.
	KeepaliveInterval time.Duration
	// KeepaliveCountMax is how many unanswered keepalives close the
	// connection (sshd's ClientAliveCountMax). 0 means
	// DefaultKeepaliveCountMax.
	KeepaliveCountMax int

	// TakeoverProbe is how long a connection that holds a remote-forward
	// port has to answer a keepalive when another connection logged in
	// with the same key asks for that port: one that does not answer in
	// time is taken for dead and closed, and the port goes to the new
	// connection in the same request. 0 means 3 s; negative never takes
	// a port over.
	TakeoverProbe time.Duration

	// OptionsWait bounds how long a connection's forwards wait for its
	// tunnel options (topts.go): after it, a connection that sent no
	// session command (ssh -N) has those of authorized_keys. 0 means 2 s.
	OptionsWait time.Duration

	// UDPIdleTimeout ends a remote UDP forward's flow after this long
	// without a datagram. 0 means 60 s.
	UDPIdleTimeout time.Duration
	// UDPMaxFlows caps the flows of one remote UDP forward. 0 means 1024.
	UDPMaxFlows int

	// Ciphers are the ciphers offered, as sshd's Ciphers (names from
	// ParseCiphers). nil means DefaultServerCiphers.
	Ciphers []string

	// HandshakeTimeout bounds the SSH handshake and authentication, as
	// sshd's LoginGraceTime: a connection that has not authenticated by
	// then is closed. 0 means 30 s; negative means no limit.
	HandshakeTimeout time.Duration

	// MaxStartups limits the connections that have not authenticated
	// yet, as sshd's MaxStartups (Startups says how). The zero value
	// means DefaultMaxStartups, 10:30:100.
	MaxStartups Startups
	// PerSourceMaxStartups caps the unauthenticated connections of one
	// source address (IPv6: one /64), as sshd's PerSourceMaxStartups:
	// more from it are dropped. 0 means DefaultPerSourceMaxStartups (5);
	// negative means no cap.
	PerSourceMaxStartups int
	// MaxAuthTries closes a connection once it has failed this many
	// authentication attempts (each refused key counts, as in sshd's
	// MaxAuthTries). 0 means 6; negative means no limit.
	MaxAuthTries int

	// Unwrap, if set, is given each connection Serve accepts, before the
	// SSH handshake: while it counts toward MaxStartups, with the
	// deadline of HandshakeTimeout set on it. It returns the conn the SSH
	// stream travels on (c itself for raw SSH, a TLS conn around c), or
	// nil and no error when it has taken c for something else (HTTP),
	// which from then on no longer counts. On an error c is closed.
	// transport.Dispatcher's Unwrap serves SSH, TLS, WebSocket and HTTP
	// on one port. nil means every connection is raw SSH.
	Unwrap func(c net.Conn) (net.Conn, error)
	// Sort, if set, is given each connection Serve accepts before it
	// counts toward MaxStartups, with no deadline set: it returns nil and
	// no error when it has taken c for something else (HTTP, which has
	// limits of its own), or the conn that then counts toward
	// MaxStartups and goes to Unwrap. On an error c is closed. Sort
	// bounds its own time and the connections it holds at once;
	// transport.Dispatcher's Sort does. nil: every connection counts from
	// its accept.
	Sort func(c net.Conn) (net.Conn, error)

	// KeyLimits cap what one key holds across all its connections:
	// remote-forward ports, streams open, new streams a second
	// (keylimits.go). A key's pinhole-limits in authorized_keys replaces
	// them for that key. The zero value of each means DefaultKeyLimits'.
	KeyLimits KeyLimits

	// Names, if set, serves the remote forwards that ask for a public
	// name rather than an address (vhost.Router: -R myapp:80:... becomes
	// https://myapp.DOMAIN). nil: every remote forward listens on an
	// address.
	Names NameListener

	// Cores, if set, is told how many SSH connections the server holds,
	// to size GOMAXPROCS by (cores.go). nil leaves GOMAXPROCS alone.
	Cores *CoreBudget

	// Events, if set, receives the server's refusals and authentication
	// failures (observe.Ring; Snapshot shows them). nil: the server keeps
	// a Ring of its own.
	Events *observe.Ring

	// Logger receives one line per connection, forward and refusal. nil
	// discards.
	Logger *slog.Logger
}

// NameListener gives remote forwards public names instead of ports.
type NameListener interface {
	// Name is the name a remote forward of the key with SHA256
	// fingerprint key gets when it asks for bindHost:port, or "" when it
	// asks for an address, and listens as without a NameListener.
	Name(bindHost string, port uint32, key string) string
	// ListenName returns the listener of name's forward. It fails with an
	// error wrapping syscall.EADDRINUSE when a live connection holds the
	// name (which the server then takes over from a dead connection of
	// the same key, as a port), and with another error, whose text the
	// client sees, when the name is refused.
	//
	// options waits until the connection's tunnel options (docs/names.md,
	// "Per-tunnel options") are settled, for as long as its ctx allows,
	// and returns them; an error means the forward is not to be served
	// now. Every request through the listener is to be served as they
	// say.
	ListenName(name string, port uint32, key string, options func(context.Context) (auth.TunnelOptions, error)) (net.Listener, error)
}

// DefaultKeepaliveInterval and DefaultKeepaliveCountMax notice a peer that
// stopped answering within about 15 s, on both ends. An idle tunnel pays
// for it with one keepalive request and its reply every 5 s each way,
// about 100 bytes on the wire each (README, "Reliability").
const (
	DefaultKeepaliveInterval = 5 * time.Second
	DefaultKeepaliveCountMax = 3
)

// Server is an SSH-protocol server that only forwards ports: direct-tcpip
// (ssh -L and -D), tcpip-forward with forwarded-tcpip (ssh -R) and
// keepalives. It runs no shell and no commands. Create one with NewServer.
//
// A Server runs until Close, or Shutdown, which lets the streams it carries
// finish first:
//
//	serving ──Shutdown──► draining ──streams done, or ctx ends──► closed
//	   │                                                            ▲
//	   └──────────────────────────Close─────────────────────────────┘
type Server struct {
	cfg     ServerConfig
	sshCfg  *ssh.ServerConfig
	log     *slog.Logger
	ctx     context.Context // canceled by Close
	cancel  context.CancelFunc
	ev      events        // keepalives, UDP (counters.go)
	gate    *startupGate  // MaxStartups, PerSourceMaxStartups
	events  *observe.Ring // refusals and authentication failures
	started time.Time

	mu        sync.Mutex
	state     serverState
	listeners map[net.Listener]struct{}
	conns     map[*serverConn]struct{}
	retired   Stats                    // of the connections that ended; each live one counts its own
	bound     map[boundKey]*serverConn // remote-forward listen address → owner
	wg        sync.WaitGroup

	keysMu sync.Mutex           // taken as a connection starts and ends, never per stream
	keys   map[string]*keyState // by SHA256 fingerprint: what each key holds
}

// serverState is where a Server is in its life (the diagram on Server);
// setState is the only place that changes it.
type serverState uint8

const (
	serverServing serverState = iota
	serverDraining
	serverClosed
)

// NewServer checks cfg and returns a Server ready to Serve. It does not
// modify cfg.
func NewServer(cfg ServerConfig) (*Server, error) {
	if len(cfg.HostKeys) == 0 {
		return nil, errors.New("tunnel: server needs at least one host key")
	}
	if cfg.Dial == nil {
		d := &net.Dialer{Timeout: 10 * time.Second, KeepAliveConfig: streamKeepAlive}
		cfg.Dial = d.DialContext
	}
	if cfg.Listen == nil {
		cfg.Listen = listenStreams
	}
	if cfg.KeepaliveInterval == 0 {
		cfg.KeepaliveInterval = DefaultKeepaliveInterval
	}
	if cfg.KeepaliveCountMax <= 0 {
		cfg.KeepaliveCountMax = DefaultKeepaliveCountMax
	}
	if cfg.OptionsWait <= 0 {
		cfg.OptionsWait = 2 * time.Second
	}
	if cfg.TakeoverProbe == 0 {
		cfg.TakeoverProbe = 3 * time.Second
	}
	if cfg.HandshakeTimeout == 0 {
		cfg.HandshakeTimeout = 30 * time.Second
	}
	if cfg.MaxStartups == (Startups{}) {
		cfg.MaxStartups = DefaultMaxStartups
	}
	if m := cfg.MaxStartups; m.Full <= 0 || m.Start > m.Full || m.Start < 0 || m.Rate < 0 || m.Rate > 100 {
		return nil, fmt.Errorf("tunnel: max startups %s: want 0 <= start <= full, full >= 1, rate 0-100", m)
	}
	if cfg.PerSourceMaxStartups == 0 {
		cfg.PerSourceMaxStartups = DefaultPerSourceMaxStartups
	}
	if cfg.MaxAuthTries == 0 {
		cfg.MaxAuthTries = 6
	}
	cfg.KeyLimits = resolveKeyLimits(cfg.KeyLimits)
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:       cfg,
		log:       log,
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*serverConn]struct{}),
		bound:     make(map[boundKey]*serverConn),
		keys:      make(map[string]*keyState),
		gate:      newStartupGate(cfg.MaxStartups, cfg.PerSourceMaxStartups, log),
		events:    cfg.Events,
		started:   time.Now(),
	}
	if s.events == nil {
		s.events = new(observe.Ring)
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	offer := DefaultServerCiphers()
	if len(cfg.Ciphers) > 0 {
		offer = slices.Clone(cfg.Ciphers)
	}
	s.sshCfg = &ssh.ServerConfig{
		Config:                    ssh.Config{Ciphers: offer},
		PublicKeyCallback:         s.publicKey,
		VerifiedPublicKeyCallback: s.verifiedKey,
		MaxAuthTries:              cfg.MaxAuthTries,
		ServerVersion:             versionPrefix + "_" + Version,
	}
	for _, k := range cfg.HostKeys {
		s.sshCfg.AddHostKey(k)
	}
	return s, nil
}

type optionsKey struct{}

// Stats are the figures of every stream the server has carried.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.retired
	for c := range s.conns {
		st = st.Add(c.meter.stats())
	}
	return st
}

// openStreams are the TCP streams open on every connection: what a drain
// waits for.
func (s *Server) openStreams() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int64
	for c := range s.conns {
		n += c.meter.streams.Load()
	}
	return n
}

// Startups are the figures of the pre-authentication limits.
func (s *Server) Startups() StartupStats { return s.gate.stats() }

// Serve accepts SSH connections on l until l fails or the server is closed
// or shut down, when it returns net.ErrClosed. Serve closes l. Running out
// of file descriptors and the like pauses it (internal/accept), it does not
// end it.
func (s *Server) Serve(l net.Listener) error {
	if !s.track(l, true) {
		l.Close()
		return net.ErrClosed
	}
	defer s.track(l, false)
	err := accept.Loop(l, s.log, func(c net.Conn) {
		if s.cfg.Sort != nil {
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.sortThenAdmit(c)
			}()
			return
		}
		release, _ := s.gate.admit(c.RemoteAddr())
		if release == nil {
			c.Close() // as sshd drops past MaxStartups: no word
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handshake(c, release, s.cfg.Unwrap)
		}()
	})
	l.Close()
	if s.stopped() {
		return net.ErrClosed
	}
	return fmt.Errorf("tunnel: %w", err)
}

// sortThenAdmit gives c to Sort and, if it may be SSH, to the
// pre-authentication limits and the handshake.
func (s *Server) sortThenAdmit(c net.Conn) {
	peer := c.RemoteAddr().String()
	sc, err := s.cfg.Sort(c)
	if err != nil {
		c.Close()
		s.log.Debug("connection closed before SSH", "peer", peer, "err", err)
		return
	}
	if sc == nil {
		return // HTTP: no longer ours
	}
	release, _ := s.gate.admit(sc.RemoteAddr())
	if release == nil {
		sc.Close()
		return
	}
	s.handshake(sc, release, s.cfg.Unwrap)
}

// ServeConn serves one SSH connection that arrived some other way than
// through Serve's listeners, such as a WebSocket that an HTTP server
// upgraded (transport.Dispatcher's SSH): it counts toward MaxStartups and
// PerSourceMaxStartups by c's RemoteAddr, has HandshakeTimeout to log in,
// and is not given to Unwrap. It returns when the connection ends, at
// once with net.ErrClosed (having closed c) if the server is draining or
// closed, and with ErrTooManyStartups if the limits drop c.
func (s *Server) ServeConn(c net.Conn) error {
	s.mu.Lock()
	if s.state != serverServing {
		s.mu.Unlock()
		c.Close()
		return net.ErrClosed
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	release, _ := s.gate.admit(c.RemoteAddr())
	if release == nil {
		c.Close()
		return ErrTooManyStartups
	}
	s.handshake(c, release, nil)
	return nil
}

// ErrTooManyStartups is ServeConn's error for a connection that
// MaxStartups or PerSourceMaxStartups dropped.
var ErrTooManyStartups = errors.New("tunnel: too many connections have not logged in yet (MaxStartups, PerSourceMaxStartups)")

// track adds l to the listeners Close closes, or takes it away. A Serve
// counts in s.wg while it runs, so that the handshakes it starts are
// added to s.wg before Close can wait for it.
func (s *Server) track(l net.Listener, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.state != serverServing {
			return false
		}
		s.listeners[l] = struct{}{}
		s.wg.Add(1)
	} else {
		delete(s.listeners, l)
		s.wg.Done()
	}
	return true
}

// stopped reports whether the server is draining or closed.
func (s *Server) stopped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state != serverServing
}

// setState moves the server to st and does what entering it takes. It
// takes s.mu, and acts on the connections after letting it go: a
// connection's forwards take s.mu as they close (unregister). It does
// nothing when the server was already there or past it.
//   - draining: every listener closes, and so does every connection's
//     remote-forward listeners: nothing new comes in, what is open goes on.
//   - closed: every connection closes, and with it every stream.
func (s *Server) setState(st serverState) {
	s.mu.Lock()
	if st <= s.state {
		s.mu.Unlock()
		return
	}
	s.state = st
	for l := range s.listeners {
		l.Close()
	}
	conns := make([]*serverConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	if st == serverClosed {
		s.cancel()
	}
	s.mu.Unlock()
	for _, c := range conns {
		if st == serverClosed {
			c.conn.Close()
		} else {
			c.stopListening()
		}
	}
}

// Close stops every listener, disconnects every client (closing their
// remote forwards and streams) and waits for all of it. It is idempotent;
// afterwards Serve returns net.ErrClosed.
func (s *Server) Close() error {
	s.setState(serverClosed)
	s.wg.Wait()
	return nil
}

// Shutdown stops the server gracefully, as http.Server.Shutdown does: it
// stops accepting SSH connections and remote-forwarded connections,
// refuses new streams and forwards on the connections it has, waits until
// every TCP stream has ended or ctx ends, and then closes everything as
// Close does. It returns ctx's error if streams were still open then.
// UDP flows are not waited for: they have no end but their idle timeout.
func (s *Server) Shutdown(ctx context.Context) error {
	s.setState(serverDraining)
	err := drain(ctx, s.openStreams)
	s.Close()
	return err
}

// drain waits until open returns 0 or ctx ends, polling as
// http.Server.Shutdown does, more slowly as time goes on.
func drain(ctx context.Context, open func() int64) error {
	delay := time.Millisecond
	for open() > 0 {
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("tunnel: %d streams still open: %w", open(), ctx.Err())
		case <-t.C:
		}
		delay = min(2*delay, 100*time.Millisecond)
	}
	return nil
}

// handshake runs the SSH handshake on c, after unwrap if that is not
// nil, and then serves the connection. The connection counts toward
// MaxStartups until it has authenticated or failed: then it calls
// release.
func (s *Server) handshake(c net.Conn, release func(), unwrap func(net.Conn) (net.Conn, error)) {
	defer release()
	peer := c.RemoteAddr().String()
	s.loginGrace(c)
	raw := c
	if unwrap != nil {
		inner, err := unwrap(c)
		if err != nil {
			c.Close()
			s.log.Debug("connection closed before SSH", "peer", peer, "err", err)
			return
		}
		if inner == nil {
			return // HTTP: no longer ours
		}
		c = inner
	}
	defer s.cfg.Cores.Hold()()
	var attempts authAttempts
	bc := newBufferedConn(c)
	conn, chans, reqs, err := ssh.NewServerConn(bc, s.authConfig(&attempts))
	if err != nil {
		c.Close()
		s.logHandshakeEnd(peer, &attempts, err)
		return
	}
	release()
	c.SetDeadline(time.Time{})
	if raw != c {
		raw.SetDeadline(time.Time{})
	}
	opts, _ := conn.Permissions.ExtraData[optionsKey{}].(*auth.Options)
	caps := capsOf(conn.ClientVersion())
	sc := &serverConn{
		srv:         s,
		conn:        conn,
		opts:        opts,
		key:         conn.Permissions.Extensions["pubkey-fp"],
		caps:        caps,
		activity:    bc.activity,
		since:       time.Now(),
		log:         s.log.With("peer", peer, "user", conn.User()),
		forwards:    make(map[forwardRequest]*remoteListener),
		udpForwards: make(map[forwardRequest]*udpListener),
	}
	sc.early.Store(caps.early)
	sc.keys = s.attachKey(sc.key, opts)
	defer s.detachKey(sc.keys)
	sc.startOptions()
	s.mu.Lock()
	if s.state != serverServing {
		s.mu.Unlock()
		conn.Close()
		return
	}
	s.conns[sc] = struct{}{}
	s.mu.Unlock()
	sc.log.Info("client connected", "key", sc.key, "version", string(conn.ClientVersion()))
	sc.serve(chans, reqs)
	s.mu.Lock()
	delete(s.conns, sc)
	s.retired = s.retired.Add(sc.meter.stats())
	s.mu.Unlock()
	ms := sc.meter.stats()
	sc.log.Info("client disconnected", "bytes", ms.ToTarget+ms.FromTarget, "streams", ms.StreamsTotal)
}
