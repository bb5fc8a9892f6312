package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/pinhole-dev/pinhole/internal/observe"
	"github.com/pinhole-dev/pinhole/internal/streamtest"
)

// statusJSON runs pinhole status --json on socket and returns the one
// snapshot it prints.
func statusJSON(t *testing.T, socket string) observe.Snapshot {
	t.Helper()
	code, out, errOut := run(t, "status", "--json", "--socket", socket)
	if code != 0 {
		t.Fatalf("pinhole status --json: exit %d\n%s", code, errOut)
	}
	var s observe.Snapshot
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("pinhole status --json printed %q: %v", out, err)
	}
	return s
}

// echoBytes sends n bytes through addr to an echo and reads them back.
func echoBytes(t *testing.T, addr string, n int) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	msg := bytes.Repeat([]byte{'p'}, n)
	go c.Write(msg)
	got := make([]byte, n)
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("echo through %s: %v", addr, err)
	}
}

// TestStatus: pinhole status reads a running connect's and server's
// control sockets (mode 0600, the user's): the table and --json show the
// session and the tunnel, the forward's address, state, the bytes a
// transfer moved and its rate, and a refusal.
func TestStatus(t *testing.T) {
	echo := streamtest.NewEcho(t)
	w := newWorld(t, fmt.Sprintf(`permitopen="%s"`, echo.Addr()))
	dir := t.TempDir()
	cliSock := filepath.Join(dir, "c.sock")
	c := start(t, w.connectArgs("--control", cliSock, "-L", "0:"+echo.Addr(), "-L", "0:127.0.0.1:9")...)
	addr := c.waitLine(t, `-L 0:`+regexp.QuoteMeta(echo.Addr())+`: listening on (\S+),`)[1]
	refusedAddr := c.waitLine(t, `-L 0:127\.0\.0\.1:9: listening on (\S+),`)[1]

	fi, err := os.Stat(cliSock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 || int(fi.Sys().(*syscall.Stat_t).Uid) != os.Getuid() {
		t.Errorf("control socket %s: mode %v, owner %d; want a socket of mode 0600, ours", cliSock, fi.Mode(), fi.Sys().(*syscall.Stat_t).Uid)
	}

	echoBytes(t, addr, 100_000)
	if conn, err := net.Dial("tcp", refusedAddr); err == nil { // permitopen refuses it
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		conn.Read(make([]byte, 1))
		conn.Close()
	}
	s := statusJSON(t, cliSock)
	if s.Role != "client" || len(s.Tunnels) != 1 || len(s.Tunnels[0].Forwards) != 2 {
		t.Fatalf("status of connect: %+v; want one tunnel with two forwards", s)
	}
	f := s.Tunnels[0].Forwards[0]
	if f.Addr != addr || f.State != "up" || f.BytesToTarget != 100_000 || f.BytesFromTarget != 100_000 || s.Tunnels[0].State != "up" {
		t.Errorf("forward %+v; want up at %s with 100000 bytes each way", f, addr)
	}
	if s.RateSeconds == 0 {
		t.Errorf("rate_seconds 0: status asks again a second later to have rates")
	}
	if s.Tunnels[0].Forwards[1].StreamsRefused != 1 || s.Counts[observe.RefusedByServer] != 1 {
		t.Errorf("refused forward %+v, counts %v; want 1 refusal, server-refused", s.Tunnels[0].Forwards[1], s.Counts)
	}

	// The table, as a person reads it.
	code, out, errOut := run(t, "status", "--socket", cliSock)
	if code != 0 {
		t.Fatalf("pinhole status: exit %d\n%s", code, errOut)
	}
	for _, want := range []string{"TUNNEL / FORWARD", "-L 0:" + echo.Addr(), addr, "97.7 KiB", "server-refused", "up"} {
		if !strings.Contains(out, want) {
			t.Errorf("pinhole status lacks %q:\n%s", want, out)
		}
	}

	// The server's: its session, key and the permitopen refusal.
	srvSock := filepath.Join(dir, "s.sock")
	srv := start(t, "server", "--listen", "127.0.0.1:0", "--host-key", filepath.Join(w.dir, "host_key"), "--authorized-keys", filepath.Join(w.dir, "authorized_keys"), "--control", srvSock)
	srv.waitLine(t, `listening on (\S+)`)
	ss := statusJSON(t, srvSock)
	if ss.Role != "server" || len(ss.Sessions) != 0 {
		t.Errorf("a new server's status: %+v; want role server, no sessions", ss)
	}
	ws := statusJSON(t, w.socket(t))
	if len(ws.Sessions) != 1 || ws.Sessions[0].BytesToTarget != 100_000 || ws.Counts[observe.RefusedPermitOpen] != 1 {
		t.Errorf("the world's server: %+v; want one session that carried 100000 bytes and a permitopen refusal", ws)
	}

	// Every socket of the control directory at once, and a clear word
	// for a socket nobody answers on.
	code, _, errOut = run(t, "status", "--socket", filepath.Join(dir, "nobody.sock"))
	if code != 1 || !strings.Contains(errOut, "no pinhole answers") {
		t.Errorf("status of a missing socket: exit %d, %q; want 1 and what is wrong", code, errOut)
	}
}

// socket is the control socket of w's server, in the tests' control
// directory (TestMain).
func (w *world) socket(t *testing.T) string {
	t.Helper()
	code, out, _ := run(t, "status", "--json")
	if code != 0 {
		t.Fatal("pinhole status --json of the control directory failed")
	}
	dir := filepath.Join(os.Getenv("XDG_RUNTIME_DIR"), "pinhole")
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var s observe.Snapshot
		if json.Unmarshal([]byte(line), &s) == nil && s.Role == "server" {
			for _, p := range []string{"server.sock", fmt.Sprintf("server-%d.sock", os.Getpid())} {
				if q, err := fetchOne(t.Context(), filepath.Join(dir, p)); err == nil && q.Started.Equal(s.Started) {
					return filepath.Join(dir, p)
				}
			}
		}
	}
	t.Fatalf("no server in the control directory %s:\n%s", dir, out)
	return ""
}

