package cli

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/streamtest"
)

// writeConfig writes an ssh_config for w's server under the alias myalias.
func (w *world) writeConfig(t *testing.T, extra string) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(w.addr)
	text := fmt.Sprintf(`# pinhole's own test config
Host myalias
  HostName %s
  Port=%s
  User tester
  IdentityFile %s
  IdentityFile %s
  IdentitiesOnly yes
  UserKnownHostsFile %s
  ServerAliveInterval 1
  Compression yes
%s
Host *
  Port 1
  ForwardAgent no
`, host, port, filepath.Join(w.dir, "missing_key_skipped"), w.identity, w.known, extra)
	path := filepath.Join(w.dir, "ssh_config")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestConnectSSHConfig: pinhole connect ALIAS reaches pinhole server
// through what ssh_config says about the alias (HostName, Port, User,
// IdentityFile, UserKnownHostsFile) and sets up its LocalForward; -v lists
// the keys it ignored; a -L on the command line comes on top.
func TestConnectSSHConfig(t *testing.T) {
	target := streamtest.NewTarget(t)
	w := newWorld(t, "")
	config := w.writeConfig(t, fmt.Sprintf("  LocalForward 127.0.0.1:0 127.0.0.1:%d\n  DynamicForward 0", target.Port()))
	c := start(t, "connect", "-F", config, "-v", "myalias", "-L", fmt.Sprintf("0:127.0.0.1:%d", target.Port()))
	c.waitLine(t, `connected to 127\.0\.0\.1:\d+ as tester`)
	var locals []string
	for len(locals) < 2 {
		locals = append(locals, c.waitLine(t, `-L \S+: listening on (\S+),`)[1])
	}
	c.waitLine(t, `-D \S+: SOCKS4/4a/5 and HTTP proxy on 127\.0\.0\.1:\d+`)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, addr := range locals {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := streamtest.Exchange(ctx, conn, 3, 1<<20, 1<<20); err != nil {
			t.Fatalf("through %s: %v", addr, err)
		}
		conn.Close()
	}
	stderr := c.stderr.String()
	for _, want := range []string{
		"ignored (pinhole does not use it) " + config + ":11: Compression yes",
		"ignored (pinhole does not use it) " + config + ":16: ForwardAgent no",
		"myalias is 127.0.0.1",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("-v does not say %q:\n%s", want, stderr)
		}
	}
	if data, err := os.ReadFile(w.known); err != nil || !strings.Contains(string(data), "[127.0.0.1]:") {
		t.Errorf("the host key was not recorded in the UserKnownHostsFile under the HostName: %q %v", data, err)
	}
}

// TestConnectSSHConfigErrors: what ssh_config asks that pinhole cannot do,
// or a config that does not parse, fails at once saying what to do.
func TestConnectSSHConfigErrors(t *testing.T) {
	w := newWorld(t, `permitlisten="127.0.0.1:1"`)
	config := w.writeConfig(t, "  LocalForward 0 127.0.0.1:9")
	bad := filepath.Join(w.dir, "bad_config")
	os.WriteFile(bad, []byte("Host myalias\n  Port many\n"), 0o600)
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"proxyjump unreachable", []string{"-F", config, "-o", "ProxyJump=tester@127.0.0.1:1", "myalias"}, 1, []string{"127.0.0.1:1"}},
		{"proxycommand fails", []string{"-F", config, "-o", "ProxyCommand=sh -c \"exit 3\"", "myalias"}, 1, []string{"exit status 3"}},
		{"parse error", []string{"-F", bad, "myalias"}, 1, []string{bad + ":2:", "Port 2222"}},
		{"missing -F", []string{"-F", filepath.Join(w.dir, "nope"), "myalias"}, 1, []string{"no such file", "-F none"}},
		{"-o not a setting", []string{"-F", config, "-o", "=x", "myalias"}, 1, []string{"-o Key=Value"}},
		{"command line port wins", []string{"-F", config, "-p", "1", "myalias"}, 1, []string{"127.0.0.1:1"}},
		{"-o wins over the file", []string{"-F", config, "-o", "HostName=127.0.0.2", "-o", "Port=1", "myalias"}, 1, []string{"127.0.0.2:1"}},
		{"known hosts none", []string{"-F", config, "-o", "UserKnownHostsFile=none", "myalias"}, 1, []string{"UserKnownHostsFile none"}},
		{"strict yes from config", []string{"-F", config, "-o", "UserKnownHostsFile=" + filepath.Join(w.dir, "empty_known"), "-o", "StrictHostKeyChecking=ask", "myalias"}, 1, []string{"is not in"}},
		{"exit on forward failure", []string{"-F", config, "-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:9", "myalias"}, 1, []string{"ExitOnForwardFailure: -R"}},
		{"-4 and -6", []string{"-F", config, "-4", "-6", "myalias"}, 1, []string{"pick one"}},
		{"nothing to forward", []string{"-F", "none", "-p", "1", "127.0.0.1"}, 1, []string{"LocalForward"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := run(t, append([]string{"connect"}, tc.args...)...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, tc.code, stderr)
			}
			for _, want := range tc.want {
				if !strings.Contains(stderr, want) {
					t.Errorf("stderr does not say %q:\n%s", want, stderr)
				}
			}
		})
	}
}

