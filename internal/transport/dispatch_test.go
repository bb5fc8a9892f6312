package transport

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/auth"
	"github.com/pinhole-dev/pinhole/internal/spec"
	"github.com/pinhole-dev/pinhole/internal/ssh"
	"github.com/pinhole-dev/pinhole/internal/sshtest"
	"github.com/pinhole-dev/pinhole/internal/tunnel"
)

// shared is a pinhole server whose one port serves SSH, TLS, WebSocket
// and HTTP, with a self-signed certificate.
type shared struct {
	addr string // 127.0.0.1:port
	cert tls.Certificate
	pool *x509.CertPool
	key  *sshtest.Key
	srv  *tunnel.Server
	d    *Dispatcher
}

func startShared(t *testing.T, tweak func(*tunnel.ServerConfig, *Dispatcher)) *shared {
	t.Helper()
	dir := t.TempDir()
	cert, created, err := LoadOrCreateSelfSigned(filepath.Join(dir, SelfSignedFile), []string{"localhost", "127.0.0.1"})
	if err != nil || !created {
		t.Fatalf("self-signed: created %v, %v", created, err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	key := sshtest.NewKey(t, dir, "client")
	_, hostPriv, _ := ed25519Key()
	hostSigner, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		t.Fatal(err)
	}
	d := &Dispatcher{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}}
	cfg := tunnel.ServerConfig{
		HostKeys: []ssh.Signer{hostSigner},
		Authorize: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*auth.Options, error) {
			if bytes.Equal(k.Marshal(), key.Public.Marshal()) {
				return &auth.Options{PortForwarding: true}, nil
			}
			return nil, nil
		},
		Sort:   d.Sort,
		Unwrap: d.Unwrap,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	}
	if tweak != nil {
		tweak(&cfg, d)
	}
	srv, err := tunnel.NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	d.SSH = func(c net.Conn) { srv.ServeConn(c) }
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() {
		srv.Close()
		d.Close()
	})
	return &shared{addr: ln.Addr().String(), cert: cert, pool: pool, key: key, srv: srv, d: d}
}

// tunnelThrough logs in to s over url with d and checks that 1 MiB goes
// through a -L forward and comes back intact.
func tunnelThrough(t *testing.T, s *shared, url string, d *Dialer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ln := listen(t)
	serveEcho(t, ln)
	target := ln.Addr().String()
	fwd, err := spec.Parse(spec.Local, "127.0.0.1:0:"+target)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tunnel.Dial(ctx, tunnel.ClientConfig{
		Addr:              s.addr,
		Target:            url,
		Dial:              d.DialContext,
		User:              "me",
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(s.key.Signer)},
		HostKeyCallback:   ssh.InsecureIgnoreHostKey(),
		Local:             []spec.Forward{fwd},
		KeepaliveInterval: -1,
	})
	if err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	defer c.Close()
	conn, err := net.Dial("tcp", c.Forwardings()[0].Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(15 * time.Second))
	data := make([]byte, 1<<20)
	rand.Read(data)
	go conn.Write(data)
	got := make([]byte, len(data))
	if _, err := io.ReadFull(conn, got); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
	if sha256.Sum256(got) != sha256.Sum256(data) {
		t.Fatalf("%s: the data came back changed", url)
	}
}

func TestOnePortEveryTransport(t *testing.T) {
	s := startShared(t, nil)
	fp := Fingerprint(s.cert.Certificate[0])
	for _, tc := range []struct {
		url string
		tls ClientTLS
	}{
		{"ssh://" + s.addr, ClientTLS{}},
		{"tls://" + s.addr, ClientTLS{Fingerprint: fp}},
		{"tls://" + strings.Replace(s.addr, "127.0.0.1", "localhost", 1), ClientTLS{RootCAs: s.pool}},
		{"ws://" + s.addr + "/ssh", ClientTLS{}},
		{"wss://" + s.addr + "/ssh", ClientTLS{Fingerprint: fp}},
		{"wss://" + s.addr, ClientTLS{RootCAs: s.pool}},
	} {
		t.Run(tc.url, func(t *testing.T) {
			tunnelThrough(t, s, tc.url, &Dialer{TLS: tc.tls})
		})
	}
}

