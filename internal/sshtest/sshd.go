// Package sshtest runs the real OpenSSH programs against pinhole in tests: a
// throwaway sshd on a loopback port, with a config, host key and
// authorized_keys the test writes, and the ssh client with -L, -R and -D.
// It is an importable test double, like wireguard-go's tun/tuntest: the
// tunnel and cli tests use it to prove that pinhole and stock OpenSSH
// understand each other in both directions.
//
// Everything a test starts is stopped, by its process id, when the test
// ends. A test that needs a program that is not installed skips with a line
// that says which Debian package to install; scripts/test installs them.
//
// Ports: sshd and ssh must bind their own ports, so sshtest picks a random
// one and tries another when it is taken, instead of closing a listener and
// handing its port on.
package sshtest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/ssh/knownhosts"
)

// The programs sshtest runs.
const (
	SSHDPath = "/usr/sbin/sshd"
	SSHPath  = "/usr/bin/ssh"
)

// packages names the Debian package that provides each program.
func debianPackage(program string) string {
	switch filepath.Base(program) {
	case "sshd":
		return "openssh-server"
	case "ssh", "ssh-keygen", "ssh-agent", "ssh-add", "ssh-keyscan", "scp", "sftp":
		return "openssh-client"
	case "curl", "socat", "iperf3", "miniupnpd":
		return filepath.Base(program)
	}
	return ""
}

// Need skips the test when one of programs is not installed. A program is a
// name looked up in PATH or an absolute path.
func Need(t testing.TB, programs ...string) {
	t.Helper()
	if msg := missing(programs); msg != "" {
		t.Skip(msg)
	}
}

// missing returns the skip message for the first program that is not
// installed, or "".
func missing(programs []string) string {
	for _, p := range programs {
		var err error
		if filepath.IsAbs(p) {
			var fi os.FileInfo
			if fi, err = os.Stat(p); err == nil && (fi.IsDir() || fi.Mode()&0o111 == 0) {
				err = fmt.Errorf("not executable")
			}
		} else {
			_, err = exec.LookPath(p)
		}
		if err == nil {
			continue
		}
		install := "install it"
		if pkg := debianPackage(p); pkg != "" {
			install = "install " + pkg
		}
		return fmt.Sprintf("sshtest: skipping: %s not found (%s, or run scripts/test which installs it)", p, install)
	}
	return ""
}

// SSHDConfig is what a test chooses about its sshd; the zero value is an
// sshd that lets nobody in.
type SSHDConfig struct {
	// AuthorizedKeys is the whole authorized_keys file, options allowed,
	// e.g. key.AuthorizedLine or `permitopen="127.0.0.1:80" ` + key.AuthorizedLine.
	AuthorizedKeys string

	// Extra holds more sshd_config lines, e.g. "GatewayPorts clientspecified"
	// or "PermitOpen 127.0.0.1:9". They come before sshtest's own lines, so
	// they override them (sshd keeps the first value of a keyword); a Match
	// line and everything after it go at the end, as sshd requires.
	Extra []string

	// RandomPort picks the port for each try to start sshd on; nil means
	// the package's RandomPort.
	RandomPort func() int
}

// SSHD is a running sshd that listens on 127.0.0.1 only.
type SSHD struct {
	Addr    string // "127.0.0.1:PORT"
	Port    int
	HostKey *Key   // the server's host key
	User    string // the user to log in as: the one running the test
	Dir     string // holds the config, keys and log

	ConfigFile string
	LogFile    string // sshd -E: everything sshd logs, at LogLevel VERBOSE
	Pid        int

	cmd      *exec.Cmd
	done     chan struct{} // closed once sshd has exited and been reaped
	stopOnce sync.Once
}

