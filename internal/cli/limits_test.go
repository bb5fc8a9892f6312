package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/ssh"
	"github.com/pinhole-dev/pinhole/internal/ssh/knownhosts"
	"github.com/pinhole-dev/pinhole/internal/sshtest"
	"github.com/pinhole-dev/pinhole/internal/streamtest"
)

// TestConnectRefusals: pinhole connect says why a server refused its key,
// and what to do: a key that is not listed, one that from= or
// expiry-time= refuses (where adding a key is the wrong advice), and a
// stock sshd, which does not say which of the two it was.
func TestConnectRefusals(t *testing.T) {
	for _, tc := range []struct {
		name, options string
		otherKey      bool
		want, not     []string
		reason        string
	}{
		{"not listed", "", true, []string{"refused our keys", "no key offered is in the server's authorized_keys (SHA256:", "add your public key", "-i"}, []string{"from="}, "unknown-key"},
		{"from", `from="10.9.9.9"`, false, []string{"refused our keys", "from= option does not allow your address (127.0.0.1)", "adding a key will not help"}, []string{"add your public key"}, "from"},
		{"expiry", `expiry-time="20000101"`, false, []string{"refused our keys", "expiry-time= option has passed", "adding a key will not help"}, []string{"add your public key"}, "expired"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t, tc.options)
			identity := w.identity
			if tc.otherKey {
				identity, _ = writeKey(t, w.dir, "id_other")
			}
			_, port, _ := net.SplitHostPort(w.addr)
			code, _, stderr := run(t, "connect", "-p", port, "-i", identity, "--known-hosts", w.known, "-L", "0:127.0.0.1:9", "tester@127.0.0.1")
			t.Logf("pinhole connect says:\n%s", stderr)
			if code != 1 {
				t.Fatalf("exit %d, want 1; stderr:\n%s", code, stderr)
			}
			for _, s := range tc.want {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr does not say %q:\n%s", s, stderr)
				}
			}
			for _, s := range tc.not {
				if strings.Contains(stderr, s) {
					t.Errorf("stderr says %q:\n%s", s, stderr)
				}
			}
			re := regexp.MustCompile(`level=WARN msg="auth failed" peer=127\.0\.0\.1:\d+ user=tester method=publickey key=SHA256:\S+ reason=` + tc.reason + ` `)
			if !re.MatchString(w.server.stderr.String()) {
				t.Errorf("the server log has no line matching %s:\n%s", re, w.server.stderr)
			}
		})
	}
	t.Run("sshd", func(t *testing.T) {
		dir := t.TempDir()
		listed := sshtest.NewKey(t, dir, "listed")
		other := sshtest.NewKey(t, dir, "other")
		d := sshtest.StartSSHD(t, sshtest.SSHDConfig{AuthorizedKeys: listed.AuthorizedLine})
		known := filepath.Join(dir, "known_hosts")
		if err := os.WriteFile(known, []byte(d.KnownHostsLine()), 0o600); err != nil {
			t.Fatal(err)
		}
		code, _, stderr := run(t, "connect", "-p", strconv.Itoa(d.Port), "-i", other.PrivateFile, "--known-hosts", known, "-L", "0:127.0.0.1:9", d.User+"@127.0.0.1")
		if code != 1 {
			t.Fatalf("exit %d, want 1; stderr:\n%s", code, stderr)
		}
		for _, s := range []string{"either the key is not in the server's authorized_keys", "add your public key", "or an option on its line refuses it", "from=", "expiry-time="} {
			if !strings.Contains(stderr, s) {
				t.Errorf("stderr does not say %q:\n%s", s, stderr)
			}
		}
	})
	t.Run("OpenSSH sees the banner", func(t *testing.T) {
		sshtest.Need(t, sshtest.SSHPath)
		w := newWorld(t, `from="10.9.9.9"`)
		hostKey, err := os.ReadFile(filepath.Join(w.dir, "host_key"))
		if err != nil {
			t.Fatal(err)
		}
		signer, err := ssh.ParsePrivateKey(hostKey)
		if err != nil {
			t.Fatal(err)
		}
		key := &sshtest.Key{PrivateFile: w.identity}
		p := sshtest.StartSSH(t, sshtest.SSHOptions{
			Addr: w.addr, User: "tester", Key: key,
			KnownHosts: knownhosts.Line([]string{w.addr}, signer.PublicKey()) + "\n",
			Args:       []string{"-L", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:9", sshtest.RandomPort())},
		})
		werr := p.Wait()
		if !strings.Contains(p.Stderr(), "from= option does not allow your address (127.0.0.1)") {
			t.Errorf("ssh (%v) did not show the server's banner:\n%s", werr, p.Stderr())
		}
	})
}

