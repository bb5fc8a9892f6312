package tunnel_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/auth"
	"github.com/pinhole-dev/pinhole/internal/ssh"
	"github.com/pinhole-dev/pinhole/internal/sshtest"
	"github.com/pinhole-dev/pinhole/internal/streamtest"
	"github.com/pinhole-dev/pinhole/internal/tunnel"
)

func TestExpandProxyCommand(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"socat - TCP:%h:%p", "socat - TCP:db.internal:2222"},
		{"ssh -W %h:%p -l %r %n", "ssh -W db.internal:2222 -l alice db"},
		{"echo 100%%", "echo 100%"},
		{"plain", "plain"},
	} {
		got, err := tunnel.ExpandProxyCommand(tc.in, "db.internal", "2222", "alice", "db")
		if err != nil || got != tc.want {
			t.Errorf("ExpandProxyCommand(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"nc %x", "trailing %"} {
		if _, err := tunnel.ExpandProxyCommand(in, "h", "1", "u", "n"); err == nil || !strings.Contains(err.Error(), "%%") {
			t.Errorf("ExpandProxyCommand(%q): %v; want an error that says how to write a percent sign", in, err)
		}
	}
	if _, err := tunnel.ProxyCommandDialer(tunnel.ProxyCommandConfig{Command: "nc %q"}); err == nil {
		t.Error("ProxyCommandDialer took an unknown token")
	}
}

// FuzzExpandProxyCommand: an expansion that succeeds has no % left that
// did not come from a %% or the values, and text without % is unchanged.
func FuzzExpandProxyCommand(f *testing.F) {
	for _, s := range []string{"socat - TCP:%h:%p", "%%%r%n", "%", "a%zb"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := tunnel.ExpandProxyCommand(s, "H", "P", "R", "N")
		if err != nil {
			return
		}
		if !strings.Contains(s, "%") && got != s {
			t.Fatalf("ExpandProxyCommand(%q) = %q; want it unchanged", s, got)
		}
		if strings.Count(got, "%") != strings.Count(s, "%%") {
			t.Fatalf("ExpandProxyCommand(%q) = %q: %d percent signs, want one per %%%%", s, got, strings.Count(got, "%"))
		}
	})
}

// TestProxyCommandSocat: the SSH connection runs over socat's stdio, as
// with ssh -o ProxyCommand='socat - TCP:%h:%p'; closing the client ends
// socat, by its pid.
func TestProxyCommandSocat(t *testing.T) {
	sshtest.Need(t, "socat")
	key := newSigner(t)
	srv := startServer(t, nil, newSigner(t), keySet(t, authorizedLine("", key.PublicKey())))
	pidFile := filepath.Join(t.TempDir(), "pid")
	var stderr bytes.Buffer
	dial, err := tunnel.ProxyCommandDialer(tunnel.ProxyCommandConfig{
		Command: fmt.Sprintf("sh -c 'echo $$ >%s; echo proxy for %%r >&2; exec socat - TCP:%%h:%%p'", pidFile),
		User:    "tester",
		Stderr:  &stderr,
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := clientConfig(t, srv.addr, srv.hostKey.PublicKey(), key)
	cfg.Dial = dial
	c := dialClient(t, cfg)
	target := streamtest.NewTarget(t)
	exchangeThrough(t, c, fmt.Sprintf("127.0.0.1:%d", target.Port()))
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("socat (pid %d) is not running while the tunnel is up: %v", pid, err)
	}
	c.Close()
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("socat (pid %d) is still there after Close: kill 0: %v", pid, err)
	}
	if !strings.Contains(stderr.String(), "proxy for tester") {
		t.Errorf("the command's stderr (%q) did not come through, or %%r was not the user", stderr.String())
	}
}

// TestProxyCommandFails: a command that exits at once fails Dial with its
// exit status.
func TestProxyCommandFails(t *testing.T) {
	key := newSigner(t)
	dial, err := tunnel.ProxyCommandDialer(tunnel.ProxyCommandConfig{Command: "sh -c 'echo no route to %h >&2; exit 3'"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := clientConfig(t, "db.invalid:22", key.PublicKey(), key)
	cfg.Dial = dial
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = tunnel.Dial(ctx, cfg)
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "ProxyCommand") {
		t.Fatalf("Dial over a ProxyCommand that exits 3: %v; want its exit status", err)
	}
}

// TestBindDialer: -b makes the connection leave from the address given,
// as the server sees it.
func TestBindDialer(t *testing.T) {
	key := newSigner(t)
	var from atomic.Value
	srv := startServer(t, nil, newSigner(t), func(meta ssh.ConnMetadata, k ssh.PublicKey) (*auth.Options, error) {
		from.Store(meta.RemoteAddr().(*net.TCPAddr).IP.String())
		return keySet(t, authorizedLine("", key.PublicKey()))(meta, k)
	})
	for _, src := range []string{"127.0.0.2", "127.0.0.3"} {
		dial, err := tunnel.BindDialer(src)
		if err != nil {
			t.Fatal(err)
		}
		cfg := clientConfig(t, srv.addr, srv.hostKey.PublicKey(), key)
		cfg.Dial = dial
		c := dialClient(t, cfg)
		c.Close()
		if got := from.Load(); got != src {
			t.Errorf("-b %s: the server saw the connection from %v", src, got)
		}
	}
	for _, bad := range []string{"localhost", "127.0.0.1:22", ""} {
		if _, err := tunnel.BindDialer(bad); err == nil || !strings.Contains(err.Error(), "want an IP address") {
			t.Errorf("BindDialer(%q): %v; want an error that says what to give", bad, err)
		}
	}
	// An address this machine does not have says so.
	dial, _ := tunnel.BindDialer("192.0.2.1")
	_, err := dial(context.Background(), "tcp", srv.addr)
	if err == nil || !strings.Contains(err.Error(), "not on this machine") {
		t.Errorf("-b 192.0.2.1: %v; want it to say the address is not here", err)
	}
}
