package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/ssh"
	"github.com/pinhole-dev/pinhole/internal/webtest"
)

// valGate is a loopback port that Pebble validates against: it carries each
// connection on to the server under test, or, shut, closes it at once
// (a challenge type that cannot succeed). The server's port is known only
// after Pebble, which needs the port in its config, has started.
type valGate struct {
	ln       net.Listener
	open     bool
	target   atomic.Value // string: host:port
	accepted atomic.Int32
	wg       sync.WaitGroup
}

func newValGate(t *testing.T, open bool) *valGate {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &valGate{ln: ln, open: open}
	g.wg.Add(1)
	go g.serve()
	t.Cleanup(func() { ln.Close(); g.wg.Wait() })
	return g
}

func (g *valGate) port() uint16 { return uint16(g.ln.Addr().(*net.TCPAddr).Port) }

func (g *valGate) serve() {
	defer g.wg.Done()
	for {
		c, err := g.ln.Accept()
		if err != nil {
			return
		}
		g.accepted.Add(1)
		target, _ := g.target.Load().(string)
		if !g.open || target == "" {
			c.Close()
			continue
		}
		g.wg.Add(1)
		go func() {
			defer g.wg.Done()
			defer c.Close()
			s, err := net.DialTimeout("tcp", target, 5*time.Second)
			if err != nil {
				return
			}
			defer s.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			s.SetDeadline(time.Now().Add(30 * time.Second))
			done := make(chan struct{})
			go func() { io.Copy(s, c); s.(*net.TCPConn).CloseWrite(); close(done) }()
			io.Copy(c, s)
			<-done
		}()
	}
}

// acmeLab is pinhole server --acme --domain example.test against a real
// Pebble, with a pinhole connect holding names.
type acmeLab struct {
	pb                *webtest.Pebble
	srv               *proc
	port              string
	dir               string
	identity          string
	service           int
	httpGate, tlsGate *valGate
}

type acmeLabConfig struct {
	http01, tlsALPN bool          // whether that challenge type can succeed
	validity        time.Duration // of Pebble's certificates; 0: its default
	args            []string      // more flags for the server
}

func newACMELab(t *testing.T, cfg acmeLabConfig) *acmeLab {
	t.Helper()
	webtest.Need(t, "pebble", "pebble-challtestsrv", "curl")
	l := &acmeLab{dir: t.TempDir(), httpGate: newValGate(t, cfg.http01), tlsGate: newValGate(t, cfg.tlsALPN)}
	l.pb = webtest.StartPebble(t, webtest.PebbleConfig{HTTPPort: l.httpGate.port(), TLSPort: l.tlsGate.port(), Validity: cfg.validity})
	var pub ssh.PublicKey
	l.identity, pub = writeKey(t, l.dir, "id_ed25519")
	authKeys := filepath.Join(l.dir, "authorized_keys")
	// Any name, and one custom domain.
	if err := os.WriteFile(authKeys, append([]byte(`permitlisten="*:80",permitlisten="shop.example.org:80" `), ssh.MarshalAuthorizedKey(pub)...), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"server", "--listen", "127.0.0.1:0", "--host-key", filepath.Join(l.dir, "host_key"), "--authorized-keys", authKeys,
		"--domain", "example.test", "--acme", "--acme-directory", l.pb.Directory, "--acme-ca", l.pb.CAFile, "--acme-email", "ops@example.test"}
	l.srv = start(t, append(args, cfg.args...)...)
	addr := l.srv.waitLine(t, `listening on (\S+)`)[1]
	_, l.port, _ = net.SplitHostPort(addr)
	l.httpGate.target.Store(addr)
	l.tlsGate.target.Store(addr)
	l.service = headerEcho(t)
	return l
}

