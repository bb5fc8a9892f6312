package cli

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/socks"
	"github.com/pinhole-dev/pinhole/internal/ssh"
	"github.com/pinhole-dev/pinhole/internal/sshtest"
	"github.com/pinhole-dev/pinhole/internal/streamtest"
	"github.com/pinhole-dev/pinhole/internal/transport"
)

// tlsWorld is a pinhole server on one port for every transport, with its
// self-signed certificate's fingerprint.
type tlsWorld struct {
	*world
	port        string
	fingerprint string
	certFile    string // the self-signed certificate and key, PEM
}

func newTLSWorld(t *testing.T, extra ...string) *tlsWorld {
	t.Helper()
	dir := t.TempDir()
	identity, pub := writeKey(t, dir, "id_ed25519")
	authKeys := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authKeys, ssh.MarshalAuthorizedKey(pub), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"server", "--listen", "127.0.0.1:0", "--host-key", filepath.Join(dir, "host_key"), "--authorized-keys", authKeys}, extra...)
	srv := start(t, args...)
	addr := srv.waitLine(t, `listening on (\S+)`)[1]
	fp := srv.waitLine(t, `TLS certificate (SHA256:\S+)`)[1]
	_, port, _ := net.SplitHostPort(addr)
	w := &world{dir: dir, addr: addr, identity: identity, known: filepath.Join(dir, "known_hosts"), server: srv}
	return &tlsWorld{world: w, port: port, fingerprint: strings.TrimSuffix(fp, ","), certFile: filepath.Join(dir, transport.SelfSignedFile)}
}

// exchange checks that a checksummed exchange crosses the forward at addr
// to target.
func exchange(t *testing.T, addr string, seed uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := streamtest.Exchange(ctx, conn, seed, 1<<20, 4<<20); err != nil {
		t.Fatalf("through %s: %v", addr, err)
	}
}

// TestConnectTransports: pinhole connect reaches one server port over raw
// SSH, TLS and WebSocket (plain and in TLS), -L and -R carry checksummed
// data over each, and known_hosts names the server the same way for all
// of them, as OpenSSH names host and port.
func TestConnectTransports(t *testing.T) {
	w := newTLSWorld(t)
	target := streamtest.NewTarget(t)
	for i, url := range []string{
		"ssh://tester@127.0.0.1:" + w.port,
		"tls://tester@127.0.0.1:" + w.port,
		"ws://tester@127.0.0.1:" + w.port + "/ssh",
		"wss://tester@127.0.0.1:" + w.port + "/ssh",
	} {
		t.Run(strings.SplitN(url, ":", 2)[0], func(t *testing.T) {
			c := start(t, "connect", "-F", "none", "-i", w.identity, "--known-hosts", w.known, "--tls-fingerprint", w.fingerprint,
				"-L", fmt.Sprintf("127.0.0.1:0:127.0.0.1:%d", target.Port()), "-R", fmt.Sprintf("0:127.0.0.1:%d", target.Port()), url)
			local := c.waitLine(t, `-L \S+: listening on (\S+),`)[1]
			remote := c.waitLine(t, `-R \S+: the server listens on \S+:(\d+),`)[1]
			exchange(t, local, uint64(i))
			exchange(t, net.JoinHostPort("127.0.0.1", remote), uint64(100+i))
		})
	}
	known, err := os.ReadFile(w.known)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(known)), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "[127.0.0.1]:"+w.port+" ssh-ed25519 ") {
		t.Errorf("known_hosts:\n%s\nwant one line for [127.0.0.1]:%s, whatever the transport", known, w.port)
	}
}

// TestConnectTLSTrust: an untrusted certificate stops connect at once
// with what to do, rather than retrying; --tls-ca trusts a certificate
// given with --tls-cert.
func TestConnectTLSTrust(t *testing.T) {
	w := newTLSWorld(t)
	began := time.Now()
	code, _, stderr := run(t, "connect", "-F", "none", "-i", w.identity, "--known-hosts", w.known, "-L", "0:127.0.0.1:9", "wss://tester@127.0.0.1:"+w.port+"/ssh")
	if code != 1 || !strings.Contains(stderr, "--tls-fingerprint") || time.Since(began) > 10*time.Second {
		t.Errorf("no pin: exit %d after %v, stderr:\n%s\nwant exit 1 at once, naming --tls-fingerprint", code, time.Since(began), stderr)
	}
	code, _, stderr = run(t, "connect", "-F", "none", "-i", w.identity, "--known-hosts", w.known, "--tls-fingerprint", "SHA256:"+strings.Repeat("x", 43), "-L", "0:127.0.0.1:9", "tls://tester@127.0.0.1:"+w.port)
	if code != 1 || !strings.Contains(stderr, "not the pinned") {
		t.Errorf("wrong pin: exit %d, stderr:\n%s", code, stderr)
	}

	// The same certificate, now as a file the server is given, and the
	// client trusting it as a CA, by name.
	files := newTLSWorld(t, "--tls-cert", w.certFile, "--tls-key", w.certFile)
	target := streamtest.NewTarget(t)
	c := start(t, "connect", "-F", "none", "-i", files.identity, "--known-hosts", files.known, "--tls-ca", w.certFile,
		"-L", fmt.Sprintf("127.0.0.1:0:127.0.0.1:%d", target.Port()), "tls://tester@localhost:"+files.port)
	exchange(t, c.waitLine(t, `-L \S+: listening on (\S+),`)[1], 7)
}

