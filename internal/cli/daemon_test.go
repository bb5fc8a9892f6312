package cli

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pinhole-dev/pinhole/internal/sshtest"
	"github.com/pinhole-dev/pinhole/internal/streamtest"
)

// notifyMsg is one datagram that arrived on the test's NOTIFY_SOCKET.
type notifyMsg struct {
	text string
	at   time.Time
}

// notifySocket is systemd's side of sd_notify: a unixgram socket the
// test listens on, whose name is passed as NOTIFY_SOCKET.
func notifySocket(t *testing.T, name string) <-chan notifyMsg {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	msgs := make(chan notifyMsg, 1000)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := c.ReadFromUnix(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- notifyMsg{string(buf[:n]), time.Now()}
		}
	}()
	return msgs
}

// waitNotify returns the first message that starts with prefix, and the
// WATCHDOG=1 pings that came before it.
func waitNotify(t *testing.T, msgs <-chan notifyMsg, prefix string) (notifyMsg, []notifyMsg) {
	t.Helper()
	var pings []notifyMsg
	deadline := time.After(30 * time.Second)
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				t.Fatalf("the notify socket closed before %q came", prefix)
			}
			if strings.HasPrefix(m.text, prefix) {
				return m, pings
			}
			if m.text != "WATCHDOG=1\n" {
				t.Fatalf("got %q while waiting for %q", m.text, prefix)
			}
			pings = append(pings, m)
		case <-deadline:
			t.Fatalf("no %q on the notify socket within 30 s", prefix)
		}
	}
}

