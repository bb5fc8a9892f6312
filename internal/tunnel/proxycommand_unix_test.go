//go:build unix

package tunnel_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/sshtest"
	"github.com/pinhole-dev/pinhole/internal/streamtest"
	"github.com/pinhole-dev/pinhole/internal/tunnel"
)

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