// TestFail2banFilter runs contrib/fail2ban's filter, with Debian's
// fail2ban-regex, over the log pinhole server wrote while it refused keys,
// a password, a user name that tries to smuggle in another address, a
// silent connection and garbage: every "auth failed" line is a hit for
// 127.0.0.1 and nothing else is, and mode=aggressive adds the login grace
// line.
func TestFail2banFilter(t *testing.T) {
	if _, err := exec.LookPath("fail2ban-regex"); err != nil {
		t.Skip("fail2ban-regex not found: install Debian's fail2ban package (scripts/test does as root)")
	}
	dir := t.TempDir()
	identity, pub := writeKey(t, dir, "id_listed")
	other, _ := writeKey(t, dir, "id_other")
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
	authKeys := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authKeys, []byte(`from="10.9.9.9" `+line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := start(t, "server", "--listen", "127.0.0.1:0", "--host-key", filepath.Join(dir, "host_key"), "--authorized-keys", authKeys, "--login-grace", "500ms")
	addr := srv.waitLine(t, `listening on (\S+)`)[1]
	_, port, _ := net.SplitHostPort(addr)
	known := filepath.Join(dir, "known_hosts")
	for _, id := range []string{identity, other} {
		if code, _, stderr := run(t, "connect", "-p", port, "-i", id, "--known-hosts", known, "-L", "0:127.0.0.1:9", "tester@127.0.0.1"); code != 1 {
			t.Fatalf("connect with %s: exit %d, want 1:\n%s", id, code, stderr)
		}
	}
	for _, auth := range []ssh.AuthMethod{ssh.PublicKeys(newTestSigner(t))} {
		c, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{
			User:            `evil" peer=10.9.9.9:22 x`,
			Auth:            []ssh.AuthMethod{auth},
			HostKeyCallback: ssh.InsecureIgnoreHostKey(),
			Timeout:         10 * time.Second,
		})
		if err == nil {
			c.Close()
			t.Fatal("a bad login got in")
		}
	}
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	garbage, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer garbage.Close()
	fmt.Fprintf(garbage, "SSH-2.0-garbage\r\n%s", strings.Repeat("\xff", 64))
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(srv.stderr.String(), `msg="login grace expired"`) || !strings.Contains(srv.stderr.String(), `msg="handshake failed"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no login grace and handshake failed lines after 10 s:\n%s", srv.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	logText := srv.stderr.String()
	logFile := filepath.Join(dir, "server.log")
	if err := os.WriteFile(logFile, []byte(logText), 0o600); err != nil {
		t.Fatal(err)
	}
	failed := strings.Count(logText, `msg="auth failed"`)
	if failed != 3 {
		t.Fatalf("%d auth failed lines, want 3 (a from= refusal, an unknown key, an unknown key with a strange user name):\n%s", failed, logText)
	}
	filter := filepath.Join("..", "..", "contrib", "fail2ban", "filter.d", "pinhole.conf")
	for _, tc := range []struct {
		mode string
		hits int
	}{
		{"", failed},
		{"[mode=aggressive]", failed + 1},
	} {
		out, err := exec.Command("fail2ban-regex", "-o", "ip", logFile, filter+tc.mode).CombinedOutput()
		if err != nil {
			t.Fatalf("fail2ban-regex %s: %v\n%s", tc.mode, err, out)
		}
		ips := strings.Fields(string(out))
		if len(ips) != tc.hits {
			t.Errorf("filter%s: %d hits %q, want %d; log:\n%s", tc.mode, len(ips), ips, tc.hits, logText)
		}
		for _, ip := range ips {
			if ip != "127.0.0.1" {
				t.Errorf("filter%s found %q in the log, want only 127.0.0.1", tc.mode, ip)
			}
		}
	}
	out, err := exec.Command("fail2ban-regex", logFile, filter).CombinedOutput()
	if err != nil {
		t.Fatalf("fail2ban-regex: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Lines: (\d+) lines, (\d+) ignored, (\d+) matched, (\d+) missed`).FindStringSubmatch(string(out))
	if m == nil || m[3] != strconv.Itoa(failed) {
		t.Errorf("fail2ban-regex summary %q, want %d matched:\n%s", m, failed, out)
	}
}

