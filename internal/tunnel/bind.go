package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

// BindDialer returns a dialer for ClientConfig.Dial (or JumpConfig.Dial)
// whose connections leave from the local address addr, as ssh's -b
// (BindAddress): an IP address of this machine, the port chosen by the
// system. A host name is not taken: name the address.
func BindDialer(addr string) (DialFunc, error) {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return nil, fmt.Errorf("tunnel: -b %q: want an IP address of this machine to connect from, such as 192.0.2.10 or 2001:db8::1", addr)
	}
	d := &net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip, 0))}
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, address)
		switch {
		case errors.Is(err, syscall.EADDRNOTAVAIL):
			return nil, fmt.Errorf("from %s (-b): %w: that address is not on this machine; see ip address", ip, err)
		case err != nil:
			return nil, fmt.Errorf("from %s (-b): %w", ip, err)
		}
		return c, nil
	}, nil
}
