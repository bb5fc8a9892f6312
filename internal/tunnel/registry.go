package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pinhole-dev/pinhole/internal/accept"
	"github.com/pinhole-dev/pinhole/internal/observe"
	"github.com/pinhole-dev/pinhole/internal/proxyproto"
	"github.com/pinhole-dev/pinhole/internal/ssh"
)

// The server's listener registry: which connection holds each remote
// forward's listening address, so that a port one client holds is refused
// to another with a reason, and taken back from a dead connection of the
// same key (takeover).

// boundKey names a bound remote-forward address: TCP or UDP, host:port.
type boundKey struct {
	udp  bool
	addr string
}

// register records sc as the holder of what it bound; s.mu is held.
func (s *Server) register(k boundKey, sc *serverConn) { s.bound[k] = sc }

// unregister forgets k if sc still holds it.
func (s *Server) unregister(k boundKey, sc *serverConn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bound[k] == sc {
		delete(s.bound, k)
	}
}

// holder returns the connection whose remote forward listens on port, if any.
func (s *Server) holder(udp bool, port int) *serverConn {
	if port == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, sc := range s.bound {
		if _, p, err := net.SplitHostPort(k.addr); err == nil && k.udp == udp && p == strconv.Itoa(port) {
			return sc
		}
	}
	return nil
}

// nameKey is the boundKey address of name's forward on port: "name X"
// for HTTP (80), "name X:443" for TLS passthrough.
func nameKey(name string, port uint32) string {
	if port == 80 {
		return "name " + name
	}
	return "name " + name + ":" + strconv.Itoa(int(port))
}

// holderOf returns the connection that holds k, if any.
func (s *Server) holderOf(k boundKey) *serverConn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bound[k]
}

