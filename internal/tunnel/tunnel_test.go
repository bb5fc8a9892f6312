package tunnel_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/ssh"

	"github.com/pinhole-dev/pinhole/internal/auth"
	"github.com/pinhole-dev/pinhole/internal/spec"
	"github.com/pinhole-dev/pinhole/internal/streamtest"
	"github.com/pinhole-dev/pinhole/internal/tunnel"
)

// bulk is how much each big transfer carries each way; many is how many
// connections are held open at once.
const (
	bulk = 64 << 20
	many = 200
)

func tcpDialer(addr string) func(context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
}

// checkPath proves a forwarded address carries bulk bytes each way with
// half-close, and holds many connections at once.
func checkPath(t *testing.T, addr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := streamtest.Exchange(ctx, conn, 1, bulk, bulk); err != nil {
		t.Fatalf("%d MiB each way through %s: %v", bulk>>20, addr, err)
	}
	if err := streamtest.Many(ctx, many, 16<<10, tcpDialer(addr)); err != nil {
		t.Fatalf("%d connections at once through %s: %v", many, addr, err)
	}
}

// TestPinholeToPinhole is path 4: pinhole connect to pinhole server, -L and -R.
func TestPinholeToPinhole(t *testing.T) {
	target := streamtest.NewTarget(t)
	clientKey := newSigner(t)
	srv := startServer(t, nil, newSigner(t), keySet(t, authorizedLine("", clientKey.PublicKey())))
	cfg := clientConfig(t, srv.addr, srv.hostKey.PublicKey(), clientKey)
	cfg.Local = []spec.Forward{mustParse(t, spec.Local, fmt.Sprintf("127.0.0.1:0:127.0.0.1:%d", target.Port()))}
	cfg.Remote = []spec.Forward{mustParse(t, spec.Remote, fmt.Sprintf("0:127.0.0.1:%d", target.Port()))}
	c := dialClient(t, cfg)

	t.Run("L", func(t *testing.T) { checkPath(t, c.LocalAddrs()[0].String()) })
	t.Run("R", func(t *testing.T) {
		_, port, _ := net.SplitHostPort(c.RemoteAddrs()[0])
		checkPath(t, net.JoinHostPort("127.0.0.1", port))
	})
	t.Run("DialContext", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn, err := c.DialContext(ctx, "tcp", target.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if err := streamtest.Exchange(ctx, conn, 7, 1<<20, 1<<20); err != nil {
			t.Fatal(err)
		}
	})
}

// TestUnknownKey: a key not in authorized_keys is refused, and the client
// says what to do instead of retrying.
func TestUnknownKey(t *testing.T) {
	srv := startServer(t, nil, newSigner(t), keySet(t, authorizedLine("", newSigner(t).PublicKey())))
	cfg := clientConfig(t, srv.addr, srv.hostKey.PublicKey(), newSigner(t))
	_, err := tunnel.Dial(context.Background(), cfg)
	var fatal *tunnel.FatalError
	if !errors.As(err, &fatal) || !strings.Contains(err.Error(), "authorized_keys") {
		t.Fatalf("Dial with an unknown key: %v; want a FatalError that names authorized_keys", err)
	}
}

