package tunnel

import (
	"context"
	"net"

	"github.com/pinhole-dev/pinhole/internal/socks"
)

// Dynamic forwards (-D): a SOCKS4/4a/5 and HTTP proxy here, each request a
// direct-tcpip channel (and each SOCKS5 UDP destination a
// direct-udp@pinhole one) from the server.

// newProxy is the SOCKS and HTTP proxy of a -D forward.
func (f *Forwarding) newProxy() *socks.Server {
	c := f.c
	p := &socks.Server{
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := c.dialStream(ctx, &f.meter, network, addr)
			if err != nil {
				return nil, f.refused(err)
			}
			return conn, nil
		},
		DialUDP: func(ctx context.Context, addr string) (net.Conn, error) {
			host, port, err := splitPort(addr, "udp ")
			if err != nil {
				return nil, err
			}
			conn, err := c.dialUDP(ctx, &f.meter, host, port, nil)
			if err != nil {
				return nil, f.refused(err)
			}
			return conn, nil
		},
		NoUDP:          func() bool { return !c.UDP() },
		UDPIdleTimeout: c.cfg.UDPIdleTimeout,
		Logger:         c.log,
	}
	if c.cfg.ProxyCredentials != nil {
		p.Credentials = c.cfg.ProxyCredentials
	}
	return p
}

// serveDynamic runs the forward's proxy on its listener.
func (f *Forwarding) serveDynamic() {
	f.stopped(f.proxy.Serve(f.ln))
}
