package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os/user"

	"github.com/pinhole-dev/pinhole/internal/ssh"

	"github.com/pinhole-dev/pinhole/internal/auth"
	"github.com/pinhole-dev/pinhole/internal/transport"
	"github.com/pinhole-dev/pinhole/internal/tunnel"
)

// dialSettings decide how pinhole connect reaches its server, beside the
// address: -b (BindAddress), -J (ProxyJump) and ProxyCommand. The zero
// value dials straight from the system's choice of source address.
type dialSettings struct {
	Bind         string // -b ADDR: the source address of the connection (to the first jump host with -J)
	Jump         string // -J [user@]host[:port][,...], or "none"
	ProxyCommand string // a command whose stdio is the transport (%h %p %r %n expanded), or "none"
	Family       string // "inet" or "inet6": the connection pinhole makes is IPv4 or IPv6 only (-4, -6); "" either

	// URL is the destination when it was written as one (ssh://, tls://,
	// ws://, wss://): the transport the SSH stream takes to it, and the
	// reason proxies come from the environment. nil: a plain host, raw
	// SSH.
	URL *transport.Endpoint
	// TLS checks a tls:// or wss:// destination's certificate.
	TLS transport.ClientTLS
	// Proxy is --proxy: a proxy URL, "none", or "" for the environment's
	// when URL is set.
	Proxy string
	// Base makes the first TCP connection when -b is not given (what
	// ssh_config's BindAddress says); nil means a net.Dialer.
	Base tunnel.DialFunc
	// Getenv reads the proxy variables; nil means none are set.
	Getenv func(string) string

	// ResolveHop, if set, completes each jump host as parsed from Jump
	// before it is dialled: ssh_config's HostName, Port and User for it,
	// and its own Auth and HostKeyCallback where they differ. A hop left
	// without a user logs in as the local user; Port 0 means 22.
	ResolveHop func(tunnel.JumpHost) (tunnel.JumpHost, error)
}

// check reports a malformed -b, -J or ProxyCommand before anything is
// loaded or dialled.
func (s dialSettings) check() error {
	if s.Bind != "" {
		if _, err := tunnel.BindDialer(s.Bind); err != nil {
			return err
		}
	}
	if s.Jump != "" {
		if _, err := tunnel.ParseJump(s.Jump); err != nil {
			return err
		}
	}
	if s.ProxyCommand != "" && s.ProxyCommand != "none" {
		if _, err := tunnel.ProxyCommandDialer(tunnel.ProxyCommandConfig{Command: s.ProxyCommand}); err != nil {
			return err
		}
	}
	return checkProxy(s.Proxy)
}

// dialer returns the tunnel.ClientConfig.Dial and Target for s: nil and
// "" when none of it is set. destUser is the destination's user
// (ProxyCommand's %r) and destHost the host as typed (%n). The jump hosts
// log in with authm, as the local user unless -J names one (as ssh does),
// and are checked by kh each under its own host:port. A proxy carries the
// first connection (to the destination, or to the first jump host); a
// tls://, ws:// or wss:// destination's transport goes over whatever
// reaches it.
func (s dialSettings) dialer(e *env, destUser, destHost string, authm []ssh.AuthMethod, kh *auth.KnownHosts) (tunnel.DialFunc, string, error) {
	dial, err := s.reach(e, destUser, destHost, authm, kh)
	if err != nil || s.URL == nil || s.URL.Scheme == transport.SSH {
		return dial, "", err
	}
	td := &transport.Dialer{Dial: dial, TLS: s.TLS}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := td.DialContext(ctx, network, addr)
		if errors.Is(err, transport.ErrCertificate) {
			return nil, &tunnel.FatalError{Err: err} // retrying cannot help
		}
		return c, err
	}, s.URL.String(), nil
}

// reach is the DialFunc that reaches the destination's host:port: through
// a ProxyCommand, or from -b's address, over a proxy and the -J hops.
func (s dialSettings) reach(e *env, destUser, destHost string, authm []ssh.AuthMethod, kh *auth.KnownHosts) (tunnel.DialFunc, error) {
	jump := s.Jump != "" && s.Jump != "none"
	command := s.ProxyCommand != "" && s.ProxyCommand != "none"
	switch {
	case jump && command:
		return nil, errors.New("ProxyJump (-J) and ProxyCommand are both set: use one")
	case command && s.Proxy != "" && s.Proxy != "none":
		return nil, errors.New("--proxy and a ProxyCommand are both set: the command makes the connection; use one")
	case command:
		if s.Bind != "" {
			e.log.Warn("-b (BindAddress) does nothing with a ProxyCommand: the command makes the connection", "bind", s.Bind)
		}
		return tunnel.ProxyCommandDialer(tunnel.ProxyCommandConfig{
			Command:      s.ProxyCommand,
			User:         destUser,
			OriginalHost: destHost,
			Stderr:       e.stderr,
		})
	}
	var hops []tunnel.JumpHost
	if jump {
		var err error
		if hops, err = tunnel.ParseJump(s.Jump); err != nil {
			return nil, err
		}
		if s.ResolveHop != nil {
			for i, h := range hops {
				if hops[i], err = s.ResolveHop(h); err != nil {
					return nil, fmt.Errorf("-J %s: %w", h, err)
				}
			}
		}
	}
	first := s.Base
	if s.Bind != "" {
		d, err := tunnel.BindDialer(s.Bind)
		if err != nil {
			return nil, err
		}
		first = d
	}
	if s.Family != "" {
		network := "tcp4"
		if s.Family == "inet6" {
			network = "tcp6"
		}
		base := first
		if base == nil {
			base = new(net.Dialer).DialContext
		}
		first = func(ctx context.Context, _, addr string) (net.Conn, error) { return base(ctx, network, addr) }
	}
	// The proxy is for the first connection this machine makes.
	scheme, host, port := transport.SSH, "", uint16(0)
	switch {
	case jump:
		host, port = hops[0].Host, cmp.Or(hops[0].Port, 22)
	case s.URL != nil:
		scheme, host, port = s.URL.Scheme, s.URL.Host, s.URL.Port
	}
	getenv := s.Getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	proxy, err := proxyFor(s.Proxy, s.URL != nil, getenv, scheme, host, port)
	if err != nil {
		return nil, err
	}
	if proxy != nil {
		if first, err = transport.ProxyDialer(proxy, first); err != nil {
			return nil, err
		}
	}
	if !jump {
		return first, nil
	}
	local := ""
	if u, err := user.Current(); err == nil {
		local = u.Username
	}
	for _, h := range hops {
		if h.User == "" && local == "" {
			return nil, fmt.Errorf("-J %s: cannot tell your user name: name it, as -J user@%s", h, h)
		}
	}
	return tunnel.JumpDialer(tunnel.JumpConfig{
		Hosts:             hops,
		User:              local,
		Auth:              authm,
		HostKeyCallback:   kh.Callback(),
		HostKeyAlgorithms: kh.Algorithms,
		Dial:              first,
	})
}