// TestHostKeyMismatch: a server whose key differs from known_hosts is
// refused with the fingerprint and the way out, and never retried.
func TestHostKeyMismatch(t *testing.T) {
	clientKey := newSigner(t)
	srv := startServer(t, nil, newSigner(t), keySet(t, authorizedLine("", clientKey.PublicKey())))
	known := t.TempDir() + "/known_hosts"
	host := strings.Replace(srv.addr, "127.0.0.1:", "[127.0.0.1]:", 1)
	line := host + " " + string(ssh.MarshalAuthorizedKey(newSigner(t).PublicKey()))
	if err := os.WriteFile(known, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	kh, err := auth.OpenKnownHosts(known, auth.HostKeyAcceptNew, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := clientConfig(t, srv.addr, nil, clientKey)
	cfg.HostKeyCallback = kh.Callback()
	_, err = tunnel.Dial(context.Background(), cfg)
	var fatal *tunnel.FatalError
	if !errors.As(err, &fatal) || !errors.Is(err, auth.ErrHostKeyMismatch) || !strings.Contains(err.Error(), "ssh-keygen -R") {
		t.Fatalf("Dial to a server with a changed key: %v; want a FatalError wrapping ErrHostKeyMismatch that says ssh-keygen -R", err)
	}
}

// TestPermitRefusals: a forward the key may not make is refused with a
// reason, and the same client's other forwards keep working.
func TestPermitRefusals(t *testing.T) {
	target := streamtest.NewTarget(t)
	other := streamtest.NewTarget(t)
	clientKey := newSigner(t)
	opts := fmt.Sprintf(`permitopen="127.0.0.1:%d",permitlisten="localhost:*"`, target.Port())
	srv := startServer(t, nil, newSigner(t), keySet(t, authorizedLine(opts, clientKey.PublicKey())))
	cfg := clientConfig(t, srv.addr, srv.hostKey.PublicKey(), clientKey)
	cfg.Local = []spec.Forward{
		mustParse(t, spec.Local, fmt.Sprintf("127.0.0.1:0:127.0.0.1:%d", target.Port())),
		mustParse(t, spec.Local, fmt.Sprintf("127.0.0.1:0:127.0.0.1:%d", other.Port())),
	}
	cfg.Remote = []spec.Forward{
		mustParse(t, spec.Remote, fmt.Sprintf("0:127.0.0.1:%d", target.Port())),
		mustParse(t, spec.Remote, fmt.Sprintf("*:0:127.0.0.1:%d", target.Port())),
	}
	c := dialClient(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// permitopen: the allowed -L works, the other is refused by policy.
	_, err := c.DialContext(ctx, "tcp", other.Addr())
	if !errors.Is(err, tunnel.ErrProhibited) {
		t.Fatalf("open to a target outside permitopen: %v; want ErrProhibited", err)
	}
	conn, err := net.Dial("tcp", c.LocalAddrs()[1].String())
	if err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := conn.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("-L to a refused target: read %d bytes, %v; want the connection closed", n, err)
	}
	conn.Close()
	if err := streamtest.Many(ctx, 20, 4<<10, tcpDialer(c.LocalAddrs()[0].String())); err != nil {
		t.Fatalf("allowed -L beside a refused one: %v", err)
	}

	// permitlisten: "localhost:*" allows the first -R, not the "*" one.
	remotes := c.RemoteAddrs()
	if remotes[0] == "" || remotes[1] != "" {
		t.Fatalf("remote forwards %q; want the first bound and the second refused", remotes)
	}
	_, port, _ := net.SplitHostPort(remotes[0])
	if err := streamtest.Many(ctx, 20, 4<<10, tcpDialer(net.JoinHostPort("127.0.0.1", port))); err != nil {
		t.Fatalf("allowed -R beside a refused one: %v", err)
	}
}

// TestLocalPortInUse: a -L port that is taken fails Dial at once and says so.
func TestLocalPortInUse(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	clientKey := newSigner(t)
	srv := startServer(t, nil, newSigner(t), keySet(t, authorizedLine("", clientKey.PublicKey())))
	cfg := clientConfig(t, srv.addr, srv.hostKey.PublicKey(), clientKey)
	cfg.Local = []spec.Forward{mustParse(t, spec.Local, taken.Addr().String()+":127.0.0.1:9")}
	_, err = tunnel.Dial(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "address already in use") || !strings.Contains(err.Error(), "pick another") {
		t.Fatalf("Dial with a taken -L port: %v; want 'address already in use' and a hint", err)
	}
}

// TestServerRestart: the server dies mid-transfer; once it is back on the
// same address the client's -L and -R work again within 10 s.
func TestServerRestart(t *testing.T) {
	target := streamtest.NewTarget(t)
	clientKey := newSigner(t)
	hostKey := newSigner(t)
	authorize := keySet(t, authorizedLine("", clientKey.PublicKey()))
	srv := startServer(t, nil, hostKey, authorize)
	addr := srv.addr
	cfg := clientConfig(t, addr, hostKey.PublicKey(), clientKey)
	cfg.Local = []spec.Forward{mustParse(t, spec.Local, fmt.Sprintf("127.0.0.1:0:127.0.0.1:%d", target.Port()))}
	cfg.Remote = []spec.Forward{mustParse(t, spec.Remote, fmt.Sprintf("0:127.0.0.1:%d", target.Port()))}
	c := dialClient(t, cfg)
	local := c.LocalAddrs()[0].String()
	// The -R port is the server's pick (port 0), so it changes with the restart.
	remote := func() string {
		_, port, err := net.SplitHostPort(c.RemoteAddrs()[0])
		if err != nil {
			return "" // not bound right now
		}
		return net.JoinHostPort("127.0.0.1", port)
	}

	// Start a transfer, then kill the server in the middle of it.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := net.Dial("tcp", local)
	if err != nil {
		t.Fatal(err)
	}
	xfer := make(chan error, 1)
	go func() { xfer <- streamtest.Exchange(ctx, conn, 3, 256<<20, 256<<20) }()
	time.Sleep(200 * time.Millisecond)
	srv.srv.Close()
	if err := <-xfer; err == nil {
		t.Fatal("a transfer cut by the server's death reported success")
	}
	conn.Close()

	time.Sleep(time.Second) // down for a while
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", addr, err)
	}
	startServer(t, ln, hostKey, authorize)
	back := time.Now()
	for _, addr := range []func() string{func() string { return local }, remote} {
		var err error
		for time.Since(back) < 10*time.Second {
			if a := addr(); a == "" {
				err = errors.New("the -R forward is not bound yet")
			} else if err = streamtest.Many(ctx, 4, 4<<10, tcpDialer(a)); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("still failing %v after the server came back: %v", time.Since(back), err)
		}
	}
	t.Logf("-L and -R work again %v after the server came back", time.Since(back))
}

// TestRemoteForwardOwnership: a port one client's -R holds is refused to
// another client with a reason, and is freed when its client goes.
func TestRemoteForwardOwnership(t *testing.T) {
	target := streamtest.NewTarget(t)
	keyA, keyB := newSigner(t), newSigner(t)
	srv := startServer(t, nil, newSigner(t), keySet(t, authorizedLine("", keyA.PublicKey())+authorizedLine("", keyB.PublicKey())))
	cfg := clientConfig(t, srv.addr, srv.hostKey.PublicKey(), keyA)
	cfg.Remote = []spec.Forward{mustParse(t, spec.Remote, fmt.Sprintf("0:127.0.0.1:%d", target.Port()))}
	a := dialClient(t, cfg)
	_, port, err := net.SplitHostPort(a.RemoteAddrs()[0])
	if err != nil {
		t.Fatalf("-R not bound: %q", a.RemoteAddrs())
	}
	p, _ := strconv.Atoi(port)

	// Client B asks for the same port with a raw request, to read the reason.
	b, err := ssh.Dial("tcp", srv.addr, &ssh.ClientConfig{
		User:            "b",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(keyB)},
		HostKeyCallback: ssh.FixedHostKey(srv.hostKey.PublicKey()),
		ClientVersion:   "SSH-2.0-pinhole_test",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	req := ssh.Marshal(struct {
		Host string
		Port uint32
	}{"localhost", uint32(p)})
	ok, reason, err := b.SendRequest("tcpip-forward", true, req)
	if err != nil || ok || !strings.Contains(string(reason), "another client") {
		t.Fatalf("second client asking for a held port: ok=%v reason=%q err=%v; want a refusal naming another client", ok, reason, err)
	}

	a.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", port))
		if err != nil {
			break // closed with its client
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("port %s still accepts 5 s after its client left", port)
		}
		time.Sleep(50 * time.Millisecond)
	}
	ok, reason, err = b.SendRequest("tcpip-forward", true, req)
	if err != nil || !ok {
		t.Fatalf("asking for the freed port: ok=%v reason=%q err=%v", ok, reason, err)
	}
}

// blackhole relays TCP to target until freeze, after which the connections
// it has stay open but carry nothing: a dead path without a FIN or RST.
// Connections made after freeze work.
type blackhole struct {
	ln    net.Listener
	mu    sync.Mutex
	live  []*atomic.Bool // per connection: frozen
	conns []net.Conn
}

func newBlackhole(t *testing.T, target string) *blackhole {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blackhole{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			frozen := new(atomic.Bool)
			b.mu.Lock()
			b.conns = append(b.conns, c, s)
			b.live = append(b.live, frozen)
			b.mu.Unlock()
			go swallowOrCopy(s, c, frozen)
			go swallowOrCopy(c, s, frozen)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, c := range b.conns {
			c.Close()
		}
	})
	return b
}

