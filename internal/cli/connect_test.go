package cli

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/ssh"

	"github.com/pinhole-dev/pinhole/internal/streamtest"
)

// world is a pinhole server run through Main, and what a client needs to
// reach it: an identity in its authorized_keys and a known_hosts file.
type world struct {
	dir, addr, identity, known string
	server                     *proc
	metrics                    string // the server's --metrics address, if given
}

func newWorld(t *testing.T, keyOptions string) *world {
	t.Helper()
	return newWorldWith(t, keyOptions)
}

// newWorldWith is newWorld with more flags for the server.
func newWorldWith(t *testing.T, keyOptions string, serverFlags ...string) *world {
	t.Helper()
	dir := t.TempDir()
	identity, pub := writeKey(t, dir, "id_ed25519")
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
	if keyOptions != "" {
		line = keyOptions + " " + line
	}
	authKeys := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authKeys, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"server", "--listen", "127.0.0.1:0", "--host-key", filepath.Join(dir, "host_key"), "--authorized-keys", authKeys}, serverFlags...)
	srv := start(t, args...)
	var metrics string
	if slices.Contains(serverFlags, "--metrics") { // said before listening
		metrics = srv.waitLine(t, `metrics on http://(\S+)/metrics`)[1]
	}
	addr := srv.waitLine(t, `listening on (\S+)`)[1]
	srv.waitLine(t, `host key ssh-ed25519 SHA256:`)
	return &world{dir: dir, addr: addr, identity: identity, known: filepath.Join(dir, "known_hosts"), server: srv, metrics: metrics}
}

// connectArgs are the flags that point pinhole connect at w's server.
func (w *world) connectArgs(extra ...string) []string {
	_, port, _ := net.SplitHostPort(w.addr)
	// -F none: no ~/.ssh/config of whoever runs the tests gets in.
	args := []string{"connect", "-F", "none", "-p", port, "-i", w.identity, "--known-hosts", w.known, "--keepalive", "1s"}
	return append(append(args, extra...), "tester@127.0.0.1")
}

// TestConnectEndToEnd: pinhole connect → pinhole server through Main, -L
// and -R, flags after the destination as with ssh.
func TestConnectEndToEnd(t *testing.T) {
	target := streamtest.NewTarget(t)
	w := newWorld(t, "")
	args := w.connectArgs("-L", fmt.Sprintf("0:127.0.0.1:%d", target.Port()))
	args = append(args, "-R", fmt.Sprintf("0:127.0.0.1:%d", target.Port()))
	c := start(t, args...)
	local := c.waitLine(t, `-L \S+: listening on (\S+),`)[1]
	remote := c.waitLine(t, `-R \S+: the server listens on \S+:(\d+),`)[1]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, addr := range []string{local, net.JoinHostPort("127.0.0.1", remote)} {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := streamtest.Exchange(ctx, conn, 5, 4<<20, 4<<20); err != nil {
			t.Fatalf("through %s: %v", addr, err)
		}
		conn.Close()
	}
	known, err := os.ReadFile(w.known)
	if err != nil || !strings.Contains(string(known), "ssh-ed25519") {
		t.Fatalf("accept-new did not record the host key in known_hosts: %q, %v", known, err)
	}
}

