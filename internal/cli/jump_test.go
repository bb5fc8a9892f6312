package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/auth"
	"github.com/pinhole-dev/pinhole/internal/ssh"
	"github.com/pinhole-dev/pinhole/internal/sshtest"
	"github.com/pinhole-dev/pinhole/internal/streamtest"
	"github.com/pinhole-dev/pinhole/internal/tunnel"
)

// TestConnectStdioUnderOpenSSH: a stock ssh reaches a stock sshd with
// ProxyCommand='pinhole connect -W %h:%p ... jumphost', the jump host a
// pinhole server; the command ssh runs there prints through it.
func TestConnectStdioUnderOpenSSH(t *testing.T) {
	sshtest.Need(t, sshtest.SSHPath, sshtest.SSHDPath)
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildPinhole(t)
	w := newWorld(t, "")
	key := sshtest.NewKey(t, t.TempDir(), "id_target")
	sshd := sshtest.StartSSHD(t, sshtest.SSHDConfig{AuthorizedKeys: key.AuthorizedLine})
	_, wport, _ := net.SplitHostPort(w.addr)
	plain := fmt.Sprintf("%s connect -W %%h:%%p -p %s -i %s --known-hosts %s tester@127.0.0.1", bin, wport, w.identity, w.known)
	// -W takes -J: here pinhole server is its own jump host.
	jumped := fmt.Sprintf("%s connect -W %%h:%%p -J tester@%s -p %s -i %s --known-hosts %s tester@127.0.0.1", bin, w.addr, wport, w.identity, w.known)
	for _, proxy := range []string{plain, jumped} {
		o := sshd.Options(key, "-o", "ProxyCommand="+proxy)
		o.Session = true
		o.Command = []string{"echo", "hello-through-pinhole"}
		p := sshtest.StartSSH(t, o)
		if err := p.Wait(); err != nil {
			t.Fatalf("ssh with ProxyCommand %s: %v; its output:\n%s", proxy, err, p.Stderr())
		}
		out := p.Stderr()
		if !strings.Contains(out, "hello-through-pinhole") {
			t.Fatalf("the command's output did not come back through ProxyCommand %s:\n%s", proxy, out)
		}
		if strings.Contains(out, "level=INFO") {
			t.Errorf("pinhole connect -W wrote info lines to ssh's terminal:\n%s", out)
		}
	}
	// ssh had no way to sshd but its ProxyCommand, and pinhole server saw
	// that command log in: once, then twice (as jump host and destination).
	if n := strings.Count(w.server.stderr.String(), `msg="client connected"`); n != 3 {
		t.Errorf("pinhole server logged %d logins, want 3:\n%s", n, w.server.stderr)
	}
}

// TestConnectJumpAndBind: pinhole connect -J through a pinhole server to a
// stock sshd, -L through it, leaving from -b 127.0.0.2; both hosts' keys
// land in known_hosts under their own names.
func TestConnectJumpAndBind(t *testing.T) {
	sshtest.Need(t, sshtest.SSHDPath)
	w := newWorld(t, "")
	key := sshtest.NewKey(t, t.TempDir(), "id_target")
	sshd := sshtest.StartSSHD(t, sshtest.SSHDConfig{AuthorizedKeys: key.AuthorizedLine})
	target := streamtest.NewTarget(t)
	args := []string{"connect", "-J", "tester@" + w.addr, "-b", "127.0.0.2",
		"-p", fmt.Sprint(sshd.Port), "-i", w.identity, "-i", key.PrivateFile, "--known-hosts", w.known, "--keepalive", "1s",
		"-L", fmt.Sprintf("0:127.0.0.1:%d", target.Port()), sshd.User + "@127.0.0.1"}
	c := start(t, args...)
	local := c.waitLine(t, `-L \S+: listening on (\S+),`)[1]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := net.Dial("tcp", local)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := streamtest.Exchange(ctx, conn, 1, 1<<20, 1<<20); err != nil {
		t.Fatalf("through -L %s via -J: %v", local, err)
	}
	known, err := os.ReadFile(w.known)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"[127.0.0.1]:" + fmt.Sprint(sshd.Port), "[127.0.0.1]:" + strings.Split(w.addr, ":")[1]} {
		if !strings.Contains(string(known), name+" ") {
			t.Errorf("known_hosts has no line for %s:\n%s", name, known)
		}
	}
	// The jump host saw us come from -b's address.
	if !strings.Contains(w.server.stderr.String(), "peer=127.0.0.2:") {
		t.Errorf("the jump host did not see the connection from 127.0.0.2 (-b):\n%s", w.server.stderr)
	}
}