// StartSSHD starts sshd -D on 127.0.0.1 and a random port, waits until it
// accepts connections, and stops it when the test ends, writing its log to
// the test's if the test failed. Its config, after cfg.Extra: a new ed25519
// host key, cfg.AuthorizedKeys as the only authorized_keys file, public key
// authentication only, UsePAM no, StrictModes no, AllowTcpForwarding yes,
// PermitRootLogin prohibit-password (as root), LogLevel VERBOSE,
// ClientAliveInterval 5, MaxStartups and MaxSessions 1000, and, where sshd
// knows it, PerSourcePenalties no.
// It skips the test when sshd is not installed, and fails it, with sshd's
// log, when sshd does not start.
//
// sshd lets in only the user running the test (as root: root), and without
// PAM it refuses an account whose password is locked, such as Debian's
// nobody.
func StartSSHD(t testing.TB, cfg SSHDConfig) *SSHD {
	t.Helper()
	Need(t, SSHDPath)
	s, err := LaunchSSHD(t.TempDir(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("sshtest: the log of sshd on %s:\n%s", s.Addr, s.Log())
		}
	})
	return s
}

// LaunchSSHD is StartSSHD for a program that is not a test (the benchmark
// command): it writes its files to dir, returns an error where StartSSHD
// would fail the test, and leaves stopping sshd to the caller.
func LaunchSSHD(dir string, cfg SSHDConfig) (*SSHD, error) {
	if msg := missing([]string{SSHDPath}); msg != "" {
		return nil, errors.New(msg)
	}
	u, err := user.Current()
	if err != nil {
		return nil, fmt.Errorf("sshtest: who runs this program: %w", err)
	}
	root := os.Geteuid() == 0
	if root {
		// sshd's privilege separation needs this directory; the package
		// makes it at boot through systemd-tmpfiles, which a container
		// may not run.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			return nil, fmt.Errorf("sshtest: %w", err)
		}
	}
	hostKey, err := WriteKey(dir, "ssh_host_ed25519_key")
	if err != nil {
		return nil, err
	}
	s := &SSHD{
		HostKey:    hostKey,
		User:       u.Username,
		Dir:        dir,
		ConfigFile: filepath.Join(dir, "sshd_config"),
		LogFile:    filepath.Join(dir, "sshd.log"),
	}
	authorizedKeys := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authorizedKeys, []byte(cfg.AuthorizedKeys), 0o600); err != nil {
		return nil, fmt.Errorf("sshtest: %w", err)
	}
	own := []string{
		"HostKey " + s.HostKey.PrivateFile,
		"AuthorizedKeysFile " + authorizedKeys,
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PubkeyAuthentication yes",
		"UsePAM no",
		"StrictModes no",
		"PidFile none",
		"AllowTcpForwarding yes",
		"LogLevel VERBOSE",
		"ClientAliveInterval 5",
		"MaxStartups 1000",
		"MaxSessions 1000",
		"UseDNS no",
		"PrintMotd no",
	}
	if root {
		own = append(own, "PermitRootLogin prohibit-password")
	}
	// OpenSSH 9.8 and later refuse for a while a source address that failed
	// to log in; tests fail logins from 127.0.0.1 on purpose.
	penalties := "PerSourcePenalties no"
	if err := s.writeConfig(cfg.Extra, append(own, penalties)); err != nil {
		return nil, fmt.Errorf("sshtest: %w", err)
	}
	if out, err := exec.Command(SSHDPath, "-t", "-f", s.ConfigFile).CombinedOutput(); err != nil {
		if !bytes.Contains(out, []byte("PerSourcePenalties")) {
			return nil, fmt.Errorf("sshtest: sshd rejects its config %s: %w\n%s", s.ConfigFile, err, out)
		}
		// An older sshd, which does not know the option nor need it.
		if err := s.writeConfig(cfg.Extra, own); err != nil {
			return nil, fmt.Errorf("sshtest: %w", err)
		}
		if out, err := exec.Command(SSHDPath, "-t", "-f", s.ConfigFile).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("sshtest: sshd rejects its config %s: %w\n%s", s.ConfigFile, err, out)
		}
	}

	randomPort := cfg.RandomPort
	if randomPort == nil {
		randomPort = RandomPort
	}
	const tries = 10
	deadline := time.Now().Add(10 * time.Second)
	for range tries {
		port := randomPort()
		if accepts(port) {
			continue // another program has it
		}
		switch ok, log := s.start(port, deadline); {
		case ok:
			return s, nil
		case strings.Contains(log, "Address already in use"):
			continue
		default:
			return nil, fmt.Errorf("sshtest: sshd did not start on 127.0.0.1:%d; its log:\n%s", port, log)
		}
	}
	return nil, fmt.Errorf("sshtest: sshd found no free port in %d tries; its last log:\n%s", tries, s.Log())
}

