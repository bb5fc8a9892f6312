package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pinhole-dev/pinhole/internal/ssh"

	"github.com/pinhole-dev/pinhole/internal/auth"
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
	// alive (sshd's ClientAliveInterval). 0 means 15 s; negative turns
	// keepalives off.
	KeepaliveInterval time.Duration
	// KeepaliveCountMax is how many unanswered keepalives close the
	// connection (sshd's ClientAliveCountMax). 0 means 3.
	KeepaliveCountMax int

	// UDPIdleTimeout ends a remote UDP forward's flow after this long
	// without a datagram. 0 means 60 s.
	UDPIdleTimeout time.Duration
	// UDPMaxFlows caps the flows of one remote UDP forward. 0 means 1024.
	UDPMaxFlows int

	// Ciphers are the ciphers offered, as sshd's Ciphers (names from
	// ParseCiphers). nil means DefaultServerCiphers.
	Ciphers []string

	// HandshakeTimeout bounds the SSH handshake and authentication. 0 means
	// 30 s.
	HandshakeTimeout time.Duration

	// Logger receives one line per connection, forward and refusal. nil
	// discards.
	Logger *slog.Logger
}

// Server is an SSH-protocol server that only forwards ports: direct-tcpip
// (ssh -L and -D), tcpip-forward with forwarded-tcpip (ssh -R) and
// keepalives. It runs no shell and no commands. Create one with NewServer.
type Server struct {
	cfg    ServerConfig
	sshCfg *ssh.ServerConfig
	log    *slog.Logger
	ctx    context.Context // canceled by Close
	cancel context.CancelFunc

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*serverConn]struct{}
	bound     map[string]*serverConn // remote-forward listen address → owner
	closed    bool
	wg        sync.WaitGroup
}

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
		cfg.KeepaliveInterval = 15 * time.Second
	}
	if cfg.KeepaliveCountMax <= 0 {
		cfg.KeepaliveCountMax = 3
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 30 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:       cfg,
		log:       log,
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*serverConn]struct{}),
		bound:     make(map[string]*serverConn),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	offer := DefaultServerCiphers()
	if len(cfg.Ciphers) > 0 {
		offer = slices.Clone(cfg.Ciphers)
	}
	s.sshCfg = &ssh.ServerConfig{
		Config:            ssh.Config{Ciphers: offer},
		PublicKeyCallback: s.publicKey,
		ServerVersion:     versionPrefix + "_" + Version,
	}
	for _, k := range cfg.HostKeys {
		s.sshCfg.AddHostKey(k)
	}
	return s, nil
}

// publicKey is the ssh.ServerConfig callback: the key must be authorized
// and its from= must match; the options ride along in the Permissions.
func (s *Server) publicKey(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	if s.cfg.Authorize == nil {
		return nil, errors.New("tunnel: no authorized keys configured")
	}
	opts, err := s.cfg.Authorize(meta, key)
	if err != nil {
		return nil, err
	}
	if opts == nil {
		return nil, fmt.Errorf("tunnel: key %s is not authorized", ssh.FingerprintSHA256(key))
	}
	return &ssh.Permissions{
		Extensions: map[string]string{"pubkey-fp": ssh.FingerprintSHA256(key)},
		ExtraData:  map[any]any{optionsKey{}: opts},
	}, nil
}

type optionsKey struct{}

// Serve accepts SSH connections on l until l fails or the server is closed,
// when it returns net.ErrClosed. Serve closes l.
func (s *Server) Serve(l net.Listener) error {
	if !s.track(l, true) {
		l.Close()
		return net.ErrClosed
	}
	defer s.track(l, false)
	var delay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if s.isClosed() || errors.Is(err, net.ErrClosed) {
				return net.ErrClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", "err", err, "delay", delay)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("tunnel: accept: %w", err)
		}
		delay = 0
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handshake(c)
		}()
	}
}

