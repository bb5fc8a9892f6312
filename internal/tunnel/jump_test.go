package tunnel_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/auth"
	"github.com/pinhole-dev/pinhole/internal/ssh"
	"github.com/pinhole-dev/pinhole/internal/ssh/knownhosts"
	"github.com/pinhole-dev/pinhole/internal/sshtest"
	"github.com/pinhole-dev/pinhole/internal/streamtest"
	"github.com/pinhole-dev/pinhole/internal/tunnel"
)

func TestParseJump(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []tunnel.JumpHost
	}{
		{"bastion", []tunnel.JumpHost{{Host: "bastion"}}},
		{"alice@bastion:2222", []tunnel.JumpHost{{User: "alice", Host: "bastion", Port: 2222}}},
		{"a@b,c:23,d", []tunnel.JumpHost{{User: "a", Host: "b"}, {Host: "c", Port: 23}, {Host: "d"}}},
		{"ssh://bob@[2001:db8::1]:2200", []tunnel.JumpHost{{User: "bob", Host: "2001:db8::1", Port: 2200}}},
		{"[::1]", []tunnel.JumpHost{{Host: "::1"}}},
		{"us@er@host", []tunnel.JumpHost{{User: "us@er", Host: "host"}}},
		{"none", nil},
	} {
		got, err := tunnel.ParseJump(tc.in)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseJump(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "a,,b", "@host", "host:", "host:0", "host:65536", "host:22x", "::1", "[::1", "[::1]22", "-oProxyCommand=x", "a b", "host/x"} {
		if got, err := tunnel.ParseJump(in); err == nil {
			t.Errorf("ParseJump(%q) = %+v, want an error", in, got)
		} else if !strings.Contains(err.Error(), "want [user@]host[:port]") {
			t.Errorf("ParseJump(%q): %v; want it to say what to write", in, err)
		}
	}
}

// FuzzParseJump: whatever ParseJump accepts, String spells so that it
// reads back the same.
func FuzzParseJump(f *testing.F) {
	for _, s := range []string{"bastion", "a@b:2222,c", "ssh://u@[::1]:22/", "none", "[fe80::1%eth0]:2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		hops, err := tunnel.ParseJump(s)
		if err != nil {
			return
		}
		parts := make([]string, len(hops))
		for i, h := range hops {
			if h.Host == "" {
				t.Fatalf("ParseJump(%q): hop %d has no host", s, i)
			}
			parts[i] = h.String()
		}
		if len(hops) == 0 {
			return
		}
		again, err := tunnel.ParseJump(strings.Join(parts, ","))
		if err != nil || !reflect.DeepEqual(again, hops) {
			t.Fatalf("ParseJump(%q) = %+v; its String %q reads back as %+v, %v", s, hops, strings.Join(parts, ","), again, err)
		}
	})
}

// recordingHostKeys checks host keys against a known_hosts file in strict
// mode, and records the names it was asked about, in order.
type recordingHostKeys struct {
	kh    *auth.KnownHosts
	mu    sync.Mutex
	names []string
}

func newRecordingHostKeys(t *testing.T, lines ...string) *recordingHostKeys {
	t.Helper()
	path := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	kh, err := auth.OpenKnownHosts(path, auth.HostKeyYes, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return &recordingHostKeys{kh: kh}
}

func (r *recordingHostKeys) callback(hostname string, remote net.Addr, key ssh.PublicKey) error {
	r.mu.Lock()
	r.names = append(r.names, hostname)
	r.mu.Unlock()
	return r.kh.Callback()(hostname, remote, key)
}

func (r *recordingHostKeys) asked() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.names...)
}

func knownLine(addr string, key ssh.PublicKey) string {
	return knownhosts.Line([]string{addr}, key) + "\n"
}

func hop(t *testing.T, addr, user string) tunnel.JumpHost {
	t.Helper()
	hs, err := tunnel.ParseJump(user + "@" + addr)
	if err != nil {
		t.Fatal(err)
	}
	return hs[0]
}

// exchangeThrough sends 1 MiB each way to target through c.
func exchangeThrough(t *testing.T, c *tunnel.Client, target string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := c.DialContext(ctx, "tcp", target)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := streamtest.Exchange(ctx, conn, 1, 1<<20, 1<<20); err != nil {
		t.Fatalf("1 MiB each way to %s: %v", target, err)
	}
}

