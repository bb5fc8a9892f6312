package tunnel_test

import (
	"context"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/pinhole-dev/pinhole/internal/auth"
	"github.com/pinhole-dev/pinhole/internal/ssh"
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