func newTestSigner(t *testing.T) ssh.Signer {
	t.Helper()
	path, _ := writeKey(t, t.TempDir(), "id")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.ParsePrivateKey(data)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// childEnv makes the test binary run Run, as the pinhole binary would
// (TestMain): a real pinhole server process whose memory is its own.
const childEnv = "PINHOLE_CLI_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(Run(os.Args[1:], os.Stdout, os.Stderr))
	}
	// Every server, connect and up a test starts serves a control socket
	// in the control directory (watch.go): a directory of the tests', not
	// the user's, which children inherit.
	dir, err := os.MkdirTemp("", "pinhole-cli-test-")
	if err != nil {
		panic(err)
	}
	os.Setenv("XDG_RUNTIME_DIR", dir)
	os.Unsetenv("RUNTIME_DIRECTORY")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// child is the test binary running as pinhole with args, its stderr going
// to logFile. It is stopped by its pid (SIGTERM, then SIGKILL after 15 s)
// when the test ends, and killed by the kernel if the test process dies.
type child struct {
	cmd     *exec.Cmd
	lines   chan string
	logFile string
}

func startChild(t *testing.T, args ...string) *child {
	t.Helper()
	c := &child{lines: make(chan string, 100), logFile: filepath.Join(t.TempDir(), "stderr.log")}
	logf, err := os.Create(c.logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	c.cmd = exec.Command(os.Args[0], args...)
	c.cmd.Env = append(os.Environ(), childEnv+"=1")
	c.cmd.Stderr = logf
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			select {
			case c.lines <- sc.Text():
			default:
			}
		}
		io.Copy(io.Discard, out)
		close(c.lines)
		c.cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			c.cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			log, _ := os.ReadFile(c.logFile)
			t.Logf("stderr of pinhole %s:\n%s", strings.Join(args, " "), log)
		}
	})
	return c
}

func (c *child) waitLine(t *testing.T, re string) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(20 * time.Second)
	for {
		select {
		case line, ok := <-c.lines:
			if !ok {
				t.Fatalf("stdout ended before a line matching %q", re)
			}
			if m := rx.FindStringSubmatch(line); m != nil {
				return m
			}
		case <-deadline:
			t.Fatalf("no stdout line matching %q within 20 s", re)
		}
	}
}