// connect holds names with one pinhole connect and waits until each has
// its URL.
func (l *acmeLab) connect(t *testing.T, names ...string) {
	t.Helper()
	args := []string{"connect", "-F", "none", "-i", l.identity, "--known-hosts", filepath.Join(l.dir, "known_hosts"), "-p", l.port}
	for _, n := range names {
		args = append(args, "-R", fmt.Sprintf("%s:80:127.0.0.1:%d", n, l.service))
	}
	c := start(t, append(args, "tester@127.0.0.1")...)
	for _, n := range names {
		host := n
		if !strings.Contains(n, ".") {
			host += ".example.test"
		}
		c.waitLine(t, `-R `+regexp.QuoteMeta(n)+`:80:\S+: https://`+regexp.QuoteMeta(host)+`:`)
	}
}

// waitLog waits until the server's log holds what, 20 s at most.
func (l *acmeLab) waitLog(t *testing.T, what string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(l.srv.stderr.String(), what) {
		if time.Now().After(deadline) {
			t.Fatalf("the server did not log %q within 20 s:\n%s", what, l.srv.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// curlACME is curl https://HOST:PORT/ checked against
// Pebble's root, until it answers 200 (20 s at most: the first
// handshake may wait for the certificate).
func (l *acmeLab) curlACME(t *testing.T, host string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := exec.Command("curl", "-sS", "--max-time", "10", "--resolve", host+":"+l.port+":127.0.0.1", "--cacert", l.pb.RootFile,
			"https://"+host+":"+l.port+"/").CombinedOutput()
		if err == nil {
			return string(out)
		}
		if time.Now().After(deadline) {
			t.Fatalf("curl https://%s:%s/ with Pebble's root: %v\n%s\nserver:\n%s", host, l.port, err, out, l.srv.stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// served is the leaf certificate the server presents for name.
func (l *acmeLab) served(t *testing.T, name string) *x509.Certificate {
	t.Helper()
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: &tls.Config{ServerName: name, InsecureSkipVerify: true}}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", "127.0.0.1:"+l.port)
	if err != nil {
		t.Fatalf("TLS to %s: %v", name, err)
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState().PeerCertificates[0]
}

// fromPebble checks that leaf chains to Pebble's root for name.
func (l *acmeLab) fromPebble(t *testing.T, leaf *x509.Certificate, name string) {
	t.Helper()
	// Through a handshake: the server sends Pebble's intermediate after
	// the leaf.
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: &tls.Config{ServerName: name, RootCAs: l.pb.RootPool}}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", "127.0.0.1:"+l.port)
	if err != nil {
		t.Fatalf("%s's certificate (serial %x) does not check against Pebble's root: %v", name, leaf.SerialNumber, err)
	}
	c.Close()
}

// TestACMEIssuance: with --acme, a name gets a certificate Pebble
// issued, by TLS-ALPN-01 (tried first) or, when that cannot succeed, by
// HTTP-01 on the plain-HTTP side of the same port; curl checks it against
// Pebble's root and gets the service's answer. It is cached in the state
// directory, and a tunnel's own /.well-known/acme-challenge/ paths stay
// the tunnel's.
func TestACMEIssuance(t *testing.T) {
	for _, tc := range []struct {
		name            string
		http01, tlsALPN bool
	}{
		{"tls-alpn-01", false, true},
		{"http-01", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newACMELab(t, acmeLabConfig{http01: tc.http01, tlsALPN: tc.tlsALPN})
			l.connect(t, "myapp", "shop.example.org")
			body := l.curlACME(t, "myapp.example.test")
			if want := "host=myapp.example.test:" + l.port + " xff=127.0.0.1 proto=https path=/"; strings.TrimSpace(body) != want {
				t.Errorf("curl: %q, want %q", body, want)
			}
			l.waitLog(t, `msg="certificate obtained" name=myapp.example.test`)
			if _, err := os.Stat(filepath.Join(l.dir, "acme", "myapp.example.test")); err != nil {
				t.Errorf("the certificate is not cached beside the host key: %v", err)
			}
			// Which challenge worked: the valGate of the other type only ever
			// closed connections.
			switch {
			case tc.http01 && (l.tlsGate.accepted.Load() == 0 || l.httpGate.accepted.Load() == 0):
				t.Errorf("HTTP-01: Pebble connected %d times for TLS-ALPN-01 (want ≥1, tried first and failed) and %d for HTTP-01 (want ≥1)",
					l.tlsGate.accepted.Load(), l.httpGate.accepted.Load())
			case tc.tlsALPN && (l.tlsGate.accepted.Load() == 0 || l.httpGate.accepted.Load() != 0):
				t.Errorf("TLS-ALPN-01: Pebble connected %d times for TLS-ALPN-01 (want ≥1) and %d for HTTP-01 (want 0)",
					l.tlsGate.accepted.Load(), l.httpGate.accepted.Load())
			}
			// A custom domain with a tunnel gets its own.
			if body := l.curlACME(t, "shop.example.org"); !strings.Contains(body, "host=shop.example.org:"+l.port) {
				t.Errorf("https://shop.example.org/: %q, want the service's answer", body)
			}
			// The domain itself gets one too: wss://example.test/ssh
			// needs no pin.
			if body := l.curlACME(t, "example.test"); !strings.Contains(body, "Not found") {
				t.Errorf("https://example.test/: %q, want the server's own 404 page", body)
			}
			code, body := curlGet(t, "http://myapp.example.test/.well-known/acme-challenge/mine", l.port, l.pb.RootFile)
			if code != "200" || !strings.Contains(body, "path=/.well-known/acme-challenge/mine") {
				t.Errorf("a tunnel's own challenge path: %s %q, want the service's answer", code, body)
			}
		})
	}
}

// TestACMERenewal: a certificate valid for a few seconds is renewed a
// third of its lifetime before it ends: a new serial is served, checked
// against Pebble's root, and cached.
func TestACMERenewal(t *testing.T) {
	l := newACMELab(t, acmeLabConfig{tlsALPN: true, validity: 6 * time.Second})
	l.connect(t, "renew")
	l.curlACME(t, "renew.example.test")
	first := l.served(t, "renew.example.test")
	deadline := time.Now().Add(20 * time.Second)
	for {
		next := l.served(t, "renew.example.test")
		if next.SerialNumber.Cmp(first.SerialNumber) != 0 {
			if !next.NotAfter.After(first.NotAfter) {
				t.Errorf("the renewed certificate ends %v, not after the first's %v", next.NotAfter, first.NotAfter)
			}
			l.fromPebble(t, next, "renew.example.test")
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still serial %x (not after %v) after 20 s:\n%s", first.SerialNumber, first.NotAfter, l.srv.stderr)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n := strings.Count(l.srv.stderr.String(), `msg="certificate obtained" name=renew.example.test`); n < 2 {
		t.Errorf("%d lines of a certificate obtained for renew.example.test, want 2 or more", n)
	}
}

// TestACMEOnlyTunnelNames: a name whose validation fails gets a log line
// naming it, the reason and what to check, and is served with the
// fallback certificate while another name gets its certificate; a Host
// with no tunnel, over TLS or HTTP-01's path, never makes the server ask
// Pebble for anything.
func TestACMEOnlyTunnelNames(t *testing.T) {
	l := newACMELab(t, acmeLabConfig{http01: true, tlsALPN: true})
	// Pebble's DNS sends bad.example.test's validation where nothing
	// listens.
	l.pb.AddA(t, "bad.example.test", netip.MustParseAddr("127.0.0.2"))
	l.connect(t, "good", "bad")
	l.waitLog(t, `name=bad.example.test`)
	log := l.srv.stderr.String()
	for _, want := range []string{`msg="no certificate from ACME`, `name=bad.example.test`, `ca_said="http-01: `, `dial tcp 127.0.0.2:`, `; tls-alpn-01: `, `DNS (A/AAAA records) points at this server`, `ports 443 (TLS-ALPN-01) and 80 (HTTP-01)`} {
		if !strings.Contains(log, want) {
			t.Errorf("the failure's log line lacks %q:\n%s", want, log)
		}
	}
	if body := l.curlACME(t, "good.example.test"); !strings.Contains(body, "host=good.example.test") {
		t.Errorf("good: %q", body)
	}
	// bad still serves, over the fallback (self-signed) certificate.
	code, body := curlGet(t, "https://bad.example.test/", l.port, l.pb.RootFile, "-k")
	if code != "200" || !strings.Contains(body, "host=bad.example.test") {
		t.Errorf("bad, without a certificate from Pebble: %s %q", code, body)
	}
	if leaf := l.served(t, "bad.example.test"); leaf.Issuer.String() != leaf.Subject.String() {
		t.Errorf("bad is served a certificate from %s, want the self-signed fallback", leaf.Issuer)
	}

	orders := l.pb.Orders()
	if orders == 0 {
		t.Fatalf("no order counted in Pebble's log; the count below would prove nothing:\n%s", l.pb.Log())
	}
	for _, host := range []string{"random.example.test", "example.test.evil", "deep.random.example.test"} {
		if leaf := l.served(t, host); leaf.Issuer.String() != leaf.Subject.String() {
			t.Errorf("%s (no tunnel) is served a certificate from %s, want the self-signed fallback", host, leaf.Issuer)
		}
		code, body := curlGet(t, "http://"+host+"/.well-known/acme-challenge/token", l.port, l.pb.RootFile)
		if code != "404" {
			t.Errorf("http://%s/.well-known/acme-challenge/token: %s %q, want 404", host, code, body)
		}
	}
	time.Sleep(300 * time.Millisecond) // an order would be under way by now
	if n := l.pb.Orders(); n != orders {
		t.Errorf("Pebble got %d orders after handshakes for names without a tunnel, want none:\n%s", n-orders, l.pb.Log())
	}
	for _, host := range []string{"random.example.test", "deep.random.example.test"} {
		if _, err := os.Stat(filepath.Join(l.dir, "acme", host)); err == nil {
			t.Errorf("a certificate for %s is cached", host)
		}
	}
}

// TestACMEWithFile: with --tls-cert as well, the file's certificate
// serves the names it covers and ACME is never asked for them; ACME serves
// the others.
func TestACMEWithFile(t *testing.T) {
	file := webtest.Cert(t, "static.example.test")
	l := newACMELab(t, acmeLabConfig{tlsALPN: true, args: []string{"--tls-cert", file.CertFile, "--tls-key", file.KeyFile}})
	l.connect(t, "static", "myapp")
	l.curlACME(t, "myapp.example.test")
	code, body := curlGet(t, "https://static.example.test/", l.port, file.CertFile)
	if code != "200" || !strings.Contains(body, "host=static.example.test") {
		t.Errorf("static, checked against the file's certificate: %s %q", code, body)
	}
	if leaf := l.served(t, "static.example.test"); !leaf.Equal(file.Leaf) {
		t.Errorf("static is served %s's certificate, want the file's", leaf.Issuer)
	}
	if n := l.pb.Orders(); n != 1 {
		t.Errorf("Pebble got %d orders, want 1 (myapp's):\n%s", n, l.pb.Log())
	}
	if _, err := os.Stat(filepath.Join(l.dir, "acme", "static.example.test")); err == nil {
		t.Error("a certificate for static.example.test is cached")
	}
}

// TestACMEFlags: --acme needs --domain, and the other acme flags need
// --acme.
func TestACMEFlags(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--acme"}, "--acme needs --domain"},
		{[]string{"--acme-email", "a@example.test"}, "go with --acme"},
		{[]string{"--acme", "--domain", "example.test", "--acme-directory", "http://127.0.0.1:1/dir"}, "want the https:// URL of an ACME directory"},
	} {
		args := append([]string{"server", "--listen", "127.0.0.1:0", "--host-key", filepath.Join(dir, "host_key"), "--authorized-keys", filepath.Join(dir, "ak")}, tc.args...)
		code, _, stderr := run(t, args...)
		if code == 0 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want an error saying %q", tc.args, code, stderr, tc.want)
		}
	}
	// The file is checked for the same, at its line.
	file := filepath.Join(dir, "server.toml")
	if err := os.WriteFile(file, []byte("listen = [\"127.0.0.1:0\"]\nhost-key = \"host_key\"\nauthorized-keys = \"ak\"\nacme = true\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := run(t, "server", "-c", file); code == 0 || !strings.Contains(stderr, "acme needs domain: add domain = ") {
		t.Errorf("acme = true without domain: exit %d, stderr %q", code, stderr)
	}
}