func (s *Server) track(l net.Listener, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.closed {
			return false
		}
		s.listeners[l] = struct{}{}
	} else {
		delete(s.listeners, l)
	}
	return true
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Close stops every listener, disconnects every client (closing their
// remote forwards) and waits for all of it. It is idempotent; afterwards
// Serve returns net.ErrClosed.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.wg.Wait()
		return nil
	}
	s.closed = true
	s.cancel()
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.conn.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// handshake runs the SSH handshake on c and then serves the connection.
func (s *Server) handshake(c net.Conn) {
	defer cores.hold()()
	peer := c.RemoteAddr().String()
	c.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	conn, chans, reqs, err := ssh.NewServerConn(newBufferedConn(c), s.sshCfg)
	if err != nil {
		c.Close()
		if !errors.Is(err, io.EOF) {
			s.log.Info("handshake failed", "peer", peer, "err", err)
		}
		return
	}
	c.SetDeadline(time.Time{})
	opts, _ := conn.Permissions.ExtraData[optionsKey{}].(*auth.Options)
	sc := &serverConn{
		srv:         s,
		conn:        conn,
		opts:        opts,
		pinhole:     strings.HasPrefix(string(conn.ClientVersion()), versionPrefix),
		log:         s.log.With("peer", peer, "user", conn.User()),
		forwards:    make(map[forwardRequest]*remoteListener),
		udpForwards: make(map[forwardRequest]*udpListener),
	}
	sc.early.Store(sc.pinhole)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		conn.Close()
		return
	}
	s.conns[sc] = struct{}{}
	s.mu.Unlock()
	sc.log.Info("client connected", "key", conn.Permissions.Extensions["pubkey-fp"], "version", string(conn.ClientVersion()))
	sc.serve(chans, reqs)
	s.mu.Lock()
	delete(s.conns, sc)
	s.mu.Unlock()
	sc.log.Info("client disconnected")
}

// serverConn is one authenticated client connection.
type serverConn struct {
	srv     *Server
	ctx     context.Context // ends with the connection
	conn    *ssh.ServerConn
	opts    *auth.Options
	pinhole bool        // the client is pinhole: refusals may carry a reason
	early   atomic.Bool // the client takes forwarded-tcpip-early@pinhole (early.go)
	log     *slog.Logger

	mu          sync.Mutex
	forwards    map[forwardRequest]*remoteListener // keyed as the client asked, port 0 by the bound port; nil once closing
	udpForwards map[forwardRequest]*udpListener
	wg          sync.WaitGroup
}

func (sc *serverConn) serve(chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request) {
	ctx, cancel := context.WithCancel(sc.srv.ctx)
	sc.ctx = ctx
	sc.wg.Add(2)
	go func() {
		defer sc.wg.Done()
		keepalive(ctx, sc.conn, sc.srv.cfg.KeepaliveInterval, sc.srv.cfg.KeepaliveCountMax, sc.log)
	}()
	go func() {
		defer sc.wg.Done()
		for req := range reqs {
			sc.globalRequest(req)
		}
	}()
	for nc := range chans {
		switch nc.ChannelType() {
		case chanDirectTCPIP, chanDirectTCPIPEarly:
			sc.wg.Add(1)
			go func() {
				defer sc.wg.Done()
				sc.direct(ctx, nc)
			}()
		case chanDirectUDP:
			sc.wg.Add(1)
			go func() {
				defer sc.wg.Done()
				sc.directUDP(ctx, nc)
			}()
		case chanSession:
			sc.wg.Add(1)
			go func() {
				defer sc.wg.Done()
				sc.session(ctx, nc)
			}()
		default:
			nc.Reject(ssh.UnknownChannelType, "pinhole only forwards ports: channel type "+strconv.Quote(nc.ChannelType())+" is not served")
		}
	}
	// The connection is gone: stop its forwards and wait for its streams.
	cancel()
	sc.conn.Close()
	sc.mu.Lock()
	for _, rl := range sc.forwards {
		rl.close()
	}
	for _, ul := range sc.udpForwards {
		ul.close()
	}
	sc.forwards = nil // listen refuses from now on
	sc.mu.Unlock()
	sc.wg.Wait()
}

func (sc *serverConn) globalRequest(req *ssh.Request) {
	switch req.Type {
	case reqTCPIPForward, reqUDPForward:
		listen := sc.listen
		if req.Type == reqUDPForward {
			listen = sc.listenUDP
		}
		port, err := listen(req.Payload)
		if err != nil {
			sc.log.Info("remote forward refused", "err", err)
			var reason []byte
			if sc.pinhole {
				reason = []byte(err.Error())
			}
			req.Reply(false, reason)
			return
		}
		var reply []byte
		if port != 0 {
			reply = ssh.Marshal(forwardReply{Port: port})
		}
		req.Reply(true, reply)
	case reqCancelUDP:
		var fr forwardRequest
		if err := ssh.Unmarshal(req.Payload, &fr); err != nil {
			req.Reply(false, nil)
			return
		}
		sc.mu.Lock()
		ul := sc.udpForwards[fr]
		delete(sc.udpForwards, fr)
		sc.mu.Unlock()
		if ul != nil {
			ul.close()
		}
		req.Reply(ul != nil, nil)
	case reqCancelForward:
		var fr forwardRequest
		if err := ssh.Unmarshal(req.Payload, &fr); err != nil {
			req.Reply(false, nil)
			return
		}
		sc.mu.Lock()
		rl := sc.forwards[fr]
		delete(sc.forwards, fr)
		sc.mu.Unlock()
		if rl == nil {
			req.Reply(false, nil)
			return
		}
		rl.close()
		sc.log.Info("remote forward canceled", "laddr", rl.ln.Addr().String())
		req.Reply(true, nil)
	case reqKeepalive:
		// OpenSSH answers failure to requests it does not serve; any answer
		// tells the client we are alive.
		req.Reply(false, nil)
	default:
		if req.WantReply {
			req.Reply(false, nil)
		}
	}
}

