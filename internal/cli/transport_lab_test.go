package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/proxy"

	"github.com/pinhole-dev/pinhole/internal/natlab"
	"github.com/pinhole-dev/pinhole/internal/ssh"
	"github.com/pinhole-dev/pinhole/internal/sshtest"
	"github.com/pinhole-dev/pinhole/internal/streamtest"
	"github.com/pinhole-dev/pinhole/internal/webtest"
)

// A firewall lab (natlab.NewFirewall): pinhole connect on the LAN host,
// pinhole server on the internet host at 11.22.33.2, and a router
// between that lets out only the TCP ports a case names.
const (
	labTarget   = 7000 // a streamtest target on the internet host, for -L and -D
	labLANEcho  = 7001 // one on the LAN host's loopback, for -R
	labSSHLocal = 40022
)

var labServer = netip.AddrPortFrom(natlab.InternetAddr, 443)

// firewallRig is one lab with a server and the targets.
type firewallRig struct {
	lab         *natlab.Lab
	bin, dir    string
	identity    string
	key         *sshtest.Key // the same key, for stock ssh
	fingerprint string       // the server's TLS certificate
	hostKey     string       // the server's host key line, "ssh-ed25519 AAAA..."
}

func newFirewallRig(t *testing.T, bin string, allow ...uint16) *firewallRig {
	t.Helper()
	lab := natlab.NewFirewall(t, natlab.FirewallConfig{AllowTCP: allow, Reject: true})
	r := &firewallRig{lab: lab, bin: bin, dir: t.TempDir()}
	r.key = sshtest.NewKey(t, r.dir, "id_ed25519")
	r.identity = r.key.PrivateFile
	authKeys := filepath.Join(r.dir, "authorized_keys")
	if err := os.WriteFile(authKeys, []byte(r.key.AuthorizedLine), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []struct {
		name string
		addr string
	}{{lab.Internet, netip.AddrPortFrom(natlab.InternetAddr, labTarget).String()}, {lab.LAN, fmt.Sprintf("127.0.0.1:%d", labLANEcho)}} {
		ln, err := natlab.Listen(ns.name, "tcp4", ns.addr)
		if err != nil {
			t.Fatal(err)
		}
		streamtest.NewTargetListener(t, ln)
	}
	srv := lab.Start(t, lab.Internet, bin, "server", "--listen", labServer.String(), "--listen", netip.AddrPortFrom(natlab.InternetAddr, 22).String(),
		"--host-key", filepath.Join(r.dir, "host_key"), "--authorized-keys", authKeys, "--keepalive", "1s")
	ctx := labContext(t)
	m, err := srv.WaitStdout(ctx, `TLS certificate (SHA256:[A-Za-z0-9+/]+)`)
	if err != nil {
		t.Fatalf("pinhole server: %v\n%s", err, srv.Stderr())
	}
	r.fingerprint = m[1]
	pub, err := os.ReadFile(filepath.Join(r.dir, "host_key"))
	if err != nil {
		t.Fatal(err)
	}
	r.hostKey = strings.TrimSpace(hostKeyLineOf(t, pub))
	return r
}

// blocked checks that the firewall stops a TCP connection from the LAN
// to addr.
func (r *firewallRig) blocked(t *testing.T, addr netip.AddrPort) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if c, err := natlab.Dial(ctx, r.lab.LAN, "tcp4", addr.String()); err == nil {
		c.Close()
		t.Fatalf("the LAN reached %s: the firewall should stop it", addr)
	}
}