// TestServerNotify: the pinhole binary as a Type=notify service with
// WatchdogSec=300ms, talking to the test's NOTIFY_SOCKET (an abstract
// socket, as systemd may give): READY=1 comes once the listener accepts
// SSH connections; WATCHDOG=1 comes every 150 ms (half of WATCHDOG_USEC);
// SIGHUP is a reload (RELOADING=1 with MONOTONIC_USEC, then READY=1) that
// leaves the process running; SIGTERM gives STOPPING=1, then exit 0.
func TestServerNotify(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildPinhole(t)
	dir := t.TempDir()
	sock := fmt.Sprintf("@pinhole-test-notify-%d-%d", os.Getpid(), time.Now().UnixNano())
	msgs := notifySocket(t, sock)
	key := sshtest.NewKey(t, dir, "id_client")
	authKeys := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authKeys, []byte(key.AuthorizedLine), 0o600); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "server", "--listen", "127.0.0.1:0", "--authorized-keys", authKeys)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=300000", "STATE_DIRECTORY="+state)
	cmd.Env = append(cmd.Env, "WATCHDOG_PID=") // set but empty: not another's
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr := new(syncBuffer)
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			t.Log(sc.Text())
		}
		waitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("stderr:\n%s", stderr)
		}
	})

	ready, pings := waitNotify(t, msgs, "READY=1\n")
	if len(pings) > 0 {
		t.Errorf("%d watchdog pings before READY=1", len(pings))
	}
	addr, ok := strings.CutPrefix(ready.text, "READY=1\nSTATUS=listening on ")
	if !ok {
		t.Fatalf("READY message %q has no STATUS=listening on ADDR", ready.text)
	}
	addr = strings.TrimSuffix(addr, "\n")
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("READY=1 said %s, which refuses: %v", addr, err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	banner, err := bufio.NewReader(c).ReadString('\n')
	c.Close()
	if !strings.HasPrefix(banner, "SSH-2.0-") {
		t.Fatalf("%s after READY=1 sent %q, %v; want an SSH banner", addr, banner, err)
	}
	if _, err := os.Stat(filepath.Join(state, "host_ed25519_key")); err != nil {
		t.Errorf("the host key is not in $STATE_DIRECTORY: %v", err)
	}

	// The pings: 8 of them, 150 ms apart, give or take a loaded machine.
	var at []time.Time
	for len(at) < 8 {
		select {
		case m := <-msgs:
			if m.text != "WATCHDOG=1\n" {
				t.Fatalf("got %q, want WATCHDOG=1 pings", m.text)
			}
			at = append(at, m.at)
		case <-time.After(5 * time.Second):
			t.Fatalf("only %d watchdog pings", len(at))
		}
	}
	for i := 1; i < len(at); i++ {
		if d := at[i].Sub(at[i-1]); d < 100*time.Millisecond || d > time.Second {
			t.Errorf("ping %d came %v after the one before, want about 150 ms", i, d)
		}
	}
	if span := at[7].Sub(at[0]); span < 7*140*time.Millisecond || span > 7*300*time.Millisecond {
		t.Errorf("7 ping intervals took %v, want about %v", span, 7*150*time.Millisecond)
	}

	before := monotonicNow(t)
	cmd.Process.Signal(syscall.SIGHUP)
	rel, _ := waitNotify(t, msgs, "RELOADING=1\n")
	f := fields(rel.text)
	usec, err := strconv.ParseUint(f["MONOTONIC_USEC"], 10, 64)
	if after := monotonicNow(t); err != nil || usec < before || usec > after {
		t.Errorf("RELOADING message %q: MONOTONIC_USEC want between %d and %d", rel.text, before, after)
	}
	if again, _ := waitNotify(t, msgs, "READY=1\n"); again.text != ready.text {
		t.Errorf("after the reload READY message %q, want %q", again.text, ready.text)
	}
	// stderr is a pipe that exec copies: the line may trail READY=1.
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(stderr.String(), "reload: authorized_keys read again"); {
		if time.Now().After(deadline) {
			t.Fatal("no reload log line")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case <-exited:
		t.Fatalf("SIGHUP ended the server: %v", waitErr)
	default:
	}

	cmd.Process.Signal(syscall.SIGTERM)
	stop, _ := waitNotify(t, msgs, "STOPPING=1\n")
	if !strings.Contains(stop.text, "STATUS=draining") {
		t.Errorf("STOPPING message %q has no STATUS=draining", stop.text)
	}
	select {
	case <-exited:
		if waitErr != nil {
			t.Errorf("after SIGTERM: %v, want exit 0", waitErr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("still running 30 s after SIGTERM")
	}
}

// fields splits an sd_notify message into its VARIABLE=value fields.
func fields(msg string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(strings.TrimSuffix(msg, "\n"), "\n") {
		k, v, _ := strings.Cut(line, "=")
		m[k] = v
	}
	return m
}

func monotonicNow(t *testing.T) uint64 {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return uint64(ts.Sec)*1e6 + uint64(ts.Nsec)/1e3
}

// TestServerWatchdogOtherPID: a WATCHDOG_PID that is not this process's
// (a child that inherited its parent's variables) means no pings, while
// READY=1 still comes; cli.MainEnv passes the environment in.
func TestServerWatchdogOtherPID(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "notify")
	msgs := notifySocket(t, sock)
	ctx, cancel := context.WithCancel(context.Background())
	code := make(chan int, 1)
	stderr := new(syncBuffer)
	go func() {
		code <- MainEnv(ctx, []string{"server", "--listen", "127.0.0.1:0", "--authorized-keys", filepath.Join(dir, "missing")},
			[]string{"NOTIFY_SOCKET=" + sock, "WATCHDOG_USEC=100000", "WATCHDOG_PID=" + strconv.Itoa(os.Getpid()+1), "STATE_DIRECTORY=" + dir},
			new(syncBuffer), stderr)
	}()
	waitNotify(t, msgs, "READY=1\n")
	select {
	case m := <-msgs:
		t.Errorf("got %q; want nothing while WATCHDOG_PID is another process's", m.text)
	case <-time.After(500 * time.Millisecond):
	}
	cancel()
	waitNotify(t, msgs, "STOPPING=1\n")
	if c := <-code; c != 0 {
		t.Errorf("exit %d, want 0; stderr:\n%s", c, stderr)
	}
}

// TestBadNotifySocket: an environment systemd would never make is an
// error that says what to do, before anything starts.
func TestBadNotifySocket(t *testing.T) {
	tests := []struct{ env, want string }{
		{"NOTIFY_SOCKET=run/notify", "neither an absolute path nor an abstract socket"},
		{"WATCHDOG_USEC=30s", ""}, // no socket: not under systemd, nothing read
	}
	for _, tt := range tests {
		t.Run(tt.env, func(t *testing.T) {
			var stdout, stderr syncBuffer
			dir := t.TempDir()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			c := MainEnv(ctx, []string{"server", "--listen", "127.0.0.1:0", "--authorized-keys", filepath.Join(dir, "missing")},
				[]string{tt.env, "STATE_DIRECTORY=" + dir}, &stdout, &stderr)
			if tt.want == "" {
				if c != 0 {
					t.Errorf("exit %d, want 0 (ran until ctx ended); stderr:\n%s", c, &stderr)
				}
				return
			}
			if c != 1 || !strings.Contains(stderr.String(), tt.want) || !strings.Contains(stderr.String(), "unset NOTIFY_SOCKET") {
				t.Errorf("exit %d, stderr %q; want exit 1 and %q with what to do", c, &stderr, tt.want)
			}
		})
	}
}

func TestStateDir(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"systemd", map[string]string{"STATE_DIRECTORY": "/var/lib/pinhole", "XDG_STATE_HOME": "/x", "HOME": "/home/me"}, "/var/lib/pinhole"},
		{"systemd, several", map[string]string{"STATE_DIRECTORY": "/var/lib/a:/var/lib/b"}, "/var/lib/a"},
		{"relative STATE_DIRECTORY is ignored", map[string]string{"STATE_DIRECTORY": "var/lib/a", "HOME": "/home/me"}, "/home/me/.local/state/pinhole"},
		{"xdg", map[string]string{"XDG_STATE_HOME": "/x", "HOME": "/home/me"}, "/x/pinhole"},
		{"relative xdg is ignored", map[string]string{"XDG_STATE_HOME": "rel", "HOME": "/home/me"}, "/home/me/.local/state/pinhole"},
		{"home", map[string]string{"HOME": "/home/me"}, "/home/me/.local/state/pinhole"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := stateDir(func(k string) string { return tt.env[k] })
			if err != nil || got != filepath.FromSlash(tt.want) {
				t.Errorf("stateDir = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	_, err := stateDir(func(string) string { return "" })
	if err == nil || !strings.Contains(err.Error(), "--host-key FILE") {
		t.Errorf("stateDir with no variables = %v; want an error naming --host-key", err)
	}
}

// TestUpNotify: pinhole up sends READY=1 only once each tunnel has
// connected or failed its first try (and retries): at READY=1 the good
// tunnel's "connected" line and the dead one's "retrying" line are out.
// The end of its ctx (SIGTERM under Run) gives STOPPING=1.
func TestUpNotify(t *testing.T) {
	w := newWorld(t, "")
	target := streamtest.NewTarget(t).Port()
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, deadPort, _ := net.SplitHostPort(dead.Addr().String())
	dead.Close() // nothing listens there: refused at once
	bad := strings.Replace(w.upTunnel("down", "", target), "port = ", "port = "+deadPort+" # ", 1)
	file := filepath.Join(w.dir, "up.toml")
	writeFile(t, file, w.upTunnel("fine", "", target)+bad)
	sock := filepath.Join(w.dir, "notify")
	msgs := notifySocket(t, sock)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr syncBuffer
	code := make(chan int, 1)
	go func() {
		code <- MainEnv(ctx, []string{"up", "-c", file}, []string{"NOTIFY_SOCKET=" + sock, "HOME=" + w.dir}, &stdout, &stderr)
	}()
	ready, _ := waitNotify(t, msgs, "READY=1\n")
	if want := "READY=1\nSTATUS=running 2 tunnels of " + file + "\n"; ready.text != want {
		t.Errorf("READY message %q, want %q", ready.text, want)
	}
	if !strings.Contains(stdout.String(), "pinhole up: fine: connected to") {
		t.Errorf("READY=1 before the good tunnel connected; stdout:\n%s", &stdout)
	}
	if !strings.Contains(stderr.String(), `msg="tunnel did not connect; retrying" tunnel=down`) {
		t.Errorf("READY=1 before the dead tunnel's first try failed; stderr:\n%s", &stderr)
	}
	cancel()
	waitNotify(t, msgs, "STOPPING=1\n")
	select {
	case c := <-code:
		if c != 0 {
			t.Errorf("exit %d, want 0; stderr:\n%s", c, &stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("pinhole up still running 30 s after its ctx ended")
	}
}
