//go:build linux

package webtest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/user"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/natlab"
)

// TestSquidBehindFirewall is the office whose firewall lets out only the
// proxy's port: squid runs on the lab's internet host (at 11.22.33.2:3128,
// or at :443, below 1024, where squid as the proxy user needs the
// capability webtest gives it), and curl on the LAN host reaches an HTTPS
// server on the internet host through squid's CONNECT, but not directly;
// squid, running as the proxy user, sees the router's address and refuses
// CONNECT to another port.
func TestSquidBehindFirewall(t *testing.T) {
	Need(t, "squid", "curl")
	for _, tc := range []struct{ proxy, https uint16 }{{3128, 443}, {443, 8443}} {
		t.Run(fmt.Sprintf("proxy on %d", tc.proxy), func(t *testing.T) {
			t.Parallel()
			lab := natlab.NewFirewall(t, natlab.FirewallConfig{AllowTCP: []uint16{tc.proxy}})
			ctx := testContext(t)
			cert := Cert(t, natlab.InternetAddr.String())
			https := netip.AddrPortFrom(natlab.InternetAddr, tc.https)
			ln, err := natlab.Listen(lab.Internet, "tcp4", https.String())
			if err != nil {
				t.Fatal(err)
			}
			serveHTTPSListener(t, ln, cert)
			s := StartSquid(t, SquidConfig{
				Listen:            netip.AddrPortFrom(natlab.InternetAddr, tc.proxy),
				AllowConnectPorts: []uint16{tc.https},
				Namespace:         lab.Internet,
			})
			if u, err := user.Lookup("proxy"); err == nil && os.Geteuid() == 0 {
				if status := readFile(fmt.Sprintf("/proc/%d/status", s.Pid)); !strings.Contains(status, "\nUid:\t"+u.Uid+"\t") {
					t.Errorf("squid (pid %d) does not run as proxy (uid %s):\n%s", s.Pid, u.Uid, status)
				}
			}

			curl := func(args ...string) (string, error) {
				return lab.Output(ctx, lab.LAN, "curl", append([]string{"-sS", "--connect-timeout", "1", "--max-time", "10"}, args...)...)
			}
			target := "https://" + https.String() + "/hello"
			if out, err := curl("--proxy", s.URL(), "--cacert", cert.CertFile, target); err != nil || out != "hello from HTTPS\n" {
				t.Errorf("curl through squid from the LAN host: %v: %q", err, out)
			}
			if out, err := curl("--cacert", cert.CertFile, target); err == nil {
				t.Errorf("curl from the LAN host straight to %s passed the firewall: %q", target, out)
			}
			if out, err := curl("-p", "--proxy", s.URL(), "http://"+natlab.InternetAddr.String()+":22/"); err == nil || !strings.Contains(out, "403") {
				t.Errorf("curl -p through squid to port 22: %v: %q, want a 403", err, out)
			}
			if _, err := s.WaitAccessLog(ctx, ` `+natlab.WANAddr.String()+` TCP_TUNNEL/200 .* CONNECT `+https.String()+` `); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestNginxBehindFirewall is the network that lets out only HTTPS: nginx
// runs on the lab's internet host at 11.22.33.2:443 with its upstream on
// that host's loopback, and a Go client on the LAN host upgrades /ssh
// through it and sends bytes both ways; the upstream sees the router's
// address in X-Forwarded-For.
func TestNginxBehindFirewall(t *testing.T) {
	Need(t, "nginx")
	lab := natlab.NewFirewall(t, natlab.FirewallConfig{AllowTCP: []uint16{443}})
	ctx := testContext(t)
	ln, err := natlab.Listen(lab.Internet, "tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up := serveUpgradeListener(t, ln)
	n := StartNginx(t, NginxConfig{
		Listen:    netip.AddrPortFrom(natlab.InternetAddr, 443),
		Upstream:  up.addr,
		Namespace: lab.Internet,
	})
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	raw, err := natlab.Dial(dctx, lab.LAN, "tcp4", n.Addr.String())
	if err != nil {
		t.Fatalf("from the LAN host to nginx at %s: %v", n.Addr, err)
	}
	conn, resp := upgradeConn(t, raw, natlab.InternetAddr.String(), n.Cert, "/ssh")
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("GET /ssh with Upgrade through nginx: %s, want 101", resp.Status)
	}
	if xff := (<-up.requests).Header.Get("X-Forwarded-For"); xff != natlab.WANAddr.String() {
		t.Errorf("the upstream got X-Forwarded-For %q, want the router's %s", xff, natlab.WANAddr)
	}
	if err := echoRoundTrip(conn, 1<<20); err != nil {
		t.Fatalf("from the LAN host through nginx: %v", err)
	}
}

// serveHTTPSListener is serveHTTPS on ln.
func serveHTTPSListener(t *testing.T, ln net.Listener, cert *Certificate) {
	srv := newHTTPS(cert)
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
}
