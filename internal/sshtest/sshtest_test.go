package sshtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/ssh"

	"github.com/pinhole-dev/pinhole/internal/streamtest"
)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestMissing(t *testing.T) {
	tests := []struct {
		programs []string
		want     string
	}{
		{[]string{"sh"}, ""},
		{[]string{"/bin/sh", "sh"}, ""},
		{[]string{"sh", "/nonexistent/sbin/sshd"}, "sshtest: skipping: /nonexistent/sbin/sshd not found (install openssh-server, or run scripts/test which installs it)"},
		{[]string{"no-such-program-ssh-keygen"}, "sshtest: skipping: no-such-program-ssh-keygen not found (install it, or run scripts/test which installs it)"},
		{[]string{"/nonexistent/curl"}, "(install curl,"},
		{[]string{os.TempDir()}, "not found"}, // a directory is no program
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.programs, ","), func(t *testing.T) {
			got := missing(tt.programs)
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Fatalf("missing(%q) = %q, want %q", tt.programs, got, tt.want)
			}
		})
	}
}

func TestNeedSkips(t *testing.T) {
	ran := false
	t.Run("missing", func(t *testing.T) {
		Need(t, "/nonexistent/sbin/sshd")
		ran = true
	})
	if ran {
		t.Fatal("Need did not stop the test")
	}
}

func TestNewKey(t *testing.T) {
	dir := t.TempDir()
	k := NewKey(t, dir, "alice")
	fi, err := os.Stat(k.PrivateFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("private key mode %v, want 0600", fi.Mode().Perm())
	}
	pem, err := os.ReadFile(k.PrivateFile)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := os.ReadFile(k.PublicFile)
	if err != nil {
		t.Fatal(err)
	}
	parsed, comment, _, rest, err := ssh.ParseAuthorizedKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case string(signer.PublicKey().Marshal()) != string(k.Public.Marshal()):
		t.Error("the private key file holds another key")
	case string(k.Signer.PublicKey().Marshal()) != string(k.Public.Marshal()):
		t.Error("Signer and Public differ")
	case string(parsed.Marshal()) != string(k.Public.Marshal()):
		t.Error("the .pub file holds another key")
	case comment != "alice" || len(rest) != 0:
		t.Errorf(".pub comment %q, rest %q", comment, rest)
	case !strings.HasPrefix(k.AuthorizedLine, "ssh-ed25519 AAAA") || !strings.HasSuffix(k.AuthorizedLine, " alice\n"):
		t.Errorf("AuthorizedLine = %q", k.AuthorizedLine)
	}
}

func TestParseAllocatedPort(t *testing.T) {
	tests := []struct {
		stderr string
		want   int
	}{
		{"Allocated port 43567 for remote forward to 127.0.0.1:8000\n", 43567},
		{"Warning: Permanently added\r\nAllocated port 1 for remote forward to [::1]:22\r\n", 1},
		{"Allocated port 65535 for remote forward to h:1", 65535},
		{"Allocated port 65536 for remote forward to h:1\n", 0},
		{"Allocated port 0 for remote forward to h:1\n", 0},
		{"Allocated port +80 for remote forward to h:1\n", 0},
		{"Allocated port 080 for remote forward to h:1\n", 0},
		{"Allocated port 80\n", 0},
		{"Allocated port  for remote forward\n", 0},
		{"remote port forwarding failed for listen port 80\n", 0},
		{"", 0},
	}
	for _, tt := range tests {
		t.Run(tt.stderr, func(t *testing.T) {
			got, ok := parseAllocatedPort(tt.stderr)
			if got != tt.want || ok != (tt.want != 0) {
				t.Fatalf("parseAllocatedPort = %d, %v; want %d", got, ok, tt.want)
			}
		})
	}
}

func FuzzParseAllocatedPort(f *testing.F) {
	f.Add("Allocated port 43567 for remote forward to 127.0.0.1:8000\n")
	f.Add("debug1: x\nAllocated port 1 for remote forward to [::1]:22\r\n")
	f.Add("Allocated port 99999999999999999999 for remote forward")
	f.Fuzz(func(t *testing.T, stderr string) {
		port, ok := parseAllocatedPort(stderr)
		if !ok {
			return
		}
		if port < 1 || port > 65535 {
			t.Fatalf("port %d out of range", port)
		}
		if !strings.Contains(stderr, "Allocated port "+strconv.Itoa(port)+" for remote forward") {
			t.Fatalf("port %d is not in %q", port, stderr)
		}
	})
}

// newServer starts an sshd that lets key in, with extra config lines.
func newServer(t *testing.T, key *Key, extra ...string) *SSHD {
	t.Helper()
	return StartSSHD(t, SSHDConfig{AuthorizedKeys: key.AuthorizedLine, Extra: extra})
}

func dialTCP(ctx context.Context, port int) (*net.TCPConn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return nil, err
	}
	return c.(*net.TCPConn), nil
}

// exchange runs one streamtest exchange through 127.0.0.1:port.
func exchange(t *testing.T, port int, size int64) {
	t.Helper()
	ctx := testContext(t)
	conn, err := dialTCP(ctx, port)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := streamtest.Exchange(ctx, conn, 7, size, size); err != nil {
		t.Fatal(err)
	}
}