// nameFor is the public name a tcpip-forward request asks for, "" when
// it asks for an address (or the server serves no names).
func (sc *serverConn) nameFor(fr forwardRequest) string {
	if sc.srv.cfg.Names == nil {
		return ""
	}
	return sc.srv.cfg.Names.Name(fr.BindHost, fr.BindPort, sc.key)
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

// bindOrTakeOver calls bind for sc's request of port. When the port is
// taken by another connection of the same key that does not answer a
// keepalive within TakeoverProbe, that connection is closed and bind tried
// once more: a client that lost its network and reconnected from
// elsewhere gets its port back at once, instead of when keepalives notice
// the old connection. Otherwise the error says who holds the port.
func (sc *serverConn) bindOrTakeOver(udp bool, addr string, port int, bind func() error) error {
	return sc.bindOrTakeOverFrom(addr, "port", func() *serverConn { return sc.srv.holder(udp, port) }, bind)
}

// bindOrTakeOverFrom is bindOrTakeOver with the holder found by holder,
// for what (a "port", a "name").
func (sc *serverConn) bindOrTakeOverFrom(addr, what string, holder func() *serverConn, bind func() error) error {
	err := bind()
	if err == nil {
		return nil
	}
	s := sc.srv
	owner := holder()
	switch {
	case owner == nil || !errors.Is(err, syscall.EADDRINUSE):
		return fmt.Errorf("cannot listen on %s: %w", addr, err)
	case owner == sc:
		return because(observe.RefusedPortTaken, fmt.Errorf("%s is already forwarded by this connection", addr))
	case owner.key != sc.key && what == "name":
		// A public-URL server's users are strangers to each other: no
		// address.
		return because(observe.RefusedPortTaken, fmt.Errorf("%s is already forwarded by another client; pick another name", addr))
	case owner.key != sc.key || s.cfg.TakeoverProbe < 0:
		return because(observe.RefusedPortTaken, fmt.Errorf("%s is already forwarded by another client (%s); pick another %s or stop that client", addr, owner.conn.RemoteAddr(), what))
	}
	if owner.alive(sc.ctx, s.cfg.TakeoverProbe) {
		return because(observe.RefusedPortTaken, fmt.Errorf("%s is already forwarded by another live connection with this key (%s); stop that client or pick another %s", addr, owner.conn.RemoteAddr(), what))
	}
	owner.log.Warn("taking over a dead connection's remote forward for a new connection of the same key", "laddr", addr, "new", sc.conn.RemoteAddr().String(), "probe", s.cfg.TakeoverProbe)
	owner.close()
	if err := bind(); err != nil {
		return fmt.Errorf("cannot listen on %s: %w", addr, err)
	}
	return nil
}

// alive asks the connection for a keepalive reply within d.
func (sc *serverConn) alive(ctx context.Context, d time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	reply := make(chan error, 1)
	go func() {
		_, _, err := sc.conn.SendRequest(reqKeepalive, true, nil)
		reply <- err
	}()
	select {
	case err := <-reply:
		return err == nil
	case <-ctx.Done():
		return false
	}
}

// listen serves a tcpip-forward request and returns the port to report
// (non-zero only when the client asked for port 0), and the public URL
// when a name took it.
func (sc *serverConn) listen(payload []byte) (uint32, string, error) {
	var fr forwardRequest
	if err := ssh.Unmarshal(payload, &fr); err != nil {
		return 0, "", because(observe.RefusedMalformed, fmt.Errorf("malformed tcpip-forward request: %w", err))
	}
	if fr.BindPort > 65535 {
		return 0, "", because(observe.RefusedMalformed, fmt.Errorf("port %d is out of range", fr.BindPort))
	}
	// A name is checked against permitlisten as itself: an entry for
	// loopback (permitlisten="80", "localhost:80") never admits one, since
	// a name is public.
	name := sc.nameFor(fr)
	asked := fr.BindHost
	if name != "" {
		asked = name
	}
	if name != "" && strings.Contains(name, ".") && (sc.opts == nil || !sc.opts.AllowDomain(name, int(fr.BindPort))) {
		return 0, "", because(observe.RefusedPermitListen, fmt.Errorf("%s is a domain of its own, not a name under this server's domain: this key needs permitlisten=\"%s:%d\" in the server's authorized_keys to take it", name, name, fr.BindPort))
	}
	if sc.opts == nil || !sc.opts.AllowListen(asked, int(fr.BindPort)) {
		return 0, "", because(observe.RefusedPermitListen, fmt.Errorf("listening on %s is not allowed for this key (permitlisten or no-port-forwarding in authorized_keys)", net.JoinHostPort(asked, strconv.Itoa(int(fr.BindPort)))))
	}
	s := sc.srv
	if s.stopped() {
		return 0, "", because(observe.RefusedShuttingDown, errors.New(errShuttingDown))
	}
	var (
		ln        net.Listener
		err       error
		k         boundKey
		boundPort uint32
	)
	if name != "" {
		// A name registers as a port does: its holder is found, and
		// taken over when dead, by boundKey.
		k = boundKey{addr: nameKey(name, fr.BindPort)}
		err = sc.bindOrTakeOverFrom(name, "name", func() *serverConn { return s.holderOf(k) }, func() (err error) {
			ln, err = sc.listenName(name, fr.BindPort)
			return err
		})
		boundPort = fr.BindPort
	} else {
		addr := net.JoinHostPort(s.bindHost(fr.BindHost), strconv.Itoa(int(fr.BindPort)))
		err = sc.bindOrTakeOver(false, addr, int(fr.BindPort), func() (err error) {
			ln, err = s.cfg.Listen("tcp", addr)
			return err
		})
		if err == nil {
			k = boundKey{addr: ln.Addr().String()}
			_, boundPort = hostPort(ln.Addr())
		}
	}
	if err != nil {
		return 0, "", err
	}
	// A port counts toward the key's limit once bound: a port taken
	// over from a dead connection of the key has left that
	// connection's count by then.
	var endPort func()
	if name == "" {
		if err := sc.keys.holdPort(); err != nil {
			ln.Close()
			sc.keys.refused(sc.log, err, "tcpip-forward "+ln.Addr().String())
			return 0, "", err
		}
		endPort = sc.keys.endPort
	}
	bound := ln.Addr().String()
	key := fr
	if fr.BindPort == 0 {
		key.BindPort = boundPort
	}
	rl := &remoteListener{sc: sc, ln: ln, req: fr, port: boundPort, key: k, since: time.Now(), name: name, url: nameURL(k, ln), named: name != "" && fr.BindPort != 443, endPort: endPort}
	if d, ok := ln.(interface {
		SetDial(func(context.Context) (net.Conn, error))
	}); ok && rl.named {
		d.SetDial(rl.dial)
	}
	s.mu.Lock()
	sc.mu.Lock()
	if s.state != serverServing || sc.forwards == nil {
		sc.mu.Unlock()
		s.mu.Unlock()
		rl.close()
		return 0, "", because(observe.RefusedShuttingDown, errors.New(errShuttingDown))
	}
	s.register(rl.key, sc)
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
		return boundPort, rl.url, nil
	}
	return 0, rl.url, nil
}

// nameURL is the public URL of a name's listener ln, registered as k: its
// listener's address; "" for a port's.
func nameURL(k boundKey, ln net.Listener) string {
	if a := ln.Addr().String(); a != k.addr {
		return a
	}
	return ""
}

// remoteListener is one tcpip-forward: it accepts on the server and opens a
// forwarded-tcpip channel back to the client for each connection.
type remoteListener struct {
	sc        *serverConn
	ln        net.Listener
	req       forwardRequest // as the client asked
	port      uint32         // bound port
	key       boundKey       // bound address, the key of Server.bound
	since     time.Time      // when it started listening
	name, url string         // a public name's, and its URL
	// named: a name's HTTP forward (vhost): its connections are the HTTP
	// router's, which never half-closes, so EOF from it ends the stream.
	// A name's port-443 forward (TLS passthrough) gets the public
	// clients' own connections, which half-close as a port's do.
	named   bool
	endPort func() // the key's count of the port; nil for a name
	once    sync.Once
}

func (rl *remoteListener) where() string { return rl.key.addr }

func (rl *remoteListener) close() {
	rl.once.Do(func() {
		rl.ln.Close()
		rl.sc.srv.unregister(rl.key, rl.sc)
		if rl.endPort != nil {
			rl.endPort()
		}
	})
}