// labExchange runs a checksummed exchange from namespace ns to addr.
func labExchange(t *testing.T, ns, addr string, seed uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A listener that has just said it listens (stock ssh's -L) refused
	// a first dial now and then (1 in 7 runs): try again for a moment,
	// bounded, and say so.
	var conn net.Conn
	var err error
	for try := 0; try < 20; try++ {
		if conn, err = natlab.Dial(ctx, ns, "tcp4", addr); err == nil || !errors.Is(err, syscall.ECONNREFUSED) {
			if try > 0 && err == nil {
				t.Logf("from %s to %s: connected at try %d", ns, addr, try+1)
			}
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("from %s to %s: %v", ns, addr, err)
	}
	defer conn.Close()
	if err := streamtest.Exchange(ctx, conn, seed, 1<<20, 2<<20); err != nil {
		t.Fatalf("from %s through %s: %v", ns, addr, err)
	}
}

// nsDialer dials from inside a namespace, for x/net/proxy's SOCKS5
// client.
type nsDialer string

func (ns nsDialer) Dial(network, addr string) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return natlab.Dial(ctx, string(ns), network, addr)
}

// forwards runs pinhole connect on the LAN host to url with extra flags,
// and checks that -L, -R and -D each carry a checksummed exchange.
func (r *firewallRig) forwards(t *testing.T, seed uint64, url string, extra ...string) {
	t.Helper()
	args := append([]string{"connect", "-F", "none", "-i", r.identity, "--known-hosts", filepath.Join(r.dir, "known_hosts"),
		"--tls-fingerprint", r.fingerprint, "--keepalive", "1s",
		"-L", fmt.Sprintf("127.0.0.1:0:%s:%d", natlab.InternetAddr, labTarget),
		"-R", fmt.Sprintf("0:127.0.0.1:%d", labLANEcho),
		"-D", "127.0.0.1:0"}, extra...)
	c := r.lab.Start(t, r.lab.LAN, r.bin, append(args, url)...)
	ctx := labContext(t)
	wait := func(re string) string {
		m, err := c.WaitStdout(ctx, re)
		if err != nil {
			t.Fatalf("pinhole connect %s: %v\nstdout:\n%s\nstderr:\n%s", url, err, c.Stdout(), c.Stderr())
		}
		return m[1]
	}
	local := wait(`-L \S+: listening on (\S+),`)
	remote := wait(`-R \S+: the server listens on \S+:(\d+),`)
	socks := wait(`-D \S+: SOCKS4/4a/5 and HTTP proxy on (\S+),`)
	labExchange(t, r.lab.LAN, local, seed)
	labExchange(t, r.lab.Internet, "127.0.0.1:"+remote, seed+1)
	d, err := proxy.SOCKS5("tcp", socks, nil, nsDialer(r.lab.LAN))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := d.Dial("tcp", netip.AddrPortFrom(natlab.InternetAddr, labTarget).String())
	if err != nil {
		t.Fatalf("-D: %v", err)
	}
	defer conn.Close()
	if err := streamtest.Exchange(ctx, conn, seed+2, 1<<20, 2<<20); err != nil {
		t.Fatalf("-D: %v", err)
	}
	c.Terminate(5 * time.Second)
}

// TestFirewallOnly443: where the firewall lets out only TCP 443, raw SSH
// to port 22 does not get out, and -L, -R and -D work over tls:// and
// wss:// to port 443.
func TestFirewallOnly443(t *testing.T) {
	natlab.Need(t)
	r := newFirewallRig(t, buildPinhole(t), 443)
	r.blocked(t, netip.AddrPortFrom(natlab.InternetAddr, 22))
	for i, url := range []string{"wss://tester@11.22.33.2/ssh", "tls://tester@11.22.33.2", "ssh://tester@11.22.33.2:443"} {
		t.Run(strings.SplitN(url, ":", 2)[0], func(t *testing.T) { r.forwards(t, uint64(10*i), url) })
	}
}

// TestFirewallOnlyProxy: where the firewall lets out only the office
// proxy's port, and the proxy (squid) allows CONNECT to 443 only,
// pinhole connect and stock ssh (through pinhole stdio) get through, and
// a raw SSH connection to port 22 through the proxy is refused by squid.
func TestFirewallOnlyProxy(t *testing.T) {
	natlab.Need(t)
	webtest.Need(t, "squid")
	sshtest.Need(t, sshtest.SSHPath)
	r := newFirewallRig(t, buildPinhole(t), 3128)
	squid := webtest.StartSquid(t, webtest.SquidConfig{
		Listen:            netip.AddrPortFrom(natlab.InternetAddr, 3128),
		AllowConnectPorts: []uint16{443},
		Namespace:         r.lab.Internet,
	})
	r.blocked(t, labServer)
	r.blocked(t, netip.AddrPortFrom(natlab.InternetAddr, 22))
	proxyURL := squid.URL()
	for i, url := range []string{"wss://tester@11.22.33.2/ssh", "tls://tester@11.22.33.2"} {
		t.Run(strings.SplitN(url, ":", 2)[0], func(t *testing.T) { r.forwards(t, uint64(100+10*i), url, "--proxy", proxyURL) })
	}

	t.Run("stock ssh", func(t *testing.T) {
		known := filepath.Join(r.dir, "known_hosts_ssh")
		if err := os.WriteFile(known, []byte("pinhole-lab "+r.hostKey+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		args, err := sshtest.SSHOptions{
			Addr: "pinhole-lab:22",
			User: "tester",
			Key:  r.key,
			Args: []string{
				"-o", fmt.Sprintf("ProxyCommand=%s stdio --proxy %s --tls-fingerprint %s wss://11.22.33.2/ssh", r.bin, proxyURL, r.fingerprint),
				"-L", fmt.Sprintf("127.0.0.1:%d:%s:%d", labSSHLocal, natlab.InternetAddr, labTarget),
			},
		}.CommandArgs(known)
		if err != nil {
			t.Fatal(err)
		}
		p := r.lab.Start(t, r.lab.LAN, sshtest.SSHPath, append([]string{"-v"}, args...)...)
		ctx := labContext(t)
		if _, err := p.WaitStderr(ctx, `Local forwarding listening on 127\.0\.0\.1 port`); err != nil {
			t.Fatalf("ssh: %v\n%s", err, p.Stderr())
		}
		labExchange(t, r.lab.LAN, fmt.Sprintf("127.0.0.1:%d", labSSHLocal), 200)
		p.Terminate(5 * time.Second)
		if _, err := squid.WaitAccessLog(ctx, `TCP_TUNNEL/200 .* CONNECT 11\.22\.33\.2:443`); err != nil {
			t.Errorf("squid's access.log has no CONNECT to 11.22.33.2:443: %v\n%s", err, squid.AccessLog())
		}
	})

	t.Run("raw SSH to 22 refused", func(t *testing.T) {
		ctx := labContext(t)
		p := r.lab.Start(t, r.lab.LAN, r.bin, "stdio", "--proxy", proxyURL, "ssh://11.22.33.2:22")
		select {
		case <-p.Done():
		case <-ctx.Done():
			t.Fatal("pinhole stdio did not give up")
		}
		if p.ExitCode() == 0 || !strings.Contains(p.Stderr(), "403") {
			t.Errorf("pinhole stdio through squid to port 22: exit %d, stderr:\n%s\nwant a failure naming squid's 403", p.ExitCode(), p.Stderr())
		}
		if _, err := squid.WaitAccessLog(ctx, `TCP_DENIED/403 .* CONNECT 11\.22\.33\.2:22`); err != nil {
			t.Errorf("squid's access.log has no refused CONNECT to port 22: %v\n%s", err, squid.AccessLog())
		}
	})
}

// TestBehindNginx: nginx ends TLS in front of a ws:// listener, as users
// deploy it; pinhole connect gets through with wss://, checking nginx's
// certificate by --tls-ca, and with --trusted-proxy the server sees the
// client's own address (127.0.0.2, from -b) from X-Forwarded-For.
func TestBehindNginx(t *testing.T) {
	webtest.Need(t, "nginx")
	dir := t.TempDir()
	identity, pub := writeKey(t, dir, "id_ed25519")
	authKeys := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authKeys, ssh.MarshalAuthorizedKey(pub), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := start(t, "server", "--listen", "127.0.0.1:0", "--host-key", filepath.Join(dir, "host_key"), "--authorized-keys", authKeys, "--trusted-proxy", "127.0.0.1")
	upstream := netip.MustParseAddrPort(srv.waitLine(t, `listening on (\S+)`)[1])
	cert := webtest.Cert(t, "localhost", "127.0.0.1")
	ngx := webtest.StartNginx(t, webtest.NginxConfig{CertFile: cert.CertFile, KeyFile: cert.KeyFile, Upstream: upstream, Path: "/ssh"})
	target := streamtest.NewTarget(t)
	c := start(t, "connect", "-F", "none", "-i", identity, "--known-hosts", filepath.Join(dir, "known_hosts"), "--tls-ca", cert.CertFile, "-b", "127.0.0.2",
		"-L", fmt.Sprintf("127.0.0.1:0:127.0.0.1:%d", target.Port()), fmt.Sprintf("wss://tester@localhost:%d/ssh", ngx.Addr.Port()))
	exchange(t, c.waitLine(t, `-L \S+: listening on (\S+),`)[1], 400)
	if s := srv.stderr.String(); !strings.Contains(s, `msg="client connected" peer=127.0.0.2:0`) {
		t.Errorf("the server's log does not show the client's own address 127.0.0.2 from X-Forwarded-For:\n%s", s)
	}
	// nginx writes a request's line when it ends: for an upgrade, when
	// the tunnel closes.
	c.cancel()
	code := <-c.code
	c.code <- code // for start's cleanup
	ctx := labContext(t)
	if _, err := ngx.WaitAccessLog(ctx, `"GET /ssh HTTP/1.1" 101`); err != nil {
		t.Errorf("nginx's access.log has no upgrade of /ssh: %v\n%s", err, ngx.AccessLog())
	}
}