// TestStatusWatchTmux: pinhole status --watch in a real terminal (tmux):
// the screen shows the tunnel, redraws in place every second as a
// transfer moves bytes, and Ctrl-C ends it.
func TestStatusWatchTmux(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	tmux, err := exec.LookPath("tmux")
	if err != nil {
		t.Skip("tmux is not installed (Debian package tmux; scripts/test installs it): skipping the --watch screen test")
	}
	bin := buildPinhole(t)
	echo := streamtest.NewEcho(t)
	w := newWorld(t, "")
	sock := filepath.Join(t.TempDir(), "c.sock")
	c := start(t, w.connectArgs("--control", sock, "-L", "0:"+echo.Addr())...)
	addr := c.waitLine(t, `-L \S+: listening on (\S+),`)[1]

	tsock := filepath.Join(t.TempDir(), "tmux")
	tm := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(tmux, append([]string{"-S", tsock}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	tm("new-session", "-d", "-s", "watch", "-x", "200", "-y", "40", bin, "status", "--watch", "--socket", sock)
	t.Cleanup(func() { exec.Command(tmux, "-S", tsock, "kill-server").Run() })
	screen := func() string { return tm("capture-pane", "-p", "-t", "watch") }
	waitScreen := func(what string, ok func(string) bool) string {
		t.Helper()
		var s string
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			if s = screen(); ok(s) {
				return s
			}
		}
		t.Fatalf("the screen never showed %s:\n%s", what, s)
		return ""
	}
	first := waitScreen("the tunnel's forward", func(s string) bool { return strings.Contains(s, addr) && strings.Contains(s, "0 B  ") })
	if !strings.HasPrefix(strings.TrimLeft(first, "\n"), "pinhole client") {
		t.Errorf("the screen does not start with the process's line:\n%s", first)
	}

	echoBytes(t, addr, 300_000)
	moved := waitScreen("the 300000 bytes (293.0 KiB)", func(s string) bool { return strings.Contains(s, "293.0 KiB") })
	t.Logf("the screen after the transfer:\n%s", moved)
	// Redrawn in place: one header, not a scroll of them.
	if n := strings.Count(moved, "pinhole client"); n != 1 {
		t.Errorf("the screen shows the header %d times; want it redrawn in place, once:\n%s", n, moved)
	}
	// The rate of the transfer shows while it is recent, then falls.
	waitScreen("a rate in KiB/s", func(s string) bool { return regexp.MustCompile(`\d+\.\d KiB/s`).MatchString(s) })
	waitScreen("the rate back at 0", func(s string) bool {
		return regexp.MustCompile(`293\.0 KiB\s+293\.0 KiB\s+0 B/s\s+0 B/s`).MatchString(s)
	})

	tm("send-keys", "-t", "watch", "C-c")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if exec.Command(tmux, "-S", tsock, "has-session", "-t", "watch").Run() != nil {
			break // the command ended, and its session with it
		}
		if time.Now().After(deadline) {
			t.Fatalf("pinhole status --watch still runs 10 s after Ctrl-C:\n%s", screen())
		}
	}
}