// vmRSS is a process's resident memory in kB, from /proc.
func vmRSS(pid int) (int, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	m := regexp.MustCompile(`(?m)^VmRSS:\s+(\d+) kB$`).FindSubmatch(data)
	if m == nil {
		return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	return strconv.Atoi(string(m[1]))
}

// TestServerFloodOpenSSH: 5,000 silent connections from 127.0.0.2 do not
// keep a real ssh -N -L from 127.0.0.1 out of a pinhole server on its
// default limits (given as flags), during the flood and after it, and the
// server's memory stays bounded: its VmRSS is sampled throughout. The
// flood's sockets, both ends of which are not in one process here, stay
// open until the end: 5,000 of this process's 20,000 descriptors.
func TestServerFloodOpenSSH(t *testing.T) {
	sshtest.Need(t, sshtest.SSHPath)
	if testing.Short() {
		t.Skip("a flood of 5,000 connections; not with -short")
	}
	probe, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}).Dial("tcp", "127.0.0.1:9")
	if probe != nil {
		probe.Close()
	}
	if err != nil && strings.Contains(err.Error(), "assign requested address") {
		t.Skipf("cannot send from 127.0.0.2 here: %v", err)
	}
	target := streamtest.NewTarget(t)
	dir := t.TempDir()
	hostKey := sshtest.NewKey(t, dir, "host")
	key := sshtest.NewKey(t, dir, "client")
	authKeys := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authKeys, []byte(key.AuthorizedLine), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startChild(t, "server", "--listen", "127.0.0.1:0", "--host-key", hostKey.PrivateFile, "--authorized-keys", authKeys,
		"--max-startups", "10:30:100", "--per-source-max-startups", "5", "--login-grace", "30s")
	addr := srv.waitLine(t, `listening on (\S+)`)[1]
	pid := srv.cmd.Process.Pid
	opts := sshtest.SSHOptions{Addr: addr, User: "tester", Key: key, KnownHosts: knownhosts.Line([]string{addr}, hostKey.Public) + "\n"}
	login := func(when string) {
		t.Helper()
		p, port := sshtest.StartSSHForward(t, opts, func(p int) []string {
			return []string{"-L", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:%d", p, target.Port())}
		}, nil)
		defer p.Stop()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		defer conn.Close()
		if err := streamtest.Exchange(ctx, conn, 1, 1<<20, 1<<20); err != nil {
			t.Fatalf("%s: 1 MiB each way through ssh -L: %v", when, err)
		}
	}
	login("before the flood")
	before, err := vmRSS(pid)
	if err != nil {
		t.Fatal(err)
	}

	// The flood: 5,000 connections from 127.0.0.2 that never send a byte,
	// 32 dialing at once, within 90 s, all held open until the test ends.
	const flood, dialers = 5000, 32
	var (
		mu      sync.Mutex
		held    []net.Conn
		failed  int
		started = make(chan struct{})
		once    sync.Once
	)
	t.Cleanup(func() {
		for _, c := range held {
			c.Close()
		}
	})
	floodCtx, stopFlood := context.WithTimeout(context.Background(), 90*time.Second)
	defer stopFlood()
	var wg sync.WaitGroup
	for w := range dialers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 5 * time.Second}
			for i := w; i < flood && floodCtx.Err() == nil; i += dialers {
				c, err := d.DialContext(floodCtx, "tcp", addr)
				mu.Lock()
				if err != nil {
					failed++
				} else {
					held = append(held, c)
				}
				if len(held)+failed >= flood/5 {
					once.Do(func() { close(started) })
				}
				mu.Unlock()
			}
		}()
	}
	floodDone := make(chan struct{})
	go func() { wg.Wait(); close(floodDone) }()
	var peak int
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if kb, err := vmRSS(pid); err == nil && kb > peak {
				peak = kb
			}
			select {
			case <-floodDone:
				return
			case <-tick.C:
			}
		}
	}()
	select {
	case <-started:
	case <-floodDone:
	}
	login("during the flood")
	<-floodDone
	<-sampled
	mu.Lock()
	nHeld, nFailed := len(held), failed
	mu.Unlock()
	if nHeld+nFailed != flood {
		t.Fatalf("the flood made %d connections and %d failures in 90 s, want %d in all", nHeld, nFailed, flood)
	}
	login("after the flood, its sockets still open")
	after, _ := vmRSS(pid)
	// The flood's connections send nothing: the HTTP limits hold 256 of
	// 127.0.0.2's until they have been silent for 2 s and drop the rest;
	// then SSH's per-source cap lets 5 in (they wait for the login grace
	// time) and drops the others. The drop lines of both, at most one a
	// second each, add up to that within a second or so.
	want := nHeld - 5
	drops := 0
	for deadline := time.Now().Add(5 * time.Second); drops != want && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		log, _ := os.ReadFile(srv.logFile)
		drops = 0
		for _, m := range regexp.MustCompile(`msg="(?:startup|HTTP connection) dropped" peer=127\.0\.0\.2:\d+ reason=per-source-max-(?:startups|http-conns) .* dropped=(\d+)`).FindAllSubmatch(log, -1) {
			n, _ := strconv.Atoi(string(m[1]))
			drops += n
		}
	}
	if drops != want {
		t.Errorf("the server's drop lines add up to %d drops, want %d", drops, want)
	}
	t.Logf("flood of %d connections from 127.0.0.2 (%d accepted by the kernel, %d failed to connect); the server logged %d drops (lines at most one a second)", flood, nHeld, nFailed, drops)
	t.Logf("pinhole server VmRSS: %d kB before the flood, %d kB peak during it, %d kB after", before, peak, after)
	if peak-before > 64<<10 {
		t.Errorf("VmRSS grew by %d kB during the flood, want under 64 MiB", peak-before)
	}
}