// TestJumpOpenSSHToPinhole: pinhole reaches a pinhole server through a
// stock OpenSSH sshd as the jump host (ssh -J), each host's key checked
// under its own name.
func TestJumpOpenSSHToPinhole(t *testing.T) {
	key := sshtest.NewKey(t, t.TempDir(), "client")
	sshd := sshtest.StartSSHD(t, sshtest.SSHDConfig{AuthorizedKeys: key.AuthorizedLine, Extra: []string{"LogLevel DEBUG1"}})
	var from atomic.Value
	dest := startServer(t, nil, newSigner(t), func(meta ssh.ConnMetadata, k ssh.PublicKey) (*auth.Options, error) {
		from.Store(meta.RemoteAddr().String())
		return keySet(t, authorizedLine("", key.Public))(meta, k)
	})
	hk := newRecordingHostKeys(t, sshd.KnownHostsLine(), knownLine(dest.addr, dest.hostKey.PublicKey()))
	dial, err := tunnel.JumpDialer(tunnel.JumpConfig{
		Hosts:             []tunnel.JumpHost{hop(t, sshd.Addr, sshd.User)},
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(key.Signer)},
		HostKeyCallback:   hk.callback,
		HostKeyAlgorithms: hk.kh.Algorithms,
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := clientConfig(t, dest.addr, nil, key.Signer)
	cfg.HostKeyCallback = hk.callback
	cfg.Dial = dial
	c := dialClient(t, cfg)
	target := streamtest.NewTarget(t)
	exchangeThrough(t, c, fmt.Sprintf("127.0.0.1:%d", target.Port()))
	if got, want := hk.asked(), []string{sshd.Addr, dest.addr}; !reflect.DeepEqual(got, want) {
		t.Errorf("host keys checked for %q, want %q", got, want)
	}
	// sshd opened the channel to the destination: at LogLevel DEBUG1 it
	// logs each direct-tcpip it is asked for.
	want := fmt.Sprintf("target 127.0.0.1 port %d", dest.ln.Addr().(*net.TCPAddr).Port)
	if !strings.Contains(sshd.Log(), "direct-tcpip") || !strings.Contains(sshd.Log(), want) {
		t.Errorf("sshd's log has no direct-tcpip with %q:\n%s", want, sshd.Log())
	}
	t.Logf("destination saw the connection from %v", from.Load())
}

// TestJumpPinholeToOpenSSH: pinhole reaches a stock OpenSSH sshd through
// pinhole server as the jump host, and through two jump hosts (pinhole
// server, then another).
func TestJumpPinholeToOpenSSH(t *testing.T) {
	key := sshtest.NewKey(t, t.TempDir(), "client")
	sshd := sshtest.StartSSHD(t, sshtest.SSHDConfig{AuthorizedKeys: key.AuthorizedLine})
	var jumpConns, jumpClosed atomic.Int32
	ln := &countingListener{Listener: listenLoopback(t), accepted: &jumpConns, closed: &jumpClosed}
	jump := startServer(t, ln, newSigner(t), keySet(t, authorizedLine("", key.Public)))
	jump2 := startServer(t, nil, newSigner(t), keySet(t, authorizedLine("", key.Public)))
	hk := newRecordingHostKeys(t, sshd.KnownHostsLine(), knownLine(jump.addr, jump.hostKey.PublicKey()), knownLine(jump2.addr, jump2.hostKey.PublicKey()))
	for _, tc := range []struct {
		name string
		hops []tunnel.JumpHost
	}{
		{"one", []tunnel.JumpHost{hop(t, jump.addr, "tester")}},
		{"two", []tunnel.JumpHost{hop(t, jump.addr, "tester"), hop(t, jump2.addr, "tester")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hk.names = nil
			dial, err := tunnel.JumpDialer(tunnel.JumpConfig{
				Hosts:           tc.hops,
				Auth:            []ssh.AuthMethod{ssh.PublicKeys(key.Signer)},
				HostKeyCallback: hk.callback,
			})
			if err != nil {
				t.Fatal(err)
			}
			cfg := clientConfig(t, sshd.Addr, nil, key.Signer)
			cfg.User = sshd.User
			cfg.HostKeyCallback = hk.callback
			cfg.HostKeyAlgorithms = hk.kh.Algorithms(sshd.Addr)
			cfg.Dial = dial
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c, err := tunnel.Dial(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			target := streamtest.NewTarget(t)
			exchangeThrough(t, c, fmt.Sprintf("127.0.0.1:%d", target.Port()))
			var want []string
			for _, h := range tc.hops {
				want = append(want, h.Addr())
			}
			if got := hk.asked(); !reflect.DeepEqual(got, append(want, sshd.Addr)) {
				t.Errorf("host keys checked for %q, want %q", got, append(want, sshd.Addr))
			}
			// Closing the client logs out of the jump hosts.
			c.Close()
			deadline := time.Now().Add(5 * time.Second)
			for jumpClosed.Load() != jumpConns.Load() {
				if time.Now().After(deadline) {
					t.Fatalf("the jump host still holds %d of its %d connections after Close", jumpConns.Load()-jumpClosed.Load(), jumpConns.Load())
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

// TestJumpHostKeyRefused: a jump host whose key is not known fails Dial
// with an error that names the jump host and says what to do; the
// destination is never dialled.
func TestJumpHostKeyRefused(t *testing.T) {
	key := newSigner(t)
	jump := startServer(t, nil, newSigner(t), keySet(t, authorizedLine("", key.PublicKey())))
	dest := startServer(t, nil, newSigner(t), keySet(t, authorizedLine("", key.PublicKey())))
	hk := newRecordingHostKeys(t, knownLine(dest.addr, dest.hostKey.PublicKey()))
	dial, err := tunnel.JumpDialer(tunnel.JumpConfig{
		Hosts:           []tunnel.JumpHost{hop(t, jump.addr, "tester")},
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(key)},
		HostKeyCallback: hk.callback,
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := clientConfig(t, dest.addr, nil, key)
	cfg.HostKeyCallback = hk.callback
	cfg.Dial = dial
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = tunnel.Dial(ctx, cfg)
	var fatal *tunnel.FatalError
	if !errors.As(err, &fatal) || !errors.Is(err, auth.ErrHostKeyUnknown) || !strings.Contains(err.Error(), "jump host "+jump.addr) || !strings.Contains(err.Error(), "ssh-keyscan") {
		t.Fatalf("Dial through a jump host of unknown key: %v; want a FatalError naming the jump host and ssh-keyscan", err)
	}
	if got := hk.asked(); !reflect.DeepEqual(got, []string{jump.addr}) {
		t.Errorf("host keys checked for %q, want only the jump host's", got)
	}

	// A jump host that refuses our key says so, naming it.
	other := newSigner(t)
	hk2 := newRecordingHostKeys(t, knownLine(jump.addr, jump.hostKey.PublicKey()), knownLine(dest.addr, dest.hostKey.PublicKey()))
	dial, _ = tunnel.JumpDialer(tunnel.JumpConfig{
		Hosts:           []tunnel.JumpHost{hop(t, jump.addr, "tester")},
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(other)},
		HostKeyCallback: hk2.callback,
	})
	cfg.Dial = dial
	cfg.HostKeyCallback = hk2.callback
	_, err = tunnel.Dial(ctx, cfg)
	if !errors.As(err, &fatal) || !strings.Contains(err.Error(), "jump host") || !strings.Contains(err.Error(), jump.addr+" refused our keys") {
		t.Fatalf("Dial through a jump host that refuses our key: %v", err)
	}
}

func listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// countingListener counts the connections it accepted and those since
// closed.
type countingListener struct {
	net.Listener
	accepted, closed *atomic.Int32
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.accepted.Add(1)
	return &countedClose{Conn: c, closed: l.closed}, nil
}

type countedClose struct {
	net.Conn
	closed *atomic.Int32
	once   sync.Once
}

func (c *countedClose) Close() error {
	c.once.Do(func() { c.closed.Add(1) })
	return c.Conn.Close()
}

// holdingListener keeps what it accepted, so a test can cut it.
type holdingListener struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *holdingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

func (l *holdingListener) cut() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.Close()
	}
	return len(l.conns)
}

// TestJumpReconnect: when the connection to the jump host drops, the
// client reconnects through a fresh chain and its streams work again.
func TestJumpReconnect(t *testing.T) {
	key := newSigner(t)
	ln := &holdingListener{Listener: listenLoopback(t)}
	jump := startServer(t, ln, newSigner(t), keySet(t, authorizedLine("", key.PublicKey())))
	dest := startServer(t, nil, newSigner(t), keySet(t, authorizedLine("", key.PublicKey())))
	hk := newRecordingHostKeys(t, knownLine(jump.addr, jump.hostKey.PublicKey()), knownLine(dest.addr, dest.hostKey.PublicKey()))
	dial, err := tunnel.JumpDialer(tunnel.JumpConfig{
		Hosts:           []tunnel.JumpHost{hop(t, jump.addr, "tester")},
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(key)},
		HostKeyCallback: hk.callback,
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := clientConfig(t, dest.addr, nil, key)
	cfg.HostKeyCallback = hk.callback
	cfg.Dial = dial
	c := dialClient(t, cfg)
	target := streamtest.NewTarget(t)
	addr := fmt.Sprintf("127.0.0.1:%d", target.Port())
	exchangeThrough(t, c, addr)
	if n := ln.cut(); n != 1 {
		t.Fatalf("the jump host had %d connections, want 1", n)
	}
	deadline := time.Now().Add(15 * time.Second)
	for c.State() == tunnel.StateUp && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	for c.State() != tunnel.StateUp {
		if time.Now().After(deadline) {
			t.Fatalf("the client did not reconnect through the jump host within 15 s: %v", c.State())
		}
		time.Sleep(10 * time.Millisecond)
	}
	exchangeThrough(t, c, addr)
	ln.mu.Lock()
	n := len(ln.conns)
	ln.mu.Unlock()
	if n != 2 {
		t.Errorf("the jump host saw %d connections, want 2: the reconnect did not go through it afresh", n)
	}
	if got := hk.asked(); len(got) != 4 || got[2] != jump.addr || got[3] != dest.addr {
		t.Errorf("host keys checked for %q, want the jump host's and the destination's twice", got)
	}
}