// holder returns the connection whose remote forward listens on port, if any.
func (s *Server) holder(port int) *serverConn {
	if port == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for addr, sc := range s.bound {
		if _, p, err := net.SplitHostPort(addr); err == nil && p == strconv.Itoa(port) {
			return sc
		}
	}
	return nil
}

// bindHost is where a remote forward requested for host listens.
func (s *Server) bindHost(host string) string {
	switch s.cfg.GatewayPorts {
	case GatewayYes:
		return ""
	case GatewayClientSpecified:
		switch host {
		case "", "*", "0.0.0.0", "::":
			return ""
		case "localhost":
			return "127.0.0.1"
		}
		return host
	}
	return "127.0.0.1"
}

// listen serves a tcpip-forward request and returns the port to report
// (non-zero only when the client asked for port 0).
func (sc *serverConn) listen(payload []byte) (uint32, error) {
	var fr forwardRequest
	if err := ssh.Unmarshal(payload, &fr); err != nil {
		return 0, fmt.Errorf("malformed tcpip-forward request: %w", err)
	}
	if fr.BindPort > 65535 {
		return 0, fmt.Errorf("port %d is out of range", fr.BindPort)
	}
	if sc.opts == nil || !sc.opts.AllowListen(fr.BindHost, int(fr.BindPort)) {
		return 0, fmt.Errorf("listening on %s is not allowed for this key (permitlisten or no-port-forwarding in authorized_keys)", net.JoinHostPort(fr.BindHost, strconv.Itoa(int(fr.BindPort))))
	}
	addr := net.JoinHostPort(sc.srv.bindHost(fr.BindHost), strconv.Itoa(int(fr.BindPort)))
	s := sc.srv
	ln, err := s.cfg.Listen("tcp", addr)
	if err != nil {
		if owner := s.holder(int(fr.BindPort)); owner != nil && errors.Is(err, syscall.EADDRINUSE) {
			if owner == sc {
				return 0, fmt.Errorf("%s is already forwarded by this connection", addr)
			}
			return 0, fmt.Errorf("%s is already forwarded by another client (%s); pick another port or stop that client", addr, owner.conn.RemoteAddr())
		}
		return 0, fmt.Errorf("cannot listen on %s: %w", addr, err)
	}
	bound := ln.Addr().String()
	_, boundPort := hostPort(ln.Addr())
	key := fr
	if fr.BindPort == 0 {
		key.BindPort = boundPort
	}
	rl := &remoteListener{sc: sc, ln: ln, req: fr, port: boundPort, key: bound}
	s.mu.Lock()
	sc.mu.Lock()
	if s.closed || sc.forwards == nil {
		sc.mu.Unlock()
		s.mu.Unlock()
		ln.Close()
		return 0, errors.New("server is shutting down")
	}
	s.bound[bound] = sc
	sc.forwards[key] = rl
	sc.mu.Unlock()
	s.mu.Unlock()
	sc.log.Info("remote forward listening", "laddr", bound, "requested", net.JoinHostPort(fr.BindHost, strconv.Itoa(int(fr.BindPort))))
	sc.wg.Add(1)
	go func() {
		defer sc.wg.Done()
		rl.serve()
	}()
	if fr.BindPort == 0 {
		return boundPort, nil
	}
	return 0, nil
}

// remoteListener is one tcpip-forward: it accepts on the server and opens a
// forwarded-tcpip channel back to the client for each connection.
type remoteListener struct {
	sc   *serverConn
	ln   net.Listener
	req  forwardRequest // as the client asked
	port uint32         // bound port
	key  string         // bound address, the key of Server.bound
	once sync.Once
}

func (rl *remoteListener) close() {
	rl.once.Do(func() {
		rl.ln.Close()
		s := rl.sc.srv
		s.mu.Lock()
		if s.bound[rl.key] == rl.sc {
			delete(s.bound, rl.key)
		}
		s.mu.Unlock()
	})
}

func (rl *remoteListener) serve() {
	defer rl.close()
	for {
		c, err := rl.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return
		}
		rl.sc.wg.Add(1)
		go func() {
			defer rl.sc.wg.Done()
			rl.forward(c)
		}()
	}
}