// hostKeyLine is the server's host key as known_hosts writes it after
// the name: "ssh-ed25519 AAAA...".
func (w *tlsWorld) hostKeyLine(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(w.dir, "host_key"))
	if err != nil {
		t.Fatal(err)
	}
	return hostKeyLineOf(t, data)
}

// hostKeyLineOf is the public half of a private host key file, as
// known_hosts writes it after the name.
func hostKeyLineOf(t *testing.T, private []byte) string {
	t.Helper()
	key, err := ssh.ParsePrivateKey(private)
	if err != nil {
		t.Fatal(err)
	}
	return string(ssh.MarshalAuthorizedKey(key.PublicKey()))
}

// TestStdioOpenSSH: a stock OpenSSH client, with pinhole stdio as its
// ProxyCommand, logs in over WebSocket and over TLS and forwards.
func TestStdioOpenSSH(t *testing.T) {
	sshtest.Need(t, sshtest.SSHPath)
	bin := buildPinhole(t)
	w := newTLSWorld(t)
	key := sshtest.NewKey(t, t.TempDir(), "stock")
	if err := os.WriteFile(filepath.Join(w.dir, "authorized_keys"), []byte(key.AuthorizedLine), 0o600); err != nil {
		t.Fatal(err)
	}
	target := streamtest.NewTarget(t)
	for i, url := range []string{"wss://127.0.0.1:" + w.port + "/ssh", "tls://127.0.0.1:" + w.port} {
		t.Run(strings.SplitN(url, ":", 2)[0], func(t *testing.T) {
			proxy := fmt.Sprintf("%s stdio --tls-fingerprint %s %s", bin, w.fingerprint, url)
			_, port := sshtest.StartSSHForward(t, sshtest.SSHOptions{
				Addr:       "pinhole-server:22",
				User:       "tester",
				Key:        key,
				KnownHosts: "pinhole-server " + w.hostKeyLine(t),
				Args:       []string{"-o", "ProxyCommand=" + proxy},
			}, func(p int) []string {
				return []string{"-L", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:%d", p, target.Port())}
			}, nil)
			exchange(t, fmt.Sprintf("127.0.0.1:%d", port), uint64(200+i))
		})
	}
}

// recordingProxy is a SOCKS5 proxy (pinhole's own, internal/socks) that
// notes each address it is asked to connect to.
type recordingProxy struct {
	addr string
	mu   sync.Mutex
	seen []string
}

func startRecordingProxy(t *testing.T) *recordingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &recordingProxy{addr: ln.Addr().String()}
	s := &socks.Server{Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		p.mu.Lock()
		p.seen = append(p.seen, addr)
		p.mu.Unlock()
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return p
}

func (p *recordingProxy) asked() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.seen)
}

// TestConnectThroughProxy: --proxy, the environment's ALL_PROXY and
// HTTPS_PROXY (for a URL destination), NO_PROXY, --proxy none, and -J,
// where the proxy carries the connection to the first jump host.
func TestConnectThroughProxy(t *testing.T) {
	w := newTLSWorld(t)
	target := streamtest.NewTarget(t)
	fwd := fmt.Sprintf("127.0.0.1:0:127.0.0.1:%d", target.Port())
	server := "127.0.0.1:" + w.port
	base := []string{"connect", "-F", "none", "-i", w.identity, "--known-hosts", w.known, "--tls-fingerprint", w.fingerprint, "-L", fwd}
	for i, tc := range []struct {
		name    string
		env     map[string]string
		args    []string
		dest    string
		viaWant string // what the proxy is asked for; "" means it is not used
	}{
		{"flag", nil, []string{"--proxy", "socks5://PROXY"}, "wss://tester@" + server + "/ssh", server},
		{"ALL_PROXY", map[string]string{"ALL_PROXY": "socks5h://PROXY"}, nil, "tls://tester@" + server, server},
		{"HTTPS_PROXY first", map[string]string{"HTTPS_PROXY": "socks5://PROXY", "ALL_PROXY": "socks5://127.0.0.1:1"}, nil, "wss://tester@" + server + "/ssh", server},
		{"NO_PROXY", map[string]string{"ALL_PROXY": "socks5://127.0.0.1:1", "NO_PROXY": "127.0.0.0/8"}, nil, "tls://tester@" + server, ""},
		{"none", map[string]string{"ALL_PROXY": "socks5://127.0.0.1:1"}, []string{"--proxy", "none"}, "ssh://tester@" + server, ""},
		{"plain host ignores the environment", map[string]string{"ALL_PROXY": "socks5://127.0.0.1:1"}, []string{"-p", w.port}, "tester@127.0.0.1", ""},
		{"jump", nil, []string{"--proxy", "socks5://PROXY", "-J", "tester@" + server}, "tls://tester@localhost:" + w.port, server},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startRecordingProxy(t)
			for k, v := range tc.env {
				t.Setenv(k, strings.ReplaceAll(v, "PROXY", p.addr))
			}
			args := slices.Clone(base)
			for _, a := range tc.args {
				args = append(args, strings.ReplaceAll(a, "PROXY", p.addr))
			}
			c := start(t, append(args, tc.dest)...)
			exchange(t, c.waitLine(t, `-L \S+: listening on (\S+),`)[1], uint64(300+i))
			asked := p.asked()
			switch {
			case tc.viaWant == "" && len(asked) > 0:
				t.Errorf("the proxy was asked for %v; want it unused", asked)
			case tc.viaWant != "" && !slices.Equal(asked, []string{tc.viaWant}):
				t.Errorf("the proxy was asked for %v; want [%s]", asked, tc.viaWant)
			}
		})
	}
}
