//go:build linux

package natlab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/streamtest"
)

func TestFirewallRules(t *testing.T) {
	rules := firewallRules(FirewallConfig{AllowTCP: []uint16{443, 22, 443}})
	for _, want := range []string{
		`iifname "lan0" oifname "wan0" tcp dport { 22, 443 } tcp flags & (fin|syn|rst|ack) == syn ct state new accept`,
		"ct state established,related accept",
		`oifname "wan0" masquerade`,
		"policy drop",
	} {
		if !strings.Contains(rules, want) {
			t.Errorf("ruleset lacks %q:\n%s", want, rules)
		}
	}
	if none := firewallRules(FirewallConfig{}); strings.Contains(none, "dport") {
		t.Errorf("no AllowTCP, yet a port is let out:\n%s", none)
	}
	if rej := firewallRules(FirewallConfig{Reject: true}); !strings.Contains(rej, "reject with tcp reset") {
		t.Errorf("Reject without a reject rule:\n%s", rej)
	}
}

// TestFirewall: the firewall router lets the LAN host open TCP connections
// to the allowed ports of the internet host, masqueraded behind the
// router's WAN address, and nothing else: another TCP port times out (or,
// with Reject, is refused at once), and UDP does not pass, not even to an
// allowed port number.
func TestFirewall(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     FirewallConfig
		open    []uint16 // TCP ports that must pass
		blocked []uint16 // TCP ports that must not
	}{
		{"https only", FirewallConfig{AllowTCP: []uint16{443}}, []uint16{443}, []uint16{22, 80}},
		{"proxy port only", FirewallConfig{AllowTCP: []uint16{3128}}, []uint16{3128}, []uint16{443, 22}},
		{"reject", FirewallConfig{AllowTCP: []uint16{443}, Reject: true}, []uint16{443}, []uint16{22}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // labs of their own: the timeouts overlap
			lab := NewFirewall(t, tc.cfg)
			ctx := testContext(t)
			if lab.MiniupnpdPid != 0 || lab.MiniupnpdOutput() != "" {
				t.Errorf("a firewall lab with miniupnpd: pid %d", lab.MiniupnpdPid)
			}
			peers := map[uint16]<-chan netip.AddrPort{}
			for _, port := range append(tc.open, tc.blocked...) {
				ln, err := Listen(lab.Internet, "tcp4", fmt.Sprintf("0.0.0.0:%d", port))
				if err != nil {
					t.Fatal(err)
				}
				peers[port] = serveEcho(t, ln)
				pc, err := ListenUDP(lab.Internet, netip.AddrPortFrom(netip.IPv4Unspecified(), port))
				if err != nil {
					t.Fatal(err)
				}
				streamtest.NewUDPEchoConn(t, pc)
			}
			for _, port := range tc.open {
				addr := netip.AddrPortFrom(InternetAddr, port)
				if err := echoOnce(ctx, lab.LAN, addr); err != nil {
					t.Errorf("tcp %s from the LAN host: %v", addr, err)
					continue
				}
				if peer := <-peers[port]; peer.Addr() != WANAddr {
					t.Errorf("tcp %s saw the LAN host as %s, want the router's WAN address %s", addr, peer, WANAddr)
				}
			}
			for _, port := range tc.blocked {
				addr := netip.AddrPortFrom(InternetAddr, port)
				start := time.Now()
				err := echoOnce(ctx, lab.LAN, addr)
				took := time.Since(start)
				switch {
				case err == nil:
					t.Errorf("tcp %s passed the firewall", addr)
				case tc.cfg.Reject && (!errors.Is(err, syscall.ECONNREFUSED) || took > 500*time.Millisecond):
					t.Errorf("tcp %s: %v after %v, want connection refused at once", addr, err, took)
				case !tc.cfg.Reject && !isTimeout(err):
					t.Errorf("tcp %s: %v, want a timeout (the router drops)", addr, err)
				}
			}
			for _, port := range append(tc.open, tc.blocked...) {
				addr := netip.AddrPortFrom(InternetAddr, port)
				if err := udpEcho(ctx, lab.LAN, addr); err == nil {
					t.Errorf("udp %s passed the firewall", addr)
				}
			}
		})
	}
}

// TestFirewallSocat: a program started on the LAN host (socat) reaches the
// allowed port and not another.
func TestFirewallSocat(t *testing.T) {
	NeedPrograms(t, "socat")
	lab := NewFirewall(t, FirewallConfig{AllowTCP: []uint16{443}})
	ctx := testContext(t)
	for _, port := range []uint16{443, 22} {
		ln, err := Listen(lab.Internet, "tcp4", fmt.Sprintf("0.0.0.0:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		streamtest.NewEchoListener(t, ln)
	}
	socat := func(port uint16) *Proc {
		p := lab.Start(t, lab.LAN, "sh", "-c", fmt.Sprintf(
			"echo hello | socat -T2 - TCP4:%s:%d,connect-timeout=1", InternetAddr, port))
		select {
		case <-p.Done():
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
		return p
	}
	if p := socat(443); p.ExitCode() != 0 || p.Stdout() != "hello\n" {
		t.Errorf("socat to :443 from the LAN host: exit %d, stdout %q, stderr %q", p.ExitCode(), p.Stdout(), p.Stderr())
	}
	if p := socat(22); p.ExitCode() == 0 {
		t.Errorf("socat to :22 from the LAN host passed the firewall: stdout %q", p.Stdout())
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// serveEcho echoes every connection ln accepts until the test ends, and
// sends the peer address of each on the channel it returns (buffered; late
// ones are dropped).
func serveEcho(t *testing.T, ln net.Listener) <-chan netip.AddrPort {
	peers := make(chan netip.AddrPort, 16)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			select {
			case peers <- c.RemoteAddr().(*net.TCPAddr).AddrPort():
			default:
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return peers
}

// echoOnce connects from namespace ns to addr within 1 s and checks that a
// message comes back.
func echoOnce(ctx context.Context, ns string, addr netip.AddrPort) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	c, err := Dial(ctx, ns, "tcp4", addr.String())
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	msg := []byte("through the firewall")
	if _, err := c.Write(msg); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != string(msg) {
		return fmt.Errorf("echo %q, want %q", buf, msg)
	}
	return nil
}

// udpEcho sends 3 datagrams from namespace ns to addr, 300 ms apart, and
// returns nil once one comes back.
func udpEcho(ctx context.Context, ns string, addr netip.AddrPort) error {
	c, err := Dial(ctx, ns, "udp4", addr.String())
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 64)
	var last error
	for range 3 {
		if _, err := c.Write([]byte("ping")); err != nil {
			last = err
			time.Sleep(300 * time.Millisecond)
			continue
		}
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, err := c.Read(buf)
		if err == nil && string(buf[:n]) == "ping" {
			return nil
		}
		last = err
	}
	return last
}
