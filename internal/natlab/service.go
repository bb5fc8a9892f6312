package natlab

import (
	"context"
	cryptorand "crypto/rand"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/streamtest"
)

// Listen opens a listener in namespace ns, as net.Listen would there.
func Listen(ns, network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := InNamespace(ns, func() (err error) {
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln, err
}

// ListenUDP opens a UDP socket in namespace ns, as net.ListenUDP would
// there.
func ListenUDP(ns string, addr netip.AddrPort) (*net.UDPConn, error) {
	var pc *net.UDPConn
	err := InNamespace(ns, func() (err error) {
		pc, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
		return err
	})
	return pc, err
}

// Dial connects from namespace ns, as net.Dialer.DialContext would there.
// addr must be an IP address and port: no name is looked up.
func Dial(ctx context.Context, ns, network, addr string) (net.Conn, error) {
	var conn net.Conn
	err := InNamespace(ns, func() (err error) {
		var d net.Dialer
		conn, err = d.DialContext(ctx, network, addr)
		return err
	})
	return conn, err
}

// ServeTCP starts a streamtest.Target on the LAN host, on all its
// addresses and a port the kernel picks, and returns that port. ReachTCP
// talks to it. It stops when the test ends.
func (l *Lab) ServeTCP(t testing.TB) uint16 {
	t.Helper()
	ln, err := Listen(l.LAN, "tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatalf("natlab: listening on the LAN host: %v", err)
	}
	return uint16(streamtest.NewTargetListener(t, ln).Port())
}

// ServeUDP starts a UDP echo (streamtest.NewUDPEchoConn) on the LAN host,
// on all its addresses and a port the kernel picks, and returns that port.
// ReachUDP talks to it. It stops when the test ends.
func (l *Lab) ServeUDP(t testing.TB) uint16 {
	t.Helper()
	pc, err := ListenUDP(l.LAN, netip.AddrPortFrom(netip.IPv4Unspecified(), 0))
	if err != nil {
		t.Fatalf("natlab: listening for UDP on the LAN host: %v", err)
	}
	streamtest.NewUDPEchoConn(t, pc)
	return pc.LocalAddr().(*net.UDPAddr).AddrPort().Port()
}

// ReachTCP connects from the internet host to addr (the router's WAN
// address and a mapped port) and runs a streamtest exchange of 256 KiB each
// way with the ServeTCP target behind it: nil means every byte crossed the
// router intact, both ways. A new connection each time, so the router's
// connection tracking cannot carry it on a mapping that has gone.
func (l *Lab) ReachTCP(ctx context.Context, addr netip.AddrPort) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	conn, err := Dial(ctx, l.Internet, "tcp4", addr.String())
	if err != nil {
		return fmt.Errorf("natlab: from the internet host to %s: %w", addr, err)
	}
	defer conn.Close()
	if err := streamtest.Exchange(ctx, conn, rand.Uint64(), 256<<10, 256<<10); err != nil {
		return fmt.Errorf("natlab: from the internet host through %s: %w", addr, err)
	}
	return nil
}

// ReachUDP sends datagrams from the internet host to addr (the router's WAN
// address and a mapped port) until one comes back byte for byte from the
// ServeUDP echo behind it: nil means one did. It tries 6 times, 500 ms
// apart, and gives up at once when the router answers "port unreachable".
// A new socket (a new source port) each time, so the router's connection
// tracking cannot carry it on a mapping that has gone.
func (l *Lab) ReachUDP(ctx context.Context, addr netip.AddrPort) error {
	conn, err := Dial(ctx, l.Internet, "udp4", addr.String())
	if err != nil {
		return fmt.Errorf("natlab: from the internet host to %s/udp: %w", addr, err)
	}
	defer conn.Close()
	const tries = 6
	msg := make([]byte, 1200)
	buf := make([]byte, 2048)
	var last error
	for try := range tries {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("natlab: from the internet host to %s/udp: %w", addr, err)
		}
		cryptorand.Read(msg)
		if _, err := conn.Write(msg); err != nil {
			last = err
		} else {
			conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			n, err := conn.Read(buf)
			for err == nil && string(buf[:n]) != string(msg) {
				n, err = conn.Read(buf) // a late echo of an earlier try
			}
			if err == nil {
				return nil
			}
			last = err
		}
		if errors.Is(last, syscall.ECONNREFUSED) {
			return fmt.Errorf("natlab: from the internet host to %s/udp, try %d: %w", addr, try+1, last)
		}
	}
	return fmt.Errorf("natlab: no echo from %s/udp in %d tries: %w", addr, tries, last)
}