// TestUpControl: pinhole stop NAME drains and stops one tunnel of a
// running pinhole up, the other goes on, and pinhole reload starts it
// again, as SIGHUP would; a name that is not there gets a clear error.
func TestUpControl(t *testing.T) {
	w := newWorld(t, "")
	a, b := streamtest.NewEcho(t), streamtest.NewEcho(t)
	file := filepath.Join(w.dir, "up.toml")
	_, pa, _ := net.SplitHostPort(a.Addr())
	_, pb, _ := net.SplitHostPort(b.Addr())
	writeFile(t, file, "drain = \"2s\"\n\n"+w.upTunnel("one", "", atoi(t, pa))+"\n"+w.upTunnel("two", "", atoi(t, pb)))
	sock := filepath.Join(t.TempDir(), "up.sock")
	p := start(t, "up", "-c", file, "--control", sock)
	out := collect(p)
	addrOne := out.wait(t, p, `^pinhole up: one: -L \S+: listening on (\S+),`, 1)[1]
	addrTwo := out.wait(t, p, `^pinhole up: two: -L \S+: listening on (\S+),`, 1)[1]
	out.wait(t, p, `^pinhole up: running 2 tunnels`, 1)
	echoBytes(t, addrTwo, 1000)

	s := statusJSON(t, sock)
	if len(s.Tunnels) != 2 || s.Tunnels[0].Name != "one" || s.Tunnels[1].Name != "two" || s.Tunnels[1].State != "up" || s.Tunnels[1].BytesToTarget != 1000 {
		t.Fatalf("status of up: %+v; want tunnels one and two, up, two with 1000 bytes", s.Tunnels)
	}

	code, stdout, errOut := run(t, "stop", "--socket", sock, "two")
	if code != 0 || !strings.Contains(stdout, "two: draining and stopping") {
		t.Fatalf("pinhole stop two: exit %d, %q, %q", code, stdout, errOut)
	}
	refusedSoon(t, addrTwo, "the stopped tunnel's -L")
	echoBytes(t, addrOne, 1000) // the other goes on
	s = statusJSON(t, sock)
	if s.Tunnels[1].Name != "two" || s.Tunnels[1].State != "closed" || !strings.Contains(s.Tunnels[1].LastError, "pinhole stop") {
		t.Errorf("status after stop: %+v; want two closed, stopped by pinhole stop", s.Tunnels)
	}

	code, _, errOut = run(t, "stop", "--socket", sock, "three")
	if code != 1 || !strings.Contains(errOut, `no running tunnel "three": the running ones are one`) {
		t.Errorf("pinhole stop three: exit %d, %q; want 1 and the running ones", code, errOut)
	}

	code, stdout, errOut = run(t, "reload", "--socket", sock)
	if code != 0 || !strings.Contains(stdout, "1 started, 0 stopped, 0 restarted, 0 changed, 1 unchanged") {
		t.Fatalf("pinhole reload: exit %d, %q, %q", code, stdout, errOut)
	}
	addrTwo = out.wait(t, p, `^pinhole up: two: -L \S+: listening on (\S+),`, 2)[1]
	echoBytes(t, addrTwo, 10)
	s = statusJSON(t, sock)
	if s.Tunnels[1].State != "up" || len(s.Tunnels) != 2 {
		t.Errorf("status after reload: %+v; want two up again", s.Tunnels)
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestStatusEscapesPeerText: text a peer chose (a failed login's method
// name, a user name, a -R it asked for, a server's refusal, an error)
// reaches the terminal with its control characters escaped, in the table
// and in --json: no escape sequence, no line or column of its own.
func TestStatusEscapesPeerText(t *testing.T) {
	const evil = "a\x1b]0;owned\x07b\x1b[2Jc\u009b31md\x7fe\tf\ng\r\xffh"
	const shownAs = `a\x1b]0;owned\ab\x1b[2Jc\u009b31md\x7fe\tf\ng\r\xffh`
	now := time.Now()
	server := shown{path: "/run/pinhole/server.sock", Snapshot: observe.Snapshot{
		Role: "server", Version: "1.0", Time: now, Started: now,
		Sessions: []observe.Session{{Key: "SHA256:k", Comment: "c" + evil, User: evil, Source: "127.0.0.1:1", State: "up", Since: now,
			Listeners: []observe.Listener{{Requested: evil, Proto: "tcp", Addr: "127.0.0.1:2", Since: now}}}},
		Events: []observe.Event{{Time: now, Kind: "auth", Reason: observe.AuthMethod, Tunnel: evil, Forward: evil, Peer: "127.0.0.1:3", Detail: evil}},
	}}
	client := shown{path: "/run/pinhole/up.sock", Snapshot: observe.Snapshot{
		Role: "client", Version: "1.0", Time: now, Started: now,
		Tunnels: []observe.Tunnel{{Name: evil, Server: evil, State: "up", Since: now, LastError: evil,
			Forwards: []observe.Forward{{Forward: evil, Addr: evil, State: "failed", LastError: evil}}}},
		Events: []observe.Event{{Time: now, Kind: "refused", Reason: observe.RefusedRemote, Tunnel: evil, Forward: evil, Detail: evil}},
	}}
	clean := func(what, out string) {
		t.Helper()
		if !utf8.ValidString(out) {
			t.Errorf("%s is not UTF-8:\n%q", what, out)
		}
		for _, r := range strings.TrimSuffix(out, "\n") {
			if r != '\n' && !unicode.IsPrint(r) {
				t.Errorf("%s holds %U:\n%q", what, r, out)
				return
			}
		}
	}
	for _, s := range []shown{server, client} {
		var b strings.Builder
		printSnapshot(&b, s)
		out := b.String()
		clean("pinhole status of a "+s.Role, out)
		if !strings.Contains(out, shownAs[:40]) {
			t.Errorf("pinhole status of a %s does not show the text escaped (%s):\n%s", s.Role, shownAs[:40], out)
		}
		var j bytes.Buffer
		if err := printJSON(&j, []shown{s}); err != nil {
			t.Fatal(err)
		}
		clean("pinhole status --json of a "+s.Role, j.String())
		var back observe.Snapshot
		if err := json.Unmarshal(j.Bytes(), &back); err != nil {
			t.Fatalf("--json: %v\n%s", err, j.String())
		}
		if got := back.Events[0].Forward; got != strings.ToValidUTF8(evil, "\uFFFD") {
			t.Errorf("--json's event forward reads back as %q; want %q", got, evil)
		}
	}
}