// TestProxyCommandPinholeW: pinhole's own dialing through ProxyCommand
// (as ssh_config sets it) running pinhole connect -W: pinhole reaches a
// stock sshd through a pinhole server.
func TestProxyCommandPinholeW(t *testing.T) {
	sshtest.Need(t, sshtest.SSHDPath)
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildPinhole(t)
	w := newWorld(t, "")
	key := sshtest.NewKey(t, t.TempDir(), "id_target")
	sshd := sshtest.StartSSHD(t, sshtest.SSHDConfig{AuthorizedKeys: key.AuthorizedLine})
	_, wport, _ := net.SplitHostPort(w.addr)
	var stderr syncBuffer
	e := &env{stderr: &stderr, log: quietLogger(&env{stderr: &stderr})}
	ds := dialSettings{ProxyCommand: fmt.Sprintf("%s connect -W %%h:%%p -p %s -i %s --known-hosts %s tester@127.0.0.1", bin, wport, w.identity, w.known)}
	kh, err := auth.OpenKnownHosts(w.known, auth.HostKeyAcceptNew, nil)
	if err != nil {
		t.Fatal(err)
	}
	dial, _, err := ds.dialer(e, sshd.User, "127.0.0.1", []ssh.AuthMethod{ssh.PublicKeys(key.Signer)}, kh)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := tunnel.Dial(ctx, tunnel.ClientConfig{Addr: sshd.Addr, User: sshd.User, Auth: []ssh.AuthMethod{ssh.PublicKeys(key.Signer)}, HostKeyCallback: kh.Callback(), Dial: dial})
	if err != nil {
		t.Fatalf("%v; the command's stderr:\n%s", err, stderr.String())
	}
	defer c.Close()
	target := streamtest.NewTarget(t)
	conn, err := c.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", target.Port()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := streamtest.Exchange(ctx, conn, 1, 1<<20, 1<<20); err != nil {
		t.Fatalf("through ProxyCommand pinhole connect -W: %v", err)
	}
}

// TestConnectDialErrors: bad -J, -W and -b say what to write instead.
func TestConnectDialErrors(t *testing.T) {
	w := newWorld(t, "")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"bad -J", w.connectArgs("-J", "a@", "-L", "0:127.0.0.1:9"), "want [user@]host[:port]"},
		{"bad -W", w.connectArgs("-W", "db"), "want host:port"},
		{"-W with -L", w.connectArgs("-W", "db:5432", "-L", "0:127.0.0.1:9"), "drop -L, -R and -D"},
		{"bad -b", w.connectArgs("-b", "eth0", "-L", "0:127.0.0.1:9"), "want an IP address"},
		{"-W refused", w.connectArgs("-W", "127.0.0.1:1"), "-W 127.0.0.1:1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := run(t, tc.args...)
			if code != 1 || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, stderr:\n%s\nwant exit 1 and %q", code, stderr, tc.want)
			}
			if stdout != "" {
				t.Errorf("stdout %q, want nothing", stdout)
			}
		})
	}
}

// TestStdioForwardHalfClose: -W passes EOF on stdin on as EOF on the
// stream, the far end still answers, and -W returns once it closes.
func TestStdioForwardHalfClose(t *testing.T) {
	w := newWorld(t, "")
	// The far end reads to EOF, then says how much it got and closes.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		fmt.Fprintf(c, "got %d bytes", n)
	}()
	signers, closeAgent, err := auth.ClientSigners([]string{w.identity}, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAgent()
	kh, err := auth.OpenKnownHosts(w.known, auth.HostKeyAcceptNew, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := tunnel.Dial(ctx, tunnel.ClientConfig{Addr: w.addr, User: "tester", Auth: []ssh.AuthMethod{ssh.PublicKeys(signers...)}, HostKeyCallback: kh.Callback()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	in := strings.NewReader(strings.Repeat("x", 100000))
	var out strings.Builder
	done := make(chan error, 1)
	go func() { done <- stdioForward(ctx, c, ln.Addr().String(), in, &out) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("stdioForward did not return within 20 s of the far end closing")
	}
	if out.String() != "got 100000 bytes" {
		t.Fatalf("the far end answered %q, want %q", out.String(), "got 100000 bytes")
	}
}

// TestDialSettingsResolveHop: a -J alias is completed by ResolveHop (as
// ssh_config's HostName, Port and User would) before it is dialled, and
// an error from it names the hop.
func TestDialSettingsResolveHop(t *testing.T) {
	w := newWorld(t, "")
	host, portStr, _ := net.SplitHostPort(w.addr)
	var port uint16
	fmt.Sscan(portStr, &port)
	signers, closeAgent, err := auth.ClientSigners([]string{w.identity}, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeAgent()
	authm := []ssh.AuthMethod{ssh.PublicKeys(signers...)}
	kh, err := auth.OpenKnownHosts(w.known, auth.HostKeyAcceptNew, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{stderr: io.Discard, log: quietLogger(&env{stderr: io.Discard})}
	var resolved []string
	ds := dialSettings{Jump: "bastion", ResolveHop: func(h tunnel.JumpHost) (tunnel.JumpHost, error) {
		resolved = append(resolved, h.Host)
		if h.Host != "bastion" {
			return h, fmt.Errorf("no such Host in ssh_config")
		}
		h.Host, h.Port, h.User = host, port, "tester"
		return h, nil
	}}
	dial, _, err := ds.dialer(e, "tester", host, authm, kh)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := tunnel.Dial(ctx, tunnel.ClientConfig{Addr: w.addr, User: "tester", Auth: authm, HostKeyCallback: kh.Callback(), Dial: dial})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if len(resolved) != 1 {
		t.Errorf("ResolveHop called for %q, want once for bastion", resolved)
	}
	// The server logs a login just after it answers it: give it a moment.
	deadline := time.Now().Add(5 * time.Second)
	for strings.Count(w.server.stderr.String(), `msg="client connected"`) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := strings.Count(w.server.stderr.String(), `msg="client connected"`); n != 2 {
		t.Errorf("the server saw %d logins, want 2 (as the jump host, then as the destination):\n%s", n, w.server.stderr)
	}
	ds.Jump = "elsewhere"
	if _, _, err := ds.dialer(e, "tester", host, authm, kh); err == nil || !strings.Contains(err.Error(), "-J elsewhere: no such Host") {
		t.Errorf("a hop ResolveHop refuses: %v", err)
	}
}
