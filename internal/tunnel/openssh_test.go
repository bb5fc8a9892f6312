package tunnel_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/spec"
	"github.com/pinhole-dev/pinhole/internal/ssh"
	"github.com/pinhole-dev/pinhole/internal/ssh/knownhosts"
	"github.com/pinhole-dev/pinhole/internal/sshtest"
	"github.com/pinhole-dev/pinhole/internal/streamtest"
	"github.com/pinhole-dev/pinhole/internal/tunnel"
)

// pinholeForSSH runs a pinhole server that lets key in, and returns the
// options for the real ssh client to reach it.
func pinholeForSSH(t *testing.T, keyOptions string) (*server, *sshtest.Key) {
	t.Helper()
	key := sshtest.NewKey(t, t.TempDir(), "client")
	srv := startServer(t, nil, newSigner(t), keySet(t, authorizedLine(keyOptions, key.Public)))
	return srv, key
}

func sshOptions(srv *server, key *sshtest.Key, args ...string) sshtest.SSHOptions {
	return sshtest.SSHOptions{
		Addr:       srv.addr,
		User:       "tester",
		Key:        key,
		KnownHosts: knownhosts.Line([]string{srv.addr}, srv.hostKey.PublicKey()) + "\n",
		Args:       args,
	}
}

// TestOpenSSHLocalToPinhole is path 1: OpenSSH ssh -N -L → pinhole server.
func TestOpenSSHLocalToPinhole(t *testing.T) {
	sshtest.Need(t, sshtest.SSHPath)
	target := streamtest.NewTarget(t)
	srv, key := pinholeForSSH(t, "")
	_, port := sshtest.StartSSHForward(t, sshOptions(srv, key), func(p int) []string {
		return []string{"-L", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:%d", p, target.Port())}
	}, nil)
	checkPath(t, fmt.Sprintf("127.0.0.1:%d", port))
}

// TestOpenSSHCiphers carries data from OpenSSH's ssh through a pinhole
// server in each cipher the server can offer, chacha20-poly1305 (through the
// fork's assembly path) among them.
func TestOpenSSHCiphers(t *testing.T) {
	sshtest.Need(t, sshtest.SSHPath)
	target := streamtest.NewTarget(t)
	key := sshtest.NewKey(t, t.TempDir(), "client")
	all, err := tunnel.ParseCiphers("aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr")
	if err != nil {
		t.Fatal(err)
	}
	srv := startServerConfig(t, nil, tunnel.ServerConfig{
		HostKeys:  []ssh.Signer{newSigner(t)},
		Authorize: keySet(t, authorizedLine("", key.Public)),
		Ciphers:   all,
		Logger:    testLogger(t).With("side", "server"),
	})
	for _, cipher := range all {
		t.Run(cipher, func(t *testing.T) {
			_, port := sshtest.StartSSHForward(t, sshOptions(srv, key, "-c", cipher), func(p int) []string {
				return []string{"-L", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:%d", p, target.Port())}
			}, nil)
			checkPathSmall(t, port)
		})
	}
}

// checkPathSmall sends 1 MiB each way through 127.0.0.1:port.
func checkPathSmall(t *testing.T, port int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := streamtest.Exchange(ctx, conn, 1, 1<<20, 1<<20); err != nil {
		t.Fatalf("1 MiB each way through port %d: %v", port, err)
	}
}

// TestOpenSSHRemoteToPinhole is path 2: OpenSSH ssh -N -R → pinhole server,
// with port 0 so the server picks and ssh prints the port.
func TestOpenSSHRemoteToPinhole(t *testing.T) {
	sshtest.Need(t, sshtest.SSHPath)
	target := streamtest.NewTarget(t)
	srv, key := pinholeForSSH(t, "")
	p := sshtest.StartSSH(t, sshOptions(srv, key, "-R", fmt.Sprintf("0:127.0.0.1:%d", target.Port())))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	port, err := p.WaitAllocatedPort(ctx)
	if err != nil {
		t.Fatalf("ssh -R 0: %v; stderr:\n%s", err, p.Stderr())
	}
	checkPath(t, fmt.Sprintf("127.0.0.1:%d", port))
}

// TestOpenSSHPermitOpenRefusal: ssh -L to a target outside permitopen gets
// OpenSSH's usual "administratively prohibited" line, and its allowed -L
// keeps working.
func TestOpenSSHPermitOpenRefusal(t *testing.T) {
	sshtest.Need(t, sshtest.SSHPath)
	target := streamtest.NewTarget(t)
	other := streamtest.NewTarget(t)
	srv, key := pinholeForSSH(t, fmt.Sprintf(`permitopen="127.0.0.1:%d"`, target.Port()))
	var refused int
	p, port := sshtest.StartSSHForward(t, sshOptions(srv, key), func(p int) []string {
		refused = p + 1
		if refused > 65535 {
			refused = p - 1
		}
		return []string{
			"-L", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:%d", p, target.Port()),
			"-L", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:%d", refused, other.Port()),
		}
	}, nil)
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", refused))
	if err != nil {
		t.Fatalf("the second -L is not listening: %v", err)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, _ := conn.Read(make([]byte, 1)); n != 0 {
		t.Fatal("a -L outside permitopen carried data")
	}
	conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := p.WaitStderr(ctx, "administratively prohibited"); err != nil {
		t.Fatalf("ssh did not print the refusal: %v; stderr:\n%s", err, p.Stderr())
	}
	if err := streamtest.Many(ctx, 20, 4<<10, tcpDialer(fmt.Sprintf("127.0.0.1:%d", port))); err != nil {
		t.Fatalf("the allowed -L beside the refused one: %v", err)
	}
}

// sshdClient is a pinhole client config for a real sshd.
func sshdClient(t *testing.T, d *sshtest.SSHD, key *sshtest.Key) tunnel.ClientConfig {
	cfg := clientConfig(t, d.Addr, d.HostKey.Public, key.Signer)
	cfg.User = d.User
	return cfg
}

// TestPinholeToOpenSSHD is path 3: pinhole connect → OpenSSH sshd, -L and -R.
func TestPinholeToOpenSSHD(t *testing.T) {
	target := streamtest.NewTarget(t)
	key := sshtest.NewKey(t, t.TempDir(), "client")
	d := sshtest.StartSSHD(t, sshtest.SSHDConfig{AuthorizedKeys: key.AuthorizedLine})
	cfg := sshdClient(t, d, key)
	cfg.Local = []spec.Forward{mustParse(t, spec.Local, fmt.Sprintf("127.0.0.1:0:127.0.0.1:%d", target.Port()))}
	cfg.Remote = []spec.Forward{mustParse(t, spec.Remote, fmt.Sprintf("0:127.0.0.1:%d", target.Port()))}
	c := dialClient(t, cfg)
	if c.UDP() {
		t.Fatal("a stock sshd reported as speaking pinhole's UDP extension")
	}
	t.Run("L", func(t *testing.T) { checkPath(t, c.LocalAddrs()[0].String()) })
	t.Run("R", func(t *testing.T) {
		_, port, err := net.SplitHostPort(c.RemoteAddrs()[0])
		if err != nil {
			t.Fatalf("-R not bound: %q", c.RemoteAddrs())
		}
		checkPath(t, net.JoinHostPort("127.0.0.1", port))
	})
}

// TestOpenSSHDRefusals: sshd's permitopen refusal reaches the pinhole
// client as ErrProhibited; a /udp forward against a stock sshd fails at
// start saying why, and beside a TCP forward it is only skipped.
func TestOpenSSHDRefusals(t *testing.T) {
	target := streamtest.NewTarget(t)
	key := sshtest.NewKey(t, t.TempDir(), "client")
	d := sshtest.StartSSHD(t, sshtest.SSHDConfig{
		AuthorizedKeys: fmt.Sprintf(`permitopen="127.0.0.1:%d" `, target.Port()) + key.AuthorizedLine,
	})

	t.Run("permitopen", func(t *testing.T) {
		c := dialClient(t, sshdClient(t, d, key))
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if _, err := c.DialContext(ctx, "tcp", "127.0.0.1:9"); !errors.Is(err, tunnel.ErrProhibited) {
			t.Fatalf("open outside sshd's permitopen: %v; want ErrProhibited", err)
		}
		conn, err := c.DialContext(ctx, "tcp", target.Addr())
		if err != nil {
			t.Fatalf("open inside permitopen after a refusal: %v", err)
		}
		defer conn.Close()
		if err := streamtest.Exchange(ctx, conn, 9, 1<<20, 1<<20); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("udp only", func(t *testing.T) {
		cfg := sshdClient(t, d, key)
		cfg.Local = []spec.Forward{mustParse(t, spec.Local, "127.0.0.1:0:127.0.0.1:53/udp")}
		_, err := tunnel.Dial(context.Background(), cfg)
		if !errors.Is(err, tunnel.ErrNoUDP) || !strings.Contains(err.Error(), "pinhole server") {
			t.Fatalf("Dial with only a /udp forward to a stock sshd: %v; want ErrNoUDP naming pinhole server", err)
		}
	})
	t.Run("udp beside tcp", func(t *testing.T) {
		cfg := sshdClient(t, d, key)
		cfg.UDPOptional = true
		cfg.Local = []spec.Forward{
			mustParse(t, spec.Local, "127.0.0.1:0:127.0.0.1:53/udp"),
			mustParse(t, spec.Local, fmt.Sprintf("127.0.0.1:0:127.0.0.1:%d", target.Port())),
		}
		c := dialClient(t, cfg)
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := streamtest.Many(ctx, 4, 4<<10, tcpDialer(c.LocalAddrs()[1].String())); err != nil {
			t.Fatalf("TCP -L beside a skipped /udp one: %v", err)
		}
	})
}

// TestOpenSSHSession: plain "ssh host" gets a text saying what the server
// is for and stays connected; a command, scp or sftp is refused.
func TestOpenSSHSession(t *testing.T) {
	sshtest.Need(t, sshtest.SSHPath)
	srv, key := pinholeForSSH(t, "")
	t.Run("shell", func(t *testing.T) {
		o := sshOptions(srv, key)
		o.Session = true
		p := sshtest.StartSSH(t, o)
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := p.WaitStderr(ctx, "only forwards ports; there is no shell here"); err != nil {
			t.Fatalf("ssh without -N: %v; output:\n%s", err, p.Stderr())
		}
		select {
		case <-p.Done():
			t.Fatalf("ssh left right after the text; output:\n%s", p.Stderr())
		case <-time.After(500 * time.Millisecond):
		}
	})
	for _, tc := range []struct{ name, arg string }{
		{"command", "echo hello"},
		{"sftp", "-s sftp"},
	} {
		// ssh host CMD, ssh -s host sftp: the reason on stderr, exit 1.
		t.Run(tc.name, func(t *testing.T) {
			args := strings.Fields(tc.arg)
			o := sshOptions(srv, key)
			o.Session, o.Command = true, args
			if args[0] == "-s" {
				o.Args, o.Command = args[:1], args[1:]
			}
			code, stdout, stderr := runSSH(t, o, nil)
			if code != 1 || stdout != "" || !strings.Contains(stderr, "it runs no commands, sftp or scp") {
				t.Fatalf("ssh %s: exit %d, stdout %q, stderr:\n%s\nwant exit 1, no output and pinhole's reason on stderr", tc.arg, code, stdout, stderr)
			}
			if strings.Contains(stderr, "request failed") {
				t.Fatalf("ssh %s: stderr:\n%s\nwant the request accepted", tc.arg, stderr)
			}
		})
	}
	// ssh -tt host (stdin a pipe): the pty is granted, the text comes out
	// on stdout, and a Ctrl-C typed ends the session with exit status 0.
	t.Run("tty", func(t *testing.T) {
		o := sshOptions(srv, key, "-tt")
		o.Session = true
		// An os.Pipe, not an io.Pipe: ssh reads it itself, so no copying
		// goroutine can keep Wait waiting when ssh hangs.
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		defer pr.Close()
		defer pw.Close()
		var stdout syncWriter
		var once sync.Once
		stdout.onWrite = func(s string) {
			if strings.Contains(s, "there is no shell here") && strings.Contains(s, "press Ctrl-C") {
				once.Do(func() { pw.Write([]byte("x\x03")) })
			}
		}
		code, out, stderr := runSSHWith(t, o, pr, &stdout)
		if code != 0 || !strings.Contains(out, "only forwards ports; there is no shell here") {
			t.Fatalf("ssh -tt: exit %d, stdout %q, stderr:\n%s\nwant the text on stdout and exit 0 after Ctrl-C", code, out, stderr)
		}
		if strings.Contains(stderr, "PTY allocation request failed") {
			t.Fatalf("ssh -tt: stderr:\n%s\nwant the pty granted", stderr)
		}
	})
}

// runSSH runs ssh with o to its end, stdin from stdin (nil: none), and
// returns its exit code, stdout and stderr.
func runSSH(t *testing.T, o sshtest.SSHOptions, stdin io.Reader) (code int, stdout, stderr string) {
	t.Helper()
	var out syncWriter
	return runSSHWith(t, o, stdin, &out)
}

func runSSHWith(t *testing.T, o sshtest.SSHOptions, stdin io.Reader, stdout *syncWriter) (code int, out, stderr string) {
	t.Helper()
	dir := t.TempDir()
	kh := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(kh, []byte(o.KnownHosts), 0o600); err != nil {
		t.Fatal(err)
	}
	args, err := o.CommandArgs(kh)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sshtest.SSHPath, args...)
	var errBuf strings.Builder
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, &errBuf
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("ssh %s did not exit within 20 s; stdout %q, stderr:\n%s", strings.Join(args, " "), stdout.String(), errBuf.String())
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return code, stdout.String(), errBuf.String()
}

// syncWriter collects what is written to it; onWrite, if set, sees all of
// it so far after each write.
type syncWriter struct {
	mu      sync.Mutex
	b       strings.Builder
	onWrite func(string)
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.b.Write(p)
	s := w.b.String()
	w.mu.Unlock()
	if w.onWrite != nil {
		w.onWrite(s)
	}
	return len(p), nil
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
