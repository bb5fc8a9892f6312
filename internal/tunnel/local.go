package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/pinhole-dev/pinhole/internal/ssh"

	"github.com/pinhole-dev/pinhole/internal/accept"
	"github.com/pinhole-dev/pinhole/internal/relay"
)

// Local forwards (-L): listen here, and open a direct-tcpip (or
// direct-udp@pinhole) channel to the target for each connection or flow.

// serveLocal is the accept loop of a TCP -L forward.
func (f *Forwarding) serveLocal() {
	err := accept.Loop(f.ln, f.c.log, func(conn net.Conn) {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.forwardOut(conn)
		}()
	})
	f.stopped(err)
}

// stopped is called when the forward's accept loop ends with err: a
// listener that fails for good closes the forward, saying why.
func (f *Forwarding) stopped(err error) {
	if err == nil || errors.Is(err, net.ErrClosed) {
		return
	}
	f.c.log.Error("forward stopped: its listener failed", "forward", f.flag(), "err", err)
	go f.close(fmt.Errorf("tunnel: %s: %w", f.flag(), err))
}

// forwardOut carries a connection accepted by a -L listener. It waits up to
// StreamWait for the tunnel and for the server to open the stream; when
// that passes first, conn is closed then, and the stream when it comes.
//
// Unlike open, it waits for the server's answer itself, with a timer for
// StreamWait rather than a context: one goroutine and one hand-off fewer
// for each new connection (BenchmarkNewConn).
func (f *Forwarding) forwardOut(conn net.Conn) {
	c := f.c
	deadline := time.Now().Add(c.cfg.StreamWait)
	l, err := c.currentUntil(f.ctx, deadline)
	var ch ssh.Channel
	if err == nil {
		expired := time.AfterFunc(time.Until(deadline), func() { conn.Close() })
		p := newChannelOpen(f.spec.Host, f.spec.HostPort, conn.RemoteAddr())
		var early []byte
		if l.early.Load() {
			early = readEarly(conn)
		}
		ch, err = openEarly(l.openChannel, chanDirectTCPIP, chanDirectTCPIPEarly, p, early, &l.early)
		if err == nil {
			f.meter.toTarget.Add(int64(len(early)))
		}
		putEarly(early)
		if !expired.Stop() {
			if ch != nil {
				ch.Close()
			}
			ch, err = nil, fmt.Errorf("tunnel: open %s: %w", p.target(), context.DeadlineExceeded)
		}
	}
	if err != nil {
		f.refuse(openReason(err), conn.RemoteAddr(), err)
		c.log.Info("local forward failed", "forward", f.flag(), "peer", conn.RemoteAddr().String(), "raddr", f.spec.Target(), "reason", openReason(err), "err", err)
		conn.Close()
		return
	}
	pipe(l.ctx, f.ctx, &f.wg, &f.meter, false, conn, ch)
}

// serveLocalUDP runs the flow table of a UDP -L forward.
func (f *Forwarding) serveLocalUDP() {
	c := f.c
	fwd := &relay.UDPForwarder{
		IdleTimeout: c.cfg.UDPIdleTimeout,
		MaxFlows:    c.cfg.UDPMaxFlows,
		Logger:      c.log,
		Dial: func(ctx context.Context, src netip.AddrPort) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(ctx, c.cfg.StreamWait)
			defer cancel()
			conn, err := c.dialUDP(ctx, &f.meter, f.spec.Host, f.spec.HostPort, net.UDPAddrFromAddrPort(src))
			if err != nil {
				f.refuse(openReason(err), src, err)
			}
			return conn, err
		},
	}
	defer c.ev.udp.track(fwd)()
	fwd.Serve(f.ctx, f.pc)
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
	l, err := c.current(ctx)
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
		ch, err := l.openChannel(chanType, p, ssh.Marshal(p))
		res <- result{ch, err}
	}()
	select {
	case r := <-res:
		if r.err != nil {
			return nil, nil, r.err
		}
		return r.ch, l, nil
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
// must be "tcp" (or "tcp4"/"tcp6").
func (c *Client) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	return c.dialStream(ctx, &c.meter, network, addr)
}

// dialStream is DialContext with the stream counted in m while it is open.
func (c *Client) dialStream(ctx context.Context, m *meter, network, addr string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, fmt.Errorf("tunnel: network %q: only tcp is carried over direct-tcpip", network)
	}
	host, port, err := splitPort(addr, "")
	if err != nil {
		return nil, err
	}
	ch, l, err := c.open(ctx, chanDirectTCPIP, host, port, nil)
	if err != nil {
		return nil, err
	}
	cc := &chanConn{Channel: ch, raddr: addrString{addr}, laddr: addrString{c.cfg.Addr}}
	return cc.counted(l.ctx, m), nil
}

// DialUDP opens a datagram flow to addr (host:port, the host resolved by
// the server) through the tunnel: each Write sends one datagram, each Read
// returns one. It needs a pinhole server (ErrNoUDP otherwise). It is what
// SOCKS5 UDP ASSOCIATE uses.
func (c *Client) DialUDP(ctx context.Context, addr string) (net.Conn, error) {
	host, port, err := splitPort(addr, "udp ")
	if err != nil {
		return nil, err
	}
	return c.dialUDP(ctx, &c.meter, host, port, nil)
}

func splitPort(addr, what string) (string, uint16, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("tunnel: dial %s%q: %w", what, addr, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return "", 0, fmt.Errorf("tunnel: dial %s%q: bad port", what, addr)
	}
	return host, uint16(port), nil
}

// dialUDP opens a flow counted in m.
func (c *Client) dialUDP(ctx context.Context, m *meter, host string, port uint16, origin net.Addr) (net.Conn, error) {
	l, err := c.current(ctx)
	if err != nil {
		return nil, err
	}
	if !l.caps.udp {
		return nil, ErrNoUDP
	}
	ch, _, err := c.open(ctx, chanDirectUDP, host, port, origin)
	if err != nil {
		return nil, err
	}
	return newDatagramConn(ch, addrString{c.cfg.Addr}, addrString{net.JoinHostPort(host, strconv.Itoa(int(port)))}).counted(m, true), nil
}

// countedConn is a stream handed to a caller (DialContext, -D's SOCKS
// server), which copies through Read and Write: those count its bytes,
// and it is one of its meter's open streams until Close or the end of its
// connection.
type countedConn struct {
	*chanConn
	m    *meter
	end  func()
	once sync.Once
	stop func() bool
}

func (c *chanConn) counted(linkCtx context.Context, m *meter) net.Conn {
	cc := &countedConn{chanConn: c, m: m, end: m.open(false)}
	cc.stop = context.AfterFunc(linkCtx, func() { cc.Close() })
	return cc
}

func (c *countedConn) Read(p []byte) (int, error) {
	n, err := c.chanConn.Read(p)
	c.m.fromTarget.Add(int64(n))
	return n, err
}

func (c *countedConn) Write(p []byte) (int, error) {
	n, err := c.chanConn.Write(p)
	c.m.toTarget.Add(int64(n))
	return n, err
}

func (c *countedConn) Close() error {
	c.once.Do(func() {
		c.stop()
		c.end()
	})
	return c.chanConn.Close()
}
