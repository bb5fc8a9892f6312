package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/config"
	"github.com/pinhole-dev/pinhole/internal/sshtest"
	"github.com/pinhole-dev/pinhole/internal/streamtest"
)

// TestKeyLimitsStockSSH: pinhole server's per-key limits against a stock
// ssh. --max-ports-per-key 1 refuses the second -R of a key (ssh exits
// with ExitOnForwardFailure; RFC 4254 gives it no reason, the server's
// log names the limit). A key whose authorized_keys line says
// pinhole-limits="streams=1" gets its second -L stream refused, and ssh
// prints the reason naming the limit; its first stream carries on.
func TestKeyLimitsStockSSH(t *testing.T) {
	sshtest.Need(t, sshtest.SSHPath)
	dir := t.TempDir()
	ports := sshtest.NewKey(t, dir, "id_ports")
	streams := sshtest.NewKey(t, dir, "id_streams")
	authKeys := filepath.Join(dir, "authorized_keys")
	lines := ports.AuthorizedLine + `pinhole-limits="streams=1" ` + streams.AuthorizedLine
	if err := os.WriteFile(authKeys, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := start(t, "server", "--listen", "127.0.0.1:0", "--host-key", filepath.Join(dir, "host_key"), "--authorized-keys", authKeys,
		"--max-ports-per-key", "1")
	addr := srv.waitLine(t, `listening on (\S+)`)[1]
	srv.waitLine(t, `host key ssh-ed25519 SHA256:`)
	_, port, _ := net.SplitHostPort(addr)
	known := "[127.0.0.1]:" + port + " " + (&tlsWorld{world: &world{dir: dir}}).hostKeyLine(t)
	target := streamtest.NewTarget(t)

	t.Run("ports", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		p := sshtest.StartSSH(t, sshtest.SSHOptions{Addr: addr, User: "tester", Key: ports, KnownHosts: known,
			// Two forwards ssh does not take for one (it drops repeats).
			Args: []string{"-R", "0:127.0.0.1:" + strconv.Itoa(target.Port()), "-R", "0:localhost:" + strconv.Itoa(target.Port())}})
		select {
		case <-p.Done():
		case <-ctx.Done():
			t.Fatalf("ssh with a -R past the key's ports did not exit; stderr:\n%s\nserver:\n%s", p.Stderr(), srv.stderr)
		}
		if !strings.Contains(p.Stderr(), "remote port forwarding failed") {
			t.Errorf("ssh did not say its -R failed:\n%s", p.Stderr())
		}
		for _, want := range []string{`msg="per-key limit reached"`, "limit=ports max=1 own=false", "its limit (--max-ports-per-key 1)"} {
			if !strings.Contains(srv.stderr.String(), want) {
				t.Errorf("the server log does not say %q:\n%s", want, srv.stderr)
			}
		}
	})

	t.Run("streams", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		// A target whose accepts the test sees: the first stream is the
		// key's one once the server has dialed it.
		tl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer tl.Close()
		accepted := make(chan net.Conn, 4)
		go func() {
			for {
				c, err := tl.Accept()
				if err != nil {
					return
				}
				accepted <- c
			}
		}()
		p, lport := sshtest.StartSSHForward(t, sshtest.SSHOptions{Addr: addr, User: "tester", Key: streams, KnownHosts: known}, func(p int) []string {
			return []string{"-L", fmt.Sprintf("127.0.0.1:%d:%s", p, tl.Addr())}
		}, func(int) bool { return true })
		local := fmt.Sprintf("127.0.0.1:%d", lport)
		var first net.Conn
		deadline := time.Now().Add(15 * time.Second)
		for first == nil {
			if first, err = net.Dial("tcp", local); err != nil && time.Now().After(deadline) {
				t.Fatalf("ssh -L is not listening on %s: %v; stderr:\n%s", local, err, p.Stderr())
			}
			time.Sleep(10 * time.Millisecond)
		}
		defer first.Close()
		var far net.Conn
		select {
		case far = <-accepted:
			defer far.Close()
		case <-ctx.Done():
			t.Fatalf("the first stream did not reach its target; stderr:\n%s", p.Stderr())
		}
		second, err := net.Dial("tcp", local)
		if err != nil {
			t.Fatal(err)
		}
		defer second.Close()
		want := "is at its 1 concurrent streams (pinhole-limits streams=1 in authorized_keys); close some, or ask the server's admin to raise it"
		if err := p.WaitStderr(ctx, want); err != nil {
			t.Fatalf("ssh did not print the refusal %q: %v; stderr:\n%s", want, err, p.Stderr())
		}
		t.Logf("ssh says: %s", strings.TrimSpace(p.Stderr()))
		// The first stream carries on, both ways.
		first.SetDeadline(time.Now().Add(10 * time.Second))
		far.SetDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 4)
		if _, err := first.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(far, buf); err != nil || string(buf) != "ping" {
			t.Fatalf("the first stream after the refusal: %q %v", buf, err)
		}
		if _, err := far.Write([]byte("pong")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(first, buf); err != nil || string(buf) != "pong" {
			t.Fatalf("the first stream after the refusal, back: %q %v", buf, err)
		}
	})
}

// TestKeyLimitFlagsMatchFile: the per-key limits' flags and the keys of
// the server's file have the same defaults.
func TestKeyLimitFlagsMatchFile(t *testing.T) {
	s, err := config.ParseServer("s.toml", []byte("listen = \":22\"\n"), config.ServerChecks{})
	if err != nil {
		t.Fatal(err)
	}
	file := map[string]int{
		"max-names-per-key":       s.Settings.MaxNamesPerKey,
		"max-ports-per-key":       s.Settings.MaxPortsPerKey,
		"max-streams-per-key":     s.Settings.MaxStreamsPerKey,
		"max-stream-rate-per-key": s.Settings.MaxStreamRatePerKey,
	}
	fs := flagSet(commandNamed(t, "server"))
	for name, n := range file {
		f := fs.Lookup(name)
		if f == nil {
			t.Errorf("no flag --%s", name)
			continue
		}
		if f.DefValue != strconv.Itoa(n) {
			t.Errorf("--%s defaults to %s, the file's key to %d", name, f.DefValue, n)
		}
	}
}