// forward carries one accepted connection back to the client.
func (rl *remoteListener) forward(c net.Conn) {
	oh, op := hostPort(c.RemoteAddr())
	payload := channelOpen{Host: rl.req.BindHost, Port: rl.port, OriginHost: oh, OriginPort: op}
	var early []byte
	if rl.sc.early.Load() {
		early = readEarly(c)
	}
	ch, err := openEarly(rl.sc.open, chanForwardedTCPIP, chanForwardedTCPIPEarly, payload, early, &rl.sc.early)
	putEarly(early)
	if err != nil {
		rl.sc.log.Info("client refused forwarded connection", "laddr", rl.key, "raddr", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	pipe(rl.sc.ctx, &rl.sc.wg, c, ch)
}

// open opens a stream channel to the client, for openEarly.
func (sc *serverConn) open(chanType string, _ channelOpen, payload []byte) (ssh.Channel, error) {
	ch, reqs, err := sc.conn.OpenChannel(chanType, payload)
	if err != nil {
		return nil, err
	}
	ignoreRequests(reqs)
	return ch, nil
}

// direct serves a direct-tcpip channel (ssh -L, ssh -D): check
// permitopen, dial, then relay.
func (sc *serverConn) direct(ctx context.Context, nc ssh.NewChannel) {
	ch, c, _, ok := sc.openTarget(ctx, nc, "tcp")
	if !ok {
		return
	}
	pipe(ctx, &sc.wg, c, ch)
}

// openTarget serves the common part of direct-tcpip and
// direct-udp@pinhole: parse the payload, check permitopen, dial the target
// over network and accept the channel, or reject it with OpenSSH's reason
// codes. ok is false when the channel was rejected.
func (sc *serverConn) openTarget(ctx context.Context, nc ssh.NewChannel, network string) (ch ssh.Channel, c net.Conn, target string, ok bool) {
	p, early, err := parseOpen(nc.ChannelType(), nc.ExtraData())
	if err != nil {
		nc.Reject(ssh.ConnectionFailed, "malformed "+nc.ChannelType()+" request")
		return nil, nil, "", false
	}
	target = p.target()
	if p.Port > 65535 || sc.opts == nil || !sc.opts.AllowOpen(p.Host, int(p.Port)) {
		sc.log.Info("refused to open", "raddr", target, "proto", network, "reason", "permitopen")
		nc.Reject(ssh.Prohibited, "connecting to "+target+"/"+network+" is not allowed for this key (permitopen or no-port-forwarding in authorized_keys)")
		return nil, nil, "", false
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	c, err = sc.srv.cfg.Dial(dctx, network, target)
	cancel()
	if err != nil {
		sc.log.Info("connect failed", "raddr", target, "proto", network, "err", err)
		nc.Reject(ssh.ConnectionFailed, dialReason(err))
		return nil, nil, "", false
	}
	if err := writeEarly(c, target, early); err != nil {
		sc.log.Info("connect failed", "raddr", target, "proto", network, "err", err)
		nc.Reject(ssh.ConnectionFailed, err.Error())
		return nil, nil, "", false
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		c.Close()
		return nil, nil, "", false
	}
	ignoreRequests(reqs)
	if sc.log.Enabled(ctx, slog.LevelDebug) { // p.origin() allocates even when discarded
		sc.log.Debug("channel open", "type", nc.ChannelType(), "raddr", target, "origin", p.origin())
	}
	return ch, c, target, true
}

// session answers "ssh host" without -N: a short text, no shell. The
// channel stays open (input discarded) until the client leaves, so its
// forwards go on working, as on tunnel services that print a banner.
func (sc *serverConn) session(ctx context.Context, nc ssh.NewChannel) {
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	go io.Copy(io.Discard, ch)
	for {
		select {
		case <-ctx.Done():
			return
		case req, ok := <-reqs:
			if !ok {
				return
			}
			switch req.Type {
			case "shell":
				req.Reply(true, nil)
				io.WriteString(ch, sc.banner())
			case "exec", "subsystem":
				io.WriteString(ch.Stderr(), "pinhole: this server only forwards ports; it runs no commands, sftp or scp.\r\n")
				req.Reply(false, nil)
			default:
				// pty-req, env, x11-req, auth-agent-req: nothing here to give.
				if req.WantReply {
					req.Reply(false, nil)
				}
			}
		}
	}
}

func (sc *serverConn) banner() string {
	var b strings.Builder
	b.WriteString("pinhole: this server only forwards ports; there is no shell here.\r\n")
	sc.mu.Lock()
	for _, rl := range sc.forwards {
		fmt.Fprintf(&b, "pinhole: forwarding %s on this server to you\r\n", rl.ln.Addr())
	}
	for _, ul := range sc.udpForwards {
		fmt.Fprintf(&b, "pinhole: forwarding %s/udp on this server to you\r\n", ul.pc.LocalAddr())
	}
	sc.mu.Unlock()
	b.WriteString("pinhole: the connection stays open while your forwards work; press Ctrl-C (or ~.) to leave. Use ssh -N next time.\r\n")
	return b.String()
}