func swallowOrCopy(dst, src net.Conn, frozen *atomic.Bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if err != nil {
			return
		}
		if frozen.Load() {
			continue
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return
		}
	}
}

// freeze silences every connection made so far.
func (b *blackhole) freeze() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, f := range b.live {
		f.Store(true)
	}
}

// TestDeadPeer: when the path to the server goes silent (no FIN, no RST),
// keepalives notice and the client reconnects, -L working again.
func TestDeadPeer(t *testing.T) {
	target := streamtest.NewTarget(t)
	clientKey := newSigner(t)
	srv := startServer(t, nil, newSigner(t), keySet(t, authorizedLine("", clientKey.PublicKey())))
	hole := newBlackhole(t, srv.addr)
	cfg := clientConfig(t, hole.ln.Addr().String(), srv.hostKey.PublicKey(), clientKey)
	cfg.KeepaliveInterval = 300 * time.Millisecond
	cfg.Local = []spec.Forward{mustParse(t, spec.Local, fmt.Sprintf("127.0.0.1:0:127.0.0.1:%d", target.Port()))}
	c := dialClient(t, cfg)
	local := c.LocalAddrs()[0].String()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := streamtest.Many(ctx, 2, 1<<10, tcpDialer(local)); err != nil {
		t.Fatal(err)
	}
	hole.freeze()
	frozeAt := time.Now()
	var err error
	for time.Since(frozeAt) < 15*time.Second {
		sctx, scancel := context.WithTimeout(ctx, 2*time.Second)
		err = streamtest.Many(sctx, 2, 1<<10, tcpDialer(local))
		scancel()
		if err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("-L still fails %v after the path went silent: %v", time.Since(frozeAt), err)
	}
	t.Logf("-L works again %v after the path went silent", time.Since(frozeAt))
}