func TestTLSWithoutALPN(t *testing.T) {
	// openssl s_client and socat send no ALPN: SSH is told apart by its
	// first byte inside, or by SNI.
	s := startShared(t, func(_ *tunnel.ServerConfig, d *Dispatcher) { d.SSHNames = []string{"ssh.example"} })
	for _, name := range []string{"", "ssh.example"} {
		c, err := tls.Dial("tcp", s.addr, &tls.Config{ServerName: name, InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if name == "" {
			io.WriteString(c, "SSH-2.0-test\r\n")
		}
		line := make([]byte, 8)
		if _, err := io.ReadFull(c, line); err != nil || string(line) != "SSH-2.0-" {
			t.Errorf("SNI %q: read %q, %v; want the server's SSH banner", name, line, err)
		}
		c.Close()
	}
}

func TestHTTPAnswers(t *testing.T) {
	s := startShared(t, nil)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.pool, ServerName: "localhost"}}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	for _, tc := range []struct {
		url    string
		header string
		status int
	}{
		{"http://" + s.addr + "/", "", 404},
		{"https://" + s.addr + "/index.html", "", 404},
		{"http://" + s.addr + "/ssh", "", 426},
		{"https://" + s.addr + "/ssh", "", 426},
		{"http://" + s.addr + "/wrong", "websocket", 404},
		{"https://" + s.addr + "/other/ssh", "websocket", 404},
	} {
		req, _ := http.NewRequest("GET", tc.url, nil)
		if tc.header != "" {
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", tc.header)
			req.Header.Set("Sec-WebSocket-Version", "13")
			req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Errorf("%s: %v", tc.url, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s (Upgrade %q): %s, want %d", tc.url, tc.header, resp.Status, tc.status)
		}
	}
}

// closedWithin checks that the server closes c, having sent nothing,
// within d.
func closedWithin(t *testing.T, c net.Conn, d time.Duration) {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(d + 2*time.Second))
	n, err := c.Read(make([]byte, 64))
	if n != 0 || errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		t.Errorf("read %d bytes, %v: want the server to close the connection", n, err)
	}
	if took := time.Since(start); took > d+time.Second {
		t.Errorf("closed after %v, want within %v", took, d)
	}
}

func TestUnknownAndSilentClosed(t *testing.T) {
	grace := 400 * time.Millisecond
	s := startShared(t, func(c *tunnel.ServerConfig, d *Dispatcher) { c.HandshakeTimeout, d.LoginGrace = grace, grace })
	for _, first := range []string{"\x00\x01\x02", "\xff", "ssh-2.0-lowercase\r\n"} {
		c, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, first)
		closedWithin(t, c, grace)
		c.Close()
	}
	// A silent client gets SSH's version line at half the grace, and is
	// cut at the grace as a client that does not log in.
	silent, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	silent.SetDeadline(time.Now().Add(5 * time.Second))
	line := make([]byte, 8)
	if _, err := io.ReadFull(silent, line); err != nil || string(line) != "SSH-2.0-" {
		t.Fatalf("silent client: read %q, %v; want the SSH version line", line, err)
	}
	if _, err := io.Copy(io.Discard, silent); err != nil {
		t.Errorf("silent client: %v; want the server to close after the grace", err)
	}
	// A TLS handshake that never finishes is cut at the grace as well.
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte{0x16, 0x03, 0x01})
	closedWithin(t, c, grace)
}

// TestSilentClientGetsSSH: a client that sends nothing (a monitoring
// probe, or an SSH client that waits for the server) gets the server's
// SSH version line after SilentSSH, as from sshd.
func TestSilentClientGetsSSH(t *testing.T) {
	s := startShared(t, func(_ *tunnel.ServerConfig, d *Dispatcher) { d.SilentSSH = 200 * time.Millisecond })
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	c.SetDeadline(start.Add(5 * time.Second))
	line := make([]byte, 8)
	if _, err := io.ReadFull(c, line); err != nil || string(line) != "SSH-2.0-" {
		t.Fatalf("read %q, %v; want the server's version line", line, err)
	}
	if took := time.Since(start); took < 150*time.Millisecond || took > 2*time.Second { // the server counts from its accept, a little before
		t.Errorf("the version line came after %v; want it after SilentSSH, 200 ms", took)
	}
}

// TestTLSHandshakeCountsTowardStartups: a TLS handshake that may carry
// SSH (ALPN ssh) counts toward the SSH limits from its ClientHello.
func TestTLSHandshakeCountsTowardStartups(t *testing.T) {
	s := startShared(t, func(c *tunnel.ServerConfig, _ *Dispatcher) { c.PerSourceMaxStartups = 1 })
	// A TLS handshake in progress holds the one slot of 127.0.0.1...
	hold, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	hold.Write(helloBytes(t, "localhost", ALPN))
	deadline := time.Now().Add(5 * time.Second)
	for s.srv.Startups().Unauthenticated < 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	// ...so a second connection from it is dropped before a byte.
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "SSH-2.0-second\r\n")
	closedWithin(t, c, time.Second)
}

