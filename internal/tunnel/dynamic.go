package tunnel

import (
	"context"
	"net"

	"github.com/pinhole-dev/pinhole/internal/socks"
)

// Dynamic forwards (-D): a SOCKS4/4a/5 and HTTP proxy here, each request a
// direct-tcpip channel (and each SOCKS5 UDP destination a
// direct-udp@pinhole one) from the server.

// serveDynamic starts the forward's proxy on its listener.
func (f *Forwarding) serveDynamic() {
	c := f.c
	f.proxy = &socks.Server{
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
		f.proxy.Credentials = c.cfg.ProxyCredentials
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		err := f.proxy.Serve(f.ln)
		f.stopped(err)
	}()
}