// TestStreamsEndWithConnection: when the SSH connection goes, the server
// closes its side of every stream, even toward a target that would keep
// a half-closed connection open forever.
func TestStreamsEndWithConnection(t *testing.T) {
	sink, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	accepted := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := sink.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("x")) // then ignores EOF: never reads, never closes
			accepted <- c
		}
	}()
	clientKey := newSigner(t)
	srv := startServer(t, nil, newSigner(t), keySet(t, authorizedLine("", clientKey.PublicKey())))
	cfg := clientConfig(t, srv.addr, srv.hostKey.PublicKey(), clientKey)
	cfg.Local = []spec.Forward{mustParse(t, spec.Local, "127.0.0.1:0:"+sink.Addr().String())}
	c := dialClient(t, cfg)
	var held []net.Conn
	for range 3 {
		conn, err := net.Dial("tcp", c.LocalAddrs()[0].String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.Read(make([]byte, 1))
		held = append(held, <-accepted)
	}
	c.Close()
	for i, tc := range held {
		tc.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := tc.Read(make([]byte, 1)); err == nil || os.IsTimeout(err) {
			t.Fatalf("target connection %d still open 5 s after the SSH connection went (%v)", i, err)
		}
	}
}

func TestParseCiphers(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []string
		wantErr string
	}{
		{in: "aes128-gcm@openssh.com", want: []string{"aes128-gcm@openssh.com"}},
		{in: " aes256-ctr , chacha20-poly1305@openssh.com,", want: []string{"aes256-ctr", "chacha20-poly1305@openssh.com"}},
		{in: "3des-cbc", wantErr: `unknown cipher "3des-cbc": choose from aes128-gcm@openssh.com,`},
		{in: "aes128-cbc", wantErr: `unknown cipher "aes128-cbc"`},
		{in: " , ", wantErr: "no cipher named"},
	} {
		got, err := tunnel.ParseCiphers(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseCiphers(%q) = %v, %v; want an error with %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("ParseCiphers(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	if d := tunnel.DefaultServerCiphers(); len(d) != 6 {
		t.Errorf("DefaultServerCiphers() = %v, want all six", d)
	}
}
