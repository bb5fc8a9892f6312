package tunnel

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"github.com/pinhole-dev/pinhole/internal/relay"
	"github.com/pinhole-dev/pinhole/internal/spec"
)

// bindLocals binds every -L forward, TCP and UDP, before the first connect
// so that a taken port fails Dial at once.
func (c *Client) bindLocals() error {
	for _, f := range c.cfg.Local {
		addr := f.ListenAddr()
		if f.Proto == spec.UDP {
			ua, err := net.ResolveUDPAddr("udp", addr)
			if err != nil {
				return fmt.Errorf("tunnel: -L %s: %w", f, err)
			}
			pc, err := net.ListenUDP("udp", ua)
			if err != nil {
				return fmt.Errorf("tunnel: -L %s: %w (is another program using that port? pick another one)", f, err)
			}
			c.udps = append(c.udps, pc)
			c.laddrs = append(c.laddrs, pc.LocalAddr())
			continue
		}
		ln, err := c.cfg.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("tunnel: -L %s: %w (is another program using that port? pick another one)", f, err)
		}
		c.locals = append(c.locals, ln)
		c.laddrs = append(c.laddrs, ln.Addr())
	}
	return nil
}

// serveLocals starts the accept loops of the -L forwards.
func (c *Client) serveLocals() {
	tcp, udp := 0, 0
	for _, f := range c.cfg.Local {
		if f.Proto == spec.UDP {
			pc := c.udps[udp]
			udp++
			if !c.udp.Load() {
				c.log.Warn("local forward closed: the server does not speak pinhole's UDP extension", "forward", "-L "+f.String())
				pc.Close()
				continue
			}
			c.log.Info("local udp forward listening", "laddr", pc.LocalAddr().String(), "raddr", f.Target())
			fwd := &relay.UDPForwarder{
				IdleTimeout: c.cfg.UDPIdleTimeout,
				MaxFlows:    c.cfg.UDPMaxFlows,
				Logger:      c.log,
				Dial: func(ctx context.Context, src netip.AddrPort) (net.Conn, error) {
					ctx, cancel := context.WithTimeout(ctx, c.cfg.StreamWait)
					defer cancel()
					return c.dialUDP(ctx, f.Host, f.HostPort, net.UDPAddrFromAddrPort(src))
				},
			}
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				fwd.Serve(c.ctx, pc)
			}()
			continue
		}
		ln := c.locals[tcp]
		tcp++
		c.log.Info("local forward listening", "laddr", ln.Addr().String(), "raddr", f.Target())
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.serveLocal(ln, f)
		}()
	}
}

// DialUDP opens a datagram flow to addr (host:port, the host resolved by
// the server) through the tunnel: each Write sends one datagram, each Read
// returns one. It needs a pinhole server (ErrNoUDP otherwise). It is what
// SOCKS5 UDP ASSOCIATE uses.
func (c *Client) DialUDP(ctx context.Context, addr string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("tunnel: dial udp %q: %w", addr, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return nil, fmt.Errorf("tunnel: dial udp %q: bad port", addr)
	}
	return c.dialUDP(ctx, host, uint16(port), nil)
}

func (c *Client) dialUDP(ctx context.Context, host string, port uint16, origin net.Addr) (net.Conn, error) {
	if _, err := c.current(ctx); err != nil {
		return nil, err
	}
	if !c.udp.Load() {
		return nil, ErrNoUDP
	}
	ch, _, err := c.open(ctx, chanDirectUDP, host, port, origin)
	if err != nil {
		return nil, err
	}
	return newDatagramConn(ch, addrString{c.cfg.Addr}, addrString{net.JoinHostPort(host, strconv.Itoa(int(port)))}), nil
}