// TestConnectErrors: each bad start exits at once, non-zero, saying what to
// do next.
func TestConnectErrors(t *testing.T) {
	w := newWorld(t, "")
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	_, takenPort, _ := net.SplitHostPort(taken.Addr().String())
	otherKey, _ := writeKey(t, w.dir, "id_other")
	wrongKnown := filepath.Join(w.dir, "wrong_known_hosts")
	_, wrongPub := writeKey(t, w.dir, "not_the_host_key")
	_, port, _ := net.SplitHostPort(w.addr)
	os.WriteFile(wrongKnown, []byte("[127.0.0.1]:"+port+" "+string(ssh.MarshalAuthorizedKey(wrongPub))), 0o600)

	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"malformed spec", w.connectArgs("-L", "8080:db"), 2, []string{`want [bind:]port:host:hostport`}},
		{"bad port", w.connectArgs("-L", "99999:db:80"), 2, []string{"99999"}},
		{"nothing to forward", w.connectArgs(), 1, []string{"give at least one -L, -R or -D"}},
		{"local port in use", w.connectArgs("-L", takenPort+":127.0.0.1:9"), 1, []string{"address already in use", "pick another"}},
		{"dynamic port in use", w.connectArgs("-D", takenPort), 1, []string{"address already in use", "pick another"}},
		{"unknown key", append([]string{"connect", "-p", port, "-i", otherKey, "--known-hosts", w.known, "-L", "0:127.0.0.1:9"}, "tester@127.0.0.1"), 1, []string{"refused our keys", "authorized_keys"}},
		{"host key mismatch", append([]string{"connect", "-p", port, "-i", w.identity, "--known-hosts", wrongKnown, "-L", "0:127.0.0.1:9"}, "tester@127.0.0.1"), 1, []string{"SHA256:", "ssh-keygen -R"}},
		{"unknown host with yes", append([]string{"connect", "-p", port, "-i", w.identity, "--known-hosts", filepath.Join(w.dir, "empty"), "--host-key-check", "yes", "-L", "0:127.0.0.1:9"}, "tester@127.0.0.1"), 1, []string{"is not in", "--host-key-check accept-new", "ssh-keyscan -p " + port + " 127.0.0.1"}},
		{"open proxy", w.connectArgs("-D", "0.0.0.0:0"), 1, []string{"--proxy-auth", "--allow-open-proxy"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			began := time.Now()
			code, _, stderr := run(t, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, tc.code, stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr does not say %q:\n%s", w, stderr)
				}
			}
			if d := time.Since(began); d > 10*time.Second {
				t.Errorf("took %v; a bad start must fail at once", d)
			}
		})
	}
}

// TestServerStart: the banner names the fingerprint and a line to paste,
// and a missing authorized_keys is a warning, not a failure.
func TestServerStart(t *testing.T) {
	dir := t.TempDir()
	srv := start(t, "server", "--listen", "127.0.0.1:0", "--host-key", filepath.Join(dir, "k"), "--authorized-keys", filepath.Join(dir, "missing"))
	srv.waitLine(t, `generated a new host key`)
	fp := srv.waitLine(t, `host key ssh-ed25519 (SHA256:\S+)`)[1]
	srv.waitLine(t, `ssh -N -p \d+ -R 8080:localhost:3000 \S+@127\.0\.0\.1`)
	if !strings.Contains(srv.stderr.String(), "every key is refused") {
		t.Errorf("no warning about the missing authorized_keys:\n%s", srv.stderr)
	}
	data, err := os.ReadFile(filepath.Join(dir, "k"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := ssh.ParsePrivateKey(data)
	if err != nil {
		t.Fatal(err)
	}
	if got := ssh.FingerprintSHA256(key.PublicKey()); got != fp {
		t.Fatalf("banner says %s, the key file holds %s", fp, got)
	}
}

// TestConnectMissingIdentity: a -i that does not exist beside a good one
// is a warning, as in ssh; when every -i is missing, connect fails.
func TestConnectMissingIdentity(t *testing.T) {
	w := newWorld(t, "")
	missing := filepath.Join(w.dir, "no_such_key")
	_, port, _ := net.SplitHostPort(w.addr)
	c := start(t, "connect", "-p", port, "-i", missing, "-i", w.identity, "--known-hosts", w.known, "-L", "0:127.0.0.1:9", "tester@127.0.0.1")
	c.waitLine(t, `-L \S+: listening on`)
	if s := c.stderr.String(); !strings.Contains(s, "warning: auth: identity file "+missing+" does not exist") {
		t.Fatalf("stderr:\n%s\nwant a warning naming %s", s, missing)
	}
	code, _, stderr := run(t, "connect", "-p", port, "-i", missing, "-i", missing+"2", "--known-hosts", w.known, "-L", "0:127.0.0.1:9", "tester@127.0.0.1")
	if code != 1 || !strings.Contains(stderr, missing+" does not exist") || !strings.Contains(stderr, "ssh-keygen") {
		t.Fatalf("every -i missing: exit %d, stderr:\n%s\nwant exit 1 naming %s", code, stderr, missing)
	}
}