func TestLocalForward(t *testing.T) {
	Need(t, SSHDPath, SSHPath)
	key := NewKey(t, t.TempDir(), "client")
	sshd := newServer(t, key)
	target := streamtest.NewTarget(t)
	p, port := StartSSHForward(t, sshd.Options(key), func(port int) []string {
		return []string{"-L", fmt.Sprintf("127.0.0.1:%d:%s", port, target.Addr())}
	}, nil)
	t.Run("8 MiB each way", func(t *testing.T) {
		exchange(t, port, 8<<20)
	})
	t.Run("200 at once", func(t *testing.T) {
		err := streamtest.Many(testContext(t), 200, 16<<10, func(ctx context.Context) (net.Conn, error) {
			return dialTCP(ctx, port)
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	select {
	case <-p.Done():
		t.Fatalf("ssh exited: %v\n%s", p.Wait(), p.Stderr())
	default:
	}
	if !strings.Contains(sshd.Log(), "Accepted publickey for "+sshd.User) {
		t.Errorf("the sshd log shows no login:\n%s", sshd.Log())
	}
}

func TestRemoteForwardPortZero(t *testing.T) {
	Need(t, SSHDPath, SSHPath)
	key := NewKey(t, t.TempDir(), "client")
	sshd := newServer(t, key)
	target := streamtest.NewTarget(t)
	p := StartSSH(t, sshd.Options(key, "-R", "127.0.0.1:0:"+target.Addr()))
	port, err := p.WaitAllocatedPort(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	exchange(t, port, 8<<20)
}

func TestRemoteForward(t *testing.T) {
	Need(t, SSHDPath, SSHPath)
	key := NewKey(t, t.TempDir(), "client")
	sshd := newServer(t, key)
	target := streamtest.NewTarget(t)
	_, port := StartSSHForward(t, sshd.Options(key), func(port int) []string {
		return []string{"-R", fmt.Sprintf("127.0.0.1:%d:%s", port, target.Addr())}
	}, nil)
	exchange(t, port, 1<<20)
}

// TestRefusals proves the sshd checks what the tests rely on it to check,
// and that Extra overrides sshtest's own config lines.
func TestRefusals(t *testing.T) {
	Need(t, SSHDPath, SSHPath)
	dir := t.TempDir()
	key := NewKey(t, dir, "client")
	stranger := NewKey(t, dir, "stranger")
	target := streamtest.NewTarget(t)
	forward := fmt.Sprintf("127.0.0.1:%d:%s", RandomPort(), target.Addr())

	tests := []struct {
		name  string
		extra []string
		opts  func(s *SSHD) SSHOptions
		want  string
	}{
		{
			name: "unknown client key",
			opts: func(s *SSHD) SSHOptions { return s.Options(stranger) },
			want: "Permission denied (publickey)",
		},
		{
			name: "wrong host key",
			opts: func(s *SSHD) SSHOptions {
				o := s.Options(key)
				o.KnownHosts = fmt.Sprintf("[127.0.0.1]:%d %s", s.Port, strings.TrimSuffix(stranger.AuthorizedLine, " stranger\n")) + "\n"
				return o
			},
			want: "Host key verification failed",
		},
		{
			name:  "Extra overrides AllowTcpForwarding",
			extra: []string{"AllowTcpForwarding no"},
			opts:  func(s *SSHD) SSHOptions { return s.Options(key, "-R", forward) },
			want:  "remote port forwarding failed",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sshd := newServer(t, key, tt.extra...)
			p := StartSSH(t, tt.opts(sshd))
			select {
			case <-p.Done():
			case <-time.After(30 * time.Second):
				t.Fatalf("ssh still runs after 30 s; its stderr:\n%s", p.Stderr())
			}
			if p.Wait() == nil || !strings.Contains(p.Stderr(), tt.want) {
				t.Fatalf("ssh exited with %v; want a failure with %q in its stderr:\n%s", p.Wait(), tt.want, p.Stderr())
			}
		})
	}
}

func TestSSHDConfig(t *testing.T) {
	Need(t, SSHDPath)
	key := NewKey(t, t.TempDir(), "client")
	sshd := newServer(t, key, "GatewayPorts clientspecified", "Match User nobody-at-all", "AllowTcpForwarding no")
	cfg, err := os.ReadFile(sshd.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	text := string(cfg)
	gw, own, match := strings.Index(text, "GatewayPorts"), strings.Index(text, "HostKey"), strings.Index(text, "Match User")
	if !(gw >= 0 && gw < own && own < match) {
		t.Fatalf("want Extra first and Match last:\n%s", text)
	}
	if sshd.Pid == 0 || sshd.Port < 20000 || sshd.Addr != "127.0.0.1:"+strconv.Itoa(sshd.Port) {
		t.Fatalf("SSHD = %+v", sshd)
	}
	want := fmt.Sprintf("[127.0.0.1]:%d ssh-ed25519 ", sshd.Port)
	if line := sshd.KnownHostsLine(); !strings.HasPrefix(line, want) || !strings.HasSuffix(line, "\n") {
		t.Fatalf("KnownHostsLine = %q, want %q...", line, want)
	}
	sshd.Stop()
	sshd.Stop()
	if c, err := net.Dial("tcp", sshd.Addr); err == nil {
		c.Close()
		t.Fatalf("sshd accepts after Stop (%v -> %v)", c.LocalAddr(), c.RemoteAddr())
	}
}