func (s *SSHD) writeConfig(extra, own []string) error {
	var b strings.Builder
	b.WriteString("# sshd_config written by sshtest for one test\n")
	var match []string
	for i, line := range extra {
		if f := strings.Fields(line); len(f) > 0 && strings.EqualFold(f[0], "Match") {
			match = extra[i:]
			break
		}
		b.WriteString(line + "\n")
	}
	for _, line := range own {
		b.WriteString(line + "\n")
	}
	for _, line := range match {
		b.WriteString(line + "\n")
	}
	return os.WriteFile(s.ConfigFile, []byte(b.String()), 0o600)
}

// start runs sshd on port and reports whether it came up before deadline;
// if not, sshd has been stopped and start returns its log.
func (s *SSHD) start(port int, deadline time.Time) (bool, string) {
	// Each try gets a fresh log, so the one kept is about the sshd that runs.
	if err := os.WriteFile(s.LogFile, nil, 0o600); err != nil {
		return false, err.Error()
	}
	// An *os.File, not a pipe: sshd's children inherit it, and a pipe
	// would keep Wait waiting for them.
	stderrFile := filepath.Join(s.Dir, "sshd.stderr")
	stderr, err := os.Create(stderrFile)
	if err != nil {
		return false, err.Error()
	}
	defer stderr.Close()
	cmd := exec.Command(SSHDPath, "-D", "-E", s.LogFile, "-f", s.ConfigFile,
		"-o", "ListenAddress=127.0.0.1:"+strconv.Itoa(port))
	dieWithTest(cmd)
	cmd.Stdout = stderr
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return false, err.Error()
	}
	done := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(done)
	}()
	report := func() string {
		out, _ := os.ReadFile(stderrFile)
		return fmt.Sprintf("%s%s(sshd: %v)", s.Log(), out, waitErr)
	}

	// sshd logs this line once it listens, so the kernel accepts
	// connections from then on; and it tells our sshd from another
	// program on the same port. (No test dial: sshd would fork a child for
	// it, which holds the listening socket for a moment, and Stop could
	// leave the port answering.)
	listening := fmt.Sprintf("Server listening on 127.0.0.1 port %d.", port)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case <-done:
			return false, report()
		case <-tick.C:
		}
		switch {
		case strings.Contains(s.Log(), listening):
			break wait
		case time.Now().After(deadline):
			cmd.Process.Kill()
			<-done
			return false, report() + "\n(sshtest: gave up waiting for sshd to listen)"
		}
	}
	s.Port = port
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	s.Pid = cmd.Process.Pid
	s.cmd = cmd
	s.done = done
	return true, ""
}

// accepts reports whether something accepts TCP connections on 127.0.0.1:port.
func accepts(port int) bool {
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// Stop kills the listening sshd and reaps it. Sessions already open go on
// until their connections close: sshd runs each in processes of its own;
// and a connection accepted just before Stop may keep the port answering
// for a moment, as sshd's child for it closes its copy of the listener.
// Stop is idempotent and runs when the test ends.
func (s *SSHD) Stop() {
	s.stopOnce.Do(func() {
		s.cmd.Process.Kill()
		<-s.done
	})
}

// Log returns what sshd has logged so far.
func (s *SSHD) Log() string {
	b, err := os.ReadFile(s.LogFile)
	if err != nil {
		return fmt.Sprintf("(sshtest: reading the sshd log: %v)\n", err)
	}
	return string(b)
}

// KnownHostsLine returns the known_hosts line for this sshd's host key,
// newline included: "[127.0.0.1]:PORT ssh-ed25519 AAAA...\n".
func (s *SSHD) KnownHostsLine() string {
	return knownhosts.Line([]string{s.Addr}, s.HostKey.Public) + "\n"
}

// Options returns the SSHOptions to log in to this sshd with key, checking
// its host key, and run ssh with args.
func (s *SSHD) Options(key *Key, args ...string) SSHOptions {
	return SSHOptions{
		Addr:       s.Addr,
		User:       s.User,
		Key:        key,
		KnownHosts: s.KnownHostsLine(),
		Args:       args,
	}
}