func TestDialErrorsSayWhatToDo(t *testing.T) {
	s := startShared(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tc := range []struct {
		url  string
		tls  ClientTLS
		want string
	}{
		{"tls://" + s.addr, ClientTLS{}, "--tls-fingerprint"},
		{"wss://" + s.addr + "/ssh", ClientTLS{Fingerprint: "SHA256:" + strings.Repeat("A", 43)}, "not the pinned"},
		{"ws://" + s.addr + "/nope", ClientTLS{}, "404"},
		{"tls://" + s.addr, ClientTLS{Fingerprint: "MD5:00"}, "want SHA256:"},
	} {
		e, err := ParseURL(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		c, err := (&Dialer{TLS: tc.tls}).DialEndpoint(ctx, e)
		if err == nil {
			c.Close()
			t.Errorf("%s: no error", tc.url)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v\nwant it to say %q", tc.url, err, tc.want)
		}
	}
}

func TestSelfSignedKept(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", SelfSignedFile)
	a, created, err := LoadOrCreateSelfSigned(path, []string{"example.test", "::1"})
	if err != nil || !created {
		t.Fatalf("first: created %v, %v", created, err)
	}
	b, created, err := LoadOrCreateSelfSigned(path, nil)
	if err != nil || created {
		t.Fatalf("second: created %v, %v", created, err)
	}
	if Fingerprint(a.Certificate[0]) != Fingerprint(b.Certificate[0]) {
		t.Error("the certificate changed on the second start")
	}
	leaf, _ := x509.ParseCertificate(a.Certificate[0])
	if err := leaf.VerifyHostname("example.test"); err != nil {
		t.Error(err)
	}
	if err := leaf.VerifyHostname("::1"); err != nil {
		t.Error(err)
	}
	if _, err := ParseFingerprint(Fingerprint(a.Certificate[0])); err != nil {
		t.Error(err)
	}
	if _, err := ParseFingerprint(Fingerprint(a.Certificate[0]) + "="); err != nil {
		t.Errorf("padded: %v", err)
	}
}

// FuzzUnwrap feeds arbitrary first bytes to a Dispatcher: it must never
// panic, and it must give SSH only what starts as SSH.
func FuzzUnwrap(f *testing.F) {
	for _, s := range []string{"SSH-2.0-x\r\n", "GET /ssh HTTP/1.1\r\nHost: x\r\n\r\n", "\x16\x03\x01\x00\x05hello", "\x00", ""} {
		f.Add([]byte(s))
	}
	cert, _, err := LoadOrCreateSelfSigned(filepath.Join(f.TempDir(), SelfSignedFile), nil)
	if err != nil {
		f.Fatal(err)
	}
	d := &Dispatcher{TLS: &tls.Config{Certificates: []tls.Certificate{cert}}, LoginGrace: 20 * time.Millisecond}
	defer d.Close()
	f.Fuzz(func(t *testing.T, in []byte) {
		a, b := net.Pipe()
		defer a.Close()
		go func() {
			b.SetDeadline(time.Now().Add(30 * time.Millisecond))
			b.Write(in)
			io.Copy(io.Discard, b)
		}()
		a.SetDeadline(time.Now().Add(30 * time.Millisecond))
		c, err := d.Unwrap(a)
		if err != nil || c == nil {
			return
		}
		// SSH, and the byte stream from its start: the client's first
		// byte was 'S', or it sent nothing in time (the server speaks
		// first).
		if len(in) > 0 && in[0] != 'S' {
			t.Fatalf("SSH for first byte %q", in[:1])
		}
	})
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// TestHTTPBoundedByGrace: an HTTP request whose body never comes, or a
// header that never ends, does not keep its connection past the login
// grace.
func TestHTTPBoundedByGrace(t *testing.T) {
	grace := 500 * time.Millisecond
	s := startShared(t, func(c *tunnel.ServerConfig, d *Dispatcher) { c.HandshakeTimeout, d.LoginGrace = grace, grace })
	for _, req := range []string{
		"POST /x HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ",
	} {
		c, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		io.WriteString(c, req)
		c.SetReadDeadline(start.Add(5 * time.Second))
		_, err = io.Copy(io.Discard, c)
		c.Close()
		if took := time.Since(start); isTimeout(err) || took > grace+time.Second {
			t.Errorf("%q: the server held the connection %v (%v); want it closed within the grace, %v", req, took, err, grace)
		}
	}
}

// TestWriterConnCloseWhenPeerStalls: closing a TLS transport whose peer
// stopped reading does not wait for TLS's close_notify timeout.
func TestWriterConnCloseWhenPeerStalls(t *testing.T) {
	cert, _, err := LoadOrCreateSelfSigned(filepath.Join(t.TempDir(), SelfSignedFile), nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	stalled := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{cert}})
		tc.Handshake()
		stalled <- tc // and never read again
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	bc := newBatchConn(raw, true)
	tc := tls.Client(bc, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	defer (<-stalled).Close()
	wc := newWriterConn(tc, bc)
	go func() {
		buf := make([]byte, 1<<20)
		for range 64 { // until the socket buffers are full and a Write blocks
			if _, err := wc.Write(buf); err != nil {
				return
			}
		}
	}()
	time.Sleep(300 * time.Millisecond)
	start := time.Now()
	wc.Close()
	if took := time.Since(start); took > time.Second {
		t.Errorf("Close took %v with the peer not reading; want it at once", took)
	}
}