func (rl *remoteListener) serve() {
	defer rl.close()
	err := accept.Loop(rl.ln, rl.sc.log, func(c net.Conn) {
		rl.sc.wg.Add(1)
		go func() {
			defer rl.sc.wg.Done()
			rl.forward(c)
		}()
	})
	if !errors.Is(err, net.ErrClosed) {
		rl.sc.log.Warn("remote forward stopped", "laddr", rl.key.addr, "err", err)
	}
}

// forward carries one accepted connection back to the client.
func (rl *remoteListener) forward(c net.Conn) {
	if err := rl.sc.keys.openStream(); err != nil {
		// The public connection is closed unanswered (a name's HTTP
		// client gets the router's 502); the key's other streams go on.
		rl.sc.refuse(limitReason(err), rl.key.addr, c.RemoteAddr(), err)
		rl.sc.keys.refused(rl.sc.log, err, chanForwardedTCPIP+" "+rl.key.addr)
		c.Close()
		return
	}
	oh, op := hostPort(c.RemoteAddr())
	payload := channelOpen{Host: rl.req.BindHost, Port: rl.port, OriginHost: oh, OriginPort: op}
	var header []byte // the PROXY protocol's, when asked for
	if !rl.named {    // a name's options are the router's to apply
		var err error
		if header, err = rl.sc.streamOptions(proxyproto.AddrPort(c.RemoteAddr()), proxyproto.AddrPort(c.LocalAddr())); err != nil {
			rl.sc.keys.endStream()
			rl.sc.refuse(observe.RefusedTunnelOptions, rl.key.addr, c.RemoteAddr(), err)
			rl.sc.log.Info("forwarded connection closed", "laddr", rl.key.addr, "peer", c.RemoteAddr().String(), "reason", observe.RefusedTunnelOptions, "err", err)
			c.Close()
			return
		}
	}
	var early []byte
	if rl.sc.early.Load() {
		early = readEarly(c)
	}
	if header != nil {
		// The header comes first in the stream: before the early data,
		// in the open with it, or as the first bytes written.
		defer putEarly(early)
		early = append(header, early...)
	}
	ch, err := openEarly(rl.sc.open, chanForwardedTCPIP, chanForwardedTCPIPEarly, payload, early, &rl.sc.early)
	if err == nil {
		rl.sc.meter.toTarget.Add(int64(len(early)))
	}
	putEarly(early)
	if err != nil {
		rl.sc.keys.endStream()
		rl.sc.refuse(observe.RefusedByClient, rl.key.addr, c.RemoteAddr(), err)
		rl.sc.log.Info("client refused forwarded connection", "laddr", rl.key.addr, "peer", c.RemoteAddr().String(), "reason", observe.RefusedByClient, "err", err)
		c.Close()
		return
	}
	if rl.named {
		ch = fullClose{ch}
	}
	pipeThen(rl.sc.ctx, nil, &rl.sc.wg, &rl.sc.meter, false, c, ch, rl.sc.keys.endStream)
}

// dial opens one stream of a name's HTTP forward for the router
// (vhost's SetDial), as forward does for an accepted connection, and
// returns it as a conn: the router's HTTP client reads and writes the
// channel itself, with no pipe and copy goroutines between.
func (rl *remoteListener) dial(ctx context.Context) (net.Conn, error) {
	sc := rl.sc
	if err := sc.keys.openStream(); err != nil {
		sc.refuse(limitReason(err), rl.key.addr, addrString{}, err)
		sc.keys.refused(sc.log, err, chanForwardedTCPIP+" "+rl.key.addr)
		return nil, err
	}
	payload := channelOpen{Host: rl.req.BindHost, Port: rl.port, OriginHost: "pipe", OriginPort: 0}
	ch, err := openEarly(sc.open, chanForwardedTCPIP, chanForwardedTCPIPEarly, payload, nil, &sc.early)
	if err != nil {
		sc.keys.endStream()
		sc.refuse(observe.RefusedByClient, rl.key.addr, addrString{}, err)
		sc.log.Info("client refused forwarded connection", "laddr", rl.key.addr, "reason", observe.RefusedByClient, "err", err)
		return nil, err
	}
	if ctx.Err() != nil {
		ch.Close()
		sc.keys.endStream()
		return nil, ctx.Err()
	}
	c := (&chanConn{Channel: fullClose{ch}, laddr: addrString{rl.key.addr}, raddr: addrString{sc.conn.RemoteAddr().String()}}).counted(sc.ctx, &sc.meter)
	return &endConn{Conn: c, end: sc.keys.endStream}, nil
}

// endConn calls end once, at its first Close.
type endConn struct {
	net.Conn
	end  func()
	once sync.Once
}

func (c *endConn) Close() error {
	c.once.Do(c.end)
	return c.Conn.Close()
}

// fullClose is a channel whose half-close closes it: for a stream whose
// other end only ever closes whole (a name's, whose HTTP client went),
// so that a service that never answers does not hold it open.
type fullClose struct{ ssh.Channel }

func (c fullClose) CloseWrite() error { return c.Channel.Close() }