// TestConnectSSHConfigAddresses: BindAddress is where the connection to
// the server comes from; GatewayPorts opens a -L without a bind address to
// every address.
func TestConnectSSHConfigAddresses(t *testing.T) {
	w := newWorld(t, "")
	config := w.writeConfig(t, "  BindAddress 127.0.0.3\n  GatewayPorts yes")
	c := start(t, "connect", "-F", config, "myalias", "-L", "0:127.0.0.1:9")
	addr := c.waitLine(t, `-L \*:0:127\.0\.0\.1:9: listening on (\S+),`)[1]
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsUnspecified() {
		t.Errorf("with GatewayPorts yes the -L listens on %s, want every address", addr)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(w.server.stderr.String(), "peer=127.0.0.3:") {
		if time.Now().After(deadline) {
			t.Fatalf("the server did not see the client come from BindAddress 127.0.0.3:\n%s", w.server.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// AddressFamily inet6 (-6) cannot reach an IPv4 HostName.
	code, _, stderr := run(t, "connect", "-F", config, "-o", "BindAddress=::1", "-6", "-L", "0:127.0.0.1:9", "myalias")
	if code != 1 || !strings.Contains(stderr, "cannot reach") {
		t.Errorf("-6 to an IPv4 HostName: exit %d, stderr:\n%s", code, stderr)
	}
}

// TestConnectSSHConfigProxy: ProxyJump and ProxyCommand from ssh_config
// (here -o) carry the connection: the server is its own jump host, and
// socat is the ProxyCommand.
func TestConnectSSHConfigProxy(t *testing.T) {
	w := newWorld(t, "")
	config := w.writeConfig(t, "")
	_, port, _ := net.SplitHostPort(w.addr)
	target := streamtest.NewTarget(t)
	cases := [][]string{{"-o", "ProxyJump=tester@127.0.0.1:" + port}}
	if _, err := exec.LookPath("socat"); err == nil {
		cases = append(cases, []string{"-o", "ProxyCommand=socat - TCP:%h:%p"})
	} else {
		t.Log("socat is not installed: the ProxyCommand case is skipped")
	}
	for _, extra := range cases {
		t.Run(extra[1], func(t *testing.T) {
			args := append([]string{"connect", "-F", config}, extra...)
			args = append(args, "-L", fmt.Sprintf("0:127.0.0.1:%d", target.Port()), "myalias")
			c := start(t, args...)
			local := c.waitLine(t, `-L 0:127\.0\.0\.1:\d+: listening on (\S+),`)[1]
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			conn, err := net.Dial("tcp", local)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if err := streamtest.Exchange(ctx, conn, 4, 256<<10, 256<<10); err != nil {
				t.Fatalf("through %s with %s: %v", local, extra[1], err)
			}
		})
	}
}
