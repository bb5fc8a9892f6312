package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
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

	"golang.org/x/net/proxy"

	"github.com/pinhole-dev/pinhole/internal/config"
	"github.com/pinhole-dev/pinhole/internal/ssh"
	"github.com/pinhole-dev/pinhole/internal/streamtest"
	"github.com/pinhole-dev/pinhole/internal/tunnel"
)

// lineLog keeps every stdout line of a proc, so that lines of several
// tunnels, in any order, can be waited for.
type lineLog struct {
	mu    sync.Mutex
	lines []string
	more  chan struct{} // closed and renewed at each line
}

func collect(p *proc) *lineLog {
	l := &lineLog{more: make(chan struct{})}
	go func() {
		for line := range p.lines {
			l.mu.Lock()
			l.lines = append(l.lines, line)
			close(l.more)
			l.more = make(chan struct{})
			l.mu.Unlock()
		}
	}()
	return l
}

// count is how many lines match re.
func (l *lineLog) count(re string) int {
	rx := regexp.MustCompile(re)
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, s := range l.lines {
		if rx.MatchString(s) {
			n++
		}
	}
	return n
}

// wait returns the submatches of the nth (from 1) line matching re.
func (l *lineLog) wait(t *testing.T, p *proc, re string, nth int) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(20 * time.Second)
	for {
		l.mu.Lock()
		n := 0
		for _, s := range l.lines {
			if m := rx.FindStringSubmatch(s); m != nil {
				if n++; n == nth {
					l.mu.Unlock()
					return m
				}
			}
		}
		more := l.more
		l.mu.Unlock()
		select {
		case <-more:
		case <-deadline:
			l.mu.Lock()
			t.Fatalf("no %d. stdout line matching %q within 20 s; stdout:\n%s\nstderr:\n%s", nth, re, strings.Join(l.lines, "\n"), p.stderr)
		}
	}
}

// gatedConn holds its writes once limit bytes have gone out, until open
// is closed: a stream kept open, half sent, for as long as a test wants.
type gatedConn struct {
	*net.TCPConn
	limit    int
	sent     int
	reached  chan struct{}
	open     chan struct{}
	replied  chan struct{} // closed at the first byte read: the stream is through
	gotReply sync.Once
}

func (g *gatedConn) Read(p []byte) (int, error) {
	n, err := g.TCPConn.Read(p)
	if n > 0 {
		g.gotReply.Do(func() { close(g.replied) })
	}
	return n, err
}

func gate(t *testing.T, addr string, limit int) *gatedConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &gatedConn{TCPConn: c.(*net.TCPConn), limit: limit, reached: make(chan struct{}), open: make(chan struct{}), replied: make(chan struct{})}
}

func (g *gatedConn) Write(p []byte) (int, error) {
	written := 0
	if g.sent < g.limit {
		n := min(len(p), g.limit-g.sent)
		m, err := g.TCPConn.Write(p[:n])
		g.sent += m
		written += m
		if err != nil {
			return written, err
		}
		p = p[n:]
		if g.sent == g.limit {
			close(g.reached)
		}
	}
	if len(p) == 0 {
		return written, nil
	}
	<-g.open
	m, err := g.TCPConn.Write(p)
	g.sent += m
	return written + m, err
}

// gatedStream is a checksummed exchange through addr held open halfway.
type gatedStream struct {
	g   *gatedConn
	err chan error
}

func hold(t *testing.T, addr string, seed uint64) *gatedStream {
	t.Helper()
	h := &gatedStream{g: gate(t, addr, 256<<10), err: make(chan error, 1)}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		h.err <- streamtest.Exchange(ctx, h.g, seed, 1<<20, 1<<20)
	}()
	// Held once 256 KiB went out and the reply has begun: the bytes sent
	// may sit in the kernel's buffers before pinhole accepts, but a reply
	// means the stream is open end to end.
	for _, c := range []chan struct{}{h.g.reached, h.g.replied} {
		select {
		case <-c:
		case err := <-h.err:
			t.Fatalf("the stream through %s ended before it was held: %v", addr, err)
		case <-time.After(20 * time.Second):
			t.Fatalf("the stream through %s did not get going in 20 s", addr)
		}
	}
	return h
}

// finish lets the stream go on and checks every byte of both directions.
func (h *gatedStream) finish(t *testing.T, what string) {
	t.Helper()
	close(h.g.open)
	if err := <-h.err; err != nil {
		t.Errorf("the stream held through %s: %v", what, err)
	}
}

func exchangeThrough(t *testing.T, addr string, seed uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dialing %s: %v", addr, err)
	}
	defer c.Close()
	if err := streamtest.Exchange(ctx, c, seed, 256<<10, 256<<10); err != nil {
		t.Fatalf("through %s: %v", addr, err)
	}
}

// refusedSoon checks that addr stops accepting within 10 s.
func refusedSoon(t *testing.T, addr, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("%s (%s) still accepts 10 s after it was removed", what, addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// upTunnel is one [tunnel.NAME] of a test's config, to w's server.
func (w *world) upTunnel(name string, extra string, local ...int) string {
	_, port, _ := net.SplitHostPort(w.addr)
	var fw []string
	for _, p := range local {
		fw = append(fw, fmt.Sprintf("%q", fmt.Sprintf("0:127.0.0.1:%d", p)))
	}
	return fmt.Sprintf("[tunnel.%s]\nhost = \"tester@127.0.0.1\"\nport = %s\nidentity = [%q]\nknown-hosts = %q\nkeepalive = \"1s\"\nlocal = [%s]\n%s\n",
		name, port, w.identity, w.known, strings.Join(fw, ", "), extra)
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// replaceFile writes path as editors do: a new file renamed over it.
func replaceFile(t *testing.T, path, data string) {
	t.Helper()
	tmp := path + ".tmp"
	writeFile(t, tmp, data)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestUpReload: pinhole up against a real pinhole server, through four
// reloads (SIGHUP with nothing changed; SIGHUP adding a tunnel, removing
// one and changing a tunnel's forwards; an editor's rename-and-replace
// restarting a tunnel; a write in place adding a forward back) and a file
// that does not validate. Streams through a removed tunnel, a removed
// forward and a restarted tunnel drain to their last byte. A checksummed
// stream through the tunnel that
// never changes, and one through the forward of the changed tunnel that
// stays, are held open across all of them and finish byte for byte; that
// tunnel connects once.
func TestUpReload(t *testing.T) {
	w := newWorld(t, "")
	tgt := make([]int, 5)
	for i := range tgt {
		tgt[i] = streamtest.NewTarget(t).Port()
	}
	file := filepath.Join(w.dir, "up.toml")
	conf := func(tunnels ...string) string { return "drain = \"5s\"\n\n" + strings.Join(tunnels, "\n") }
	keep := w.upTunnel("keep", "", tgt[0])
	writeFile(t, file, conf(keep, w.upTunnel("gone", "", tgt[1]), w.upTunnel("fwds", "", tgt[2], tgt[3])))

	reload := make(chan struct{}, 1)
	p := startReload(t, reload, "up", "-c", file)
	out := collect(p)
	listening := func(name string, target, nth int) string {
		t.Helper()
		return out.wait(t, p, fmt.Sprintf(`^pinhole up: %s: -L 0:127\.0\.0\.1:%d: listening on (\S+),`, name, target), nth)[1]
	}
	keepAddr := listening("keep", tgt[0], 1)
	goneAddr := listening("gone", tgt[1], 1)
	fwdA := listening("fwds", tgt[2], 1)
	fwdB := listening("fwds", tgt[3], 1)
	out.wait(t, p, `^pinhole up: running 3 tunnels`, 1)

	held := hold(t, keepAddr, 1)
	heldA := hold(t, fwdA, 2)
	exchangeThrough(t, fwdB, 3)
	exchangeThrough(t, goneAddr, 4)
	// Streams through what reload 2 removes: they drain, not drop.
	heldGone := hold(t, goneAddr, 11)
	heldB := hold(t, fwdB, 12)

	// 1. SIGHUP, the file as it was: nothing is touched.
	reload <- struct{}{}
	out.wait(t, p, `reloaded \S+: 0 started, 0 stopped, 0 restarted, 0 changed, 3 unchanged`, 1)

	// 2. SIGHUP after gone is removed, fresh added, fwds' second forward
	// swapped for another.
	writeFile(t, file, conf(keep, w.upTunnel("fwds", "", tgt[2], tgt[4]), w.upTunnel("fresh", "", tgt[1])))
	reload <- struct{}{}
	out.wait(t, p, `reloaded \S+: 1 started, 1 stopped, 0 restarted, 1 changed, 1 unchanged`, 1)
	freshAddr := listening("fresh", tgt[1], 1)
	fwdC := listening("fwds", tgt[4], 1)
	refusedSoon(t, goneAddr, "the removed tunnel's -L")
	refusedSoon(t, fwdB, "the removed forward")
	heldGone.finish(t, "a removed tunnel, in its drain")
	heldB.finish(t, "a removed forward, in its drain")
	exchangeThrough(t, freshAddr, 5)
	heldFresh := hold(t, freshAddr, 13)
	exchangeThrough(t, fwdC, 6)

	// 3. The editor's way, and no signal: fresh's keepalive changes, so it
	// restarts.
	replaceFile(t, file, conf(keep, w.upTunnel("fwds", "", tgt[2], tgt[4]), strings.Replace(w.upTunnel("fresh", "", tgt[1]), `keepalive = "1s"`, `keepalive = "2s"`, 1)))
	out.wait(t, p, `reloaded \S+: 0 started, 0 stopped, 1 restarted, 0 changed, 2 unchanged`, 1)
	heldFresh.finish(t, "a restarted tunnel, in the old one's drain")
	out.wait(t, p, `^pinhole up: fresh: connected to `, 2)
	exchangeThrough(t, listening("fresh", tgt[1], 2), 7)

	// 4. Written in place: the removed forward comes back to fwds.
	writeFile(t, file, conf(keep, w.upTunnel("fwds", "", tgt[2], tgt[4], tgt[3]), strings.Replace(w.upTunnel("fresh", "", tgt[1]), `keepalive = "1s"`, `keepalive = "2s"`, 1)))
	out.wait(t, p, `reloaded \S+: 0 started, 0 stopped, 0 restarted, 1 changed, 2 unchanged`, 1)
	exchangeThrough(t, listening("fwds", tgt[3], 2), 8)

	// 5. A file that does not validate is refused, in one log line, and
	// everything runs on.
	writeFile(t, file, conf(strings.Replace(keep, "host =", "hostname =", 1)))
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.stderr.String(), "reload refused") {
		if time.Now().After(deadline) {
			t.Fatalf("no refusal logged 10 s after a bad file was written; stderr:\n%s", p.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(2 * watchEvery) // it is said once, not at every look at the file
	var refusals []string
	for _, line := range strings.Split(p.stderr.String(), "\n") {
		if strings.Contains(line, "reload refused") {
			refusals = append(refusals, line)
		}
	}
	if len(refusals) != 1 || !regexp.MustCompile(`up\.toml:4:1: unknown key \\"hostname\\" in \[tunnel\.keep\]: did you mean \\"host\\"\?`).MatchString(refusals[0]) {
		t.Errorf("want one refusal line naming up.toml:4:1 and \"host\", got:\n%s", strings.Join(refusals, "\n"))
	}
	exchangeThrough(t, keepAddr, 9)
	exchangeThrough(t, fwdC, 10)

	held.finish(t, "the unchanged tunnel")
	heldA.finish(t, "the forward that stayed in the changed tunnel")
	for _, name := range []string{"keep", "fwds"} {
		if n := out.count(`^pinhole up: ` + name + `: connected to `); n != 1 {
			t.Errorf("%s connected %d times; a tunnel whose connection did not change must not reconnect", name, n)
		}
	}
}

// TestUpAndCheckErrors: a bad file is refused at start by up and by check,
// each mistake as file:line:col with what to write instead; a good one
// passes check.
func TestUpAndCheckErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	writeFile(t, bad, "[tunnel.db]\nhost = \"db.example.com\"\nidentityfile = \"k\"\nlocal = [\"5432:db\"]\n")
	wants := []string{
		bad + `:3:1: unknown key "identityfile" in [tunnel.db]: did you mean "identity"?`,
		bad + `:4:10: -L "5432:db": want [bind:]port:host:hostport`,
	}
	for _, cmd := range []string{"check", "up"} {
		code, _, stderr := run(t, cmd, "-c", bad)
		if code != 1 {
			t.Errorf("%s: exit %d, want 1; stderr:\n%s", cmd, code, stderr)
		}
		for _, w := range append(wants, "pinhole "+cmd+": 2 mistakes in "+bad) {
			if !strings.Contains(stderr, w) {
				t.Errorf("%s: stderr does not say %q:\n%s", cmd, w, stderr)
			}
		}
	}
	// A key file that is not there is a mistake at the line naming it.
	missing := filepath.Join(dir, "missing.toml")
	writeFile(t, missing, "[tunnel.db]\nhost = \"db.example.com\"\nidentity = \"id_gone\"\nlocal = [\"5432:db:5432\"]\n")
	code, _, stderr := run(t, "check", "-c", missing)
	if want := missing + `:3:12: identity "` + filepath.Join(dir, "id_gone") + `": no such file or directory: create the key with ssh-keygen`; code != 1 || !strings.Contains(stderr, want) {
		t.Errorf("check with a missing identity: exit %d, want 1 and %q; stderr:\n%s", code, want, stderr)
	}

	good := filepath.Join(dir, "good.toml")
	writeFile(t, good, "[tunnel.db]\nhost = \"me@db.example.com\"\nlocal = [\"5432:localhost:5432\"]\ndynamic = [\"1080\"]\n")
	code, stdout, stderr := run(t, "check", "-c", good)
	if code != 0 || !strings.Contains(stdout, "ok: 1 tunnel") || !strings.Contains(stdout, "db: me@db.example.com port 22: -L 5432:localhost:5432, -D 1080") {
		t.Errorf("check of a good file: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if code, _, stderr := run(t, "up", "-c", filepath.Join(dir, "absent.toml")); code != 1 || !strings.Contains(stderr, "-c FILE") {
		t.Errorf("up with a missing file: exit %d, stderr:\n%s", code, stderr)
	}
	if code, _, _ := run(t, "up"); code != 2 {
		t.Errorf("up without -c: exit %d, want 2", code)
	}
}

// TestUpSIGHUPBinary: the pinhole binary (cli.Run) reloads on SIGHUP and
// goes on running, and a held stream through its tunnel drains to the
// last byte at SIGTERM, after which it exits 0.
func TestUpSIGHUPBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildPinhole(t)
	w := newWorld(t, "")
	target := streamtest.NewTarget(t).Port()
	file := filepath.Join(w.dir, "up.toml")
	writeFile(t, file, w.upTunnel("one", "", target))
	cmd := exec.Command(bin, "up", "-c", file)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := new(syncBuffer)
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan int, 1)
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		cmd.Wait()
		exited <- cmd.ProcessState.ExitCode()
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		if t.Failed() {
			t.Logf("stderr of pinhole up:\n%s", stderr)
		}
	})
	p := &proc{lines: lines, stderr: stderr}
	addr := p.waitLine(t, `^pinhole up: one: -L \S+: listening on (\S+),`)[1]
	held := hold(t, addr, 1)
	for range 3 {
		if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		p.waitLine(t, `reloaded \S+: 0 started, 0 stopped, 0 restarted, 0 changed, 1 unchanged`)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the drain has begun: the stream must outlive it
	held.finish(t, "SIGHUP three times, then SIGTERM")
	select {
	case code := <-exited:
		if code != 0 {
			t.Fatalf("exit %d after a clean drain, want 0; stderr:\n%s", code, stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("pinhole up still running 30 s after SIGTERM")
	}
}

// TestUpDefaultsAreConnects: a key left out of the file means what the
// flag left out means to pinhole connect.
func TestUpDefaultsAreConnects(t *testing.T) {
	if config.DefaultKeepalive != tunnel.DefaultKeepaliveInterval || config.DefaultKeepaliveCount != tunnel.DefaultKeepaliveCountMax {
		t.Errorf("keepalive defaults %v, %d; pinhole connect's are %v, %d", config.DefaultKeepalive, config.DefaultKeepaliveCount, tunnel.DefaultKeepaliveInterval, tunnel.DefaultKeepaliveCountMax)
	}
	e := &env{stdout: io.Discard, stderr: io.Discard, log: slog.New(slog.DiscardHandler), force: context.Background()}
	// runConnect's flags, read back through -h.
	var out strings.Builder
	e.stderr = &out
	runConnect(context.Background(), e, []string{"-h"})
	for flagName, want := range map[string]string{
		"host-key-check": config.DefaultHostKeyCheck,
		"udp-idle":       config.DefaultUDPIdle.String(),
		"udp-max-flows":  strconv.Itoa(config.DefaultUDPMaxFlows),
		"drain":          config.DefaultDrain.String(),
	} {
		re := regexp.MustCompile(`(?s)\n  -` + regexp.QuoteMeta(flagName) + `[ \n].*?\(default "?([^")]+)"?\)`)
		m := re.FindStringSubmatch(out.String())
		if m == nil || m[1] != want {
			t.Errorf("-%s: connect's default %v, the config's %q", flagName, m, want)
		}
	}
	// -p has no flag default: ssh_config's Port comes first.
	if want := fmt.Sprintf("ssh_config's Port, else %d)", config.DefaultPort); !strings.Contains(out.String(), want) {
		t.Errorf("connect's -p does not say %q:\n%s", want, out.String())
	}
}

// TestConfigDocExample: the example at the top of docs/config.md passes
// pinhole check and prints what the page shows.
func TestConfigDocExample(t *testing.T) {
	doc, err := os.ReadFile("../../docs/config.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```toml\n(# (\\S+)\n.*?)```\n\n```\n\\$ pinhole check -c \\S+\n(.*?)\\$ pinhole up").FindSubmatch(doc)
	if m == nil {
		t.Fatal("docs/config.md has no ```toml example followed by pinhole check's output")
	}
	home := t.TempDir() // with the files the example names
	t.Setenv("HOME", home)
	os.Mkdir(filepath.Join(home, ".ssh"), 0o700)
	writeKey(t, filepath.Join(home, ".ssh"), "id_db")
	writeFile(t, filepath.Join(home, ".ssh", "known_hosts"), "")
	file := filepath.Join(t.TempDir(), filepath.Base(string(m[2])))
	writeFile(t, file, string(m[1]))
	code, stdout, stderr := run(t, "check", "-c", file)
	if code != 0 {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	if want := strings.ReplaceAll(string(m[3]), string(m[2]), file); stdout != want {
		t.Errorf("pinhole check prints:\n%s\ndocs/config.md shows:\n%s", stdout, want)
	}
}

// TestUpReloadRemoteDynamic: -R, -D and /udp forwards come and go at
// reloads through the handles as -L ones do, while a stream through the tunnel's
// -L that stays is held open.
func TestUpReloadRemoteDynamic(t *testing.T) {
	w := newWorld(t, "")
	tgt := make([]int, 3)
	for i := range tgt {
		tgt[i] = streamtest.NewTarget(t).Port()
	}
	file := filepath.Join(w.dir, "up.toml")
	r1 := fmt.Sprintf(`remote = ["0:127.0.0.1:%d"]`, tgt[1])
	writeFile(t, file, w.upTunnel("t", r1, tgt[0]))
	reload := make(chan struct{}, 1)
	p := startReload(t, reload, "up", "-c", file)
	out := collect(p)
	local := out.wait(t, p, `^pinhole up: t: -L \S+: listening on (\S+),`, 1)[1]
	remote1 := out.wait(t, p, fmt.Sprintf(`^pinhole up: t: -R 0:127\.0\.0\.1:%d: the server listens on localhost:(\d+),`, tgt[1]), 1)[1]
	exchangeThrough(t, "127.0.0.1:"+remote1, 1)
	held := hold(t, local, 2)

	udpEcho := streamtest.NewUDPEcho(t).LocalAddr().(*net.UDPAddr).Port
	udpSpec := fmt.Sprintf("0:127.0.0.1:%d/udp", udpEcho)
	second := w.upTunnel("t", fmt.Sprintf("remote = [\"0:127.0.0.1:%d\"]\ndynamic = [\"127.0.0.1:0\"]", tgt[2]), tgt[0])
	second = strings.Replace(second, fmt.Sprintf(`local = ["0:127.0.0.1:%d"]`, tgt[0]), fmt.Sprintf(`local = ["0:127.0.0.1:%d", %q]`, tgt[0], udpSpec), 1)
	writeFile(t, file, second)
	reload <- struct{}{}
	out.wait(t, p, `reloaded \S+: 0 started, 0 stopped, 0 restarted, 1 changed, 0 unchanged`, 1)
	remote2 := out.wait(t, p, fmt.Sprintf(`^pinhole up: t: -R 0:127\.0\.0\.1:%d: the server listens on localhost:(\d+),`, tgt[2]), 1)[1]
	socksAddr := out.wait(t, p, `^pinhole up: t: -D 127\.0\.0\.1:0: SOCKS4/4a/5 and HTTP proxy on (\S+),`, 1)[1]
	refusedSoon(t, "127.0.0.1:"+remote1, "the removed -R on the server")
	exchangeThrough(t, "127.0.0.1:"+remote2, 3)
	d, err := proxy.SOCKS5("tcp", socksAddr, nil, proxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	c, err := d.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", tgt[0]))
	if err != nil {
		t.Fatalf("through the -D added at the reload: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := streamtest.Exchange(ctx, c, 4, 64<<10, 64<<10); err != nil {
		t.Fatalf("through the -D added at the reload: %v", err)
	}
	c.Close()
	// The /udp -L added at the reload carries datagrams both ways.
	udpAddr := out.wait(t, p, `^pinhole up: t: -L `+regexp.QuoteMeta(udpSpec)+`: listening on (\S+),`, 1)[1]
	uc, err := net.Dial("udp", udpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	got := make([]byte, 64)
	for i := 0; ; i++ {
		uc.Write([]byte("datagram"))
		uc.SetReadDeadline(time.Now().Add(time.Second))
		if n, err := uc.Read(got); err == nil && string(got[:n]) == "datagram" {
			break
		}
		if i == 10 {
			t.Fatal("no datagram back through the /udp -L added at the reload")
		}
	}
	held.finish(t, "the -L that stayed while -R, -D and a /udp -L changed")
	if n := out.count(`^pinhole up: t: connected to `); n != 1 {
		t.Errorf("connected %d times; changing forwards must not reconnect", n)
	}
}

// TestUpUnreachableTunnel: a tunnel whose server is not there is retried
// and logged, and the others start and run meanwhile.
func TestUpUnreachableTunnel(t *testing.T) {
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
	p := startReload(t, nil, "up", "-c", file)
	out := collect(p)
	exchangeThrough(t, out.wait(t, p, `^pinhole up: fine: -L \S+: listening on (\S+),`, 1)[1], 1)
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(p.stderr.String(), "tunnel did not connect; retrying") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no two retries of the tunnel that cannot connect in 10 s; stderr:\n%s", p.stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(p.stderr.String(), "tunnel=down") {
		t.Errorf("the retry lines do not name the tunnel:\n%s", p.stderr)
	}
}

// TestUpRetriesRefusedForward: a forward added at a reload whose port is
// taken is logged, and the next reload (the file unchanged) adds it once
// the port is free, touching nothing else.
func TestUpRetriesRefusedForward(t *testing.T) {
	w := newWorld(t, "")
	target := streamtest.NewTarget(t).Port()
	file := filepath.Join(w.dir, "up.toml")
	writeFile(t, file, w.upTunnel("t", "", target))
	reload := make(chan struct{}, 1)
	p := startReload(t, reload, "up", "-c", file)
	out := collect(p)
	first := out.wait(t, p, `^pinhole up: t: -L \S+: listening on (\S+),`, 1)[1]
	held := hold(t, first, 1)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(taken.Addr().String())
	writeFile(t, file, w.upTunnel("t", fmt.Sprintf("remote = []\ndynamic = [\"127.0.0.1:%s\"]", port), target))
	reload <- struct{}{}
	out.wait(t, p, `reloaded \S+: 0 started, 0 stopped, 0 restarted, 1 changed, 0 unchanged`, 1)
	if !strings.Contains(p.stderr.String(), "forward not added") {
		t.Fatalf("no line about the forward whose port is taken; stderr:\n%s", p.stderr)
	}
	taken.Close() // the test's own listener, closed so that pinhole may bind its port
	reload <- struct{}{}
	out.wait(t, p, `reloaded \S+: 0 started, 0 stopped, 0 restarted, 0 changed, 1 unchanged`, 1)
	out.wait(t, p, `^pinhole up: t: -D 127\.0\.0\.1:`+port+`: SOCKS4/4a/5 and HTTP proxy on`, 1)
	held.finish(t, "the tunnel whose refused forward was retried")
	if n := out.count(`^pinhole up: t: connected to `); n != 1 {
		t.Errorf("connected %d times", n)
	}
}

// TestReloads: cli.Run takes SIGHUP as a reload only for the commands
// that have a file to reload; the others keep its default (exit).
func TestReloads(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"up", "-c", "f"}, true},
		{[]string{"server", "-c", "f"}, true},
		{[]string{"server", "-c=f"}, true},
		{[]string{"server", "--listen", ":22"}, true}, // reads authorized_keys again: systemctl reload
		{[]string{"connect", "-L", "1:h:2", "host"}, false},
		{[]string{"check", "-c", "f"}, false},
		{nil, false},
	} {
		if got := reloads(tc.args); got != tc.want {
			t.Errorf("reloads(%q) = %v, want %v", tc.args, got, tc.want)
		}
	}
}

// TestUpJump: a tunnel's jump key is -J: the connection runs through a
// direct-tcpip channel on the jump host (here the server itself), and bind
// is the address it leaves from.
func TestUpJump(t *testing.T) {
	w := newWorld(t, "")
	target := streamtest.NewTarget(t).Port()
	_, port, _ := net.SplitHostPort(w.addr)
	file := filepath.Join(w.dir, "up.toml")
	writeFile(t, file, w.upTunnel("via", fmt.Sprintf("jump = \"tester@127.0.0.1:%s\"\nbind = \"127.0.0.4\"", port), target))
	p := startReload(t, nil, "up", "-c", file)
	out := collect(p)
	exchangeThrough(t, out.wait(t, p, `^pinhole up: via: -L \S+: listening on (\S+),`, 1)[1], 2)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(w.server.stderr.String(), "peer=127.0.0.4:") {
		if time.Now().After(deadline) {
			t.Fatalf("the server saw no connection from the bind address 127.0.0.4; its log:\n%s", w.server.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if n := strings.Count(w.server.stderr.String(), `msg="client connected"`); n < 2 {
		t.Errorf("%d logins on the server, want 2 (the jump and the tunnel through it):\n%s", n, w.server.stderr)
	}
}

// getGoroutines fetches the goroutine count from a --debug-addr server.
func getGoroutines(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if !strings.HasPrefix(string(b), "goroutine profile: total ") {
		t.Fatalf("%sgoroutine?debug=1 gave %q", base, b)
	}
	return string(b)
}

// TestUpFileOnlyKeys: debug-addr at the top of up's file serves the
// profiles; a tunnel's address-family = "inet6" cannot reach a server on
// 127.0.0.1, and "inet" can.
func TestUpFileOnlyKeys(t *testing.T) {
	w := newWorld(t, "")
	target := streamtest.NewTarget(t).Port()
	file := filepath.Join(w.dir, "up.toml")
	writeFile(t, file, "debug-addr = \"127.0.0.1:0\"\n"+
		w.upTunnel("four", "address-family = \"inet\"", target)+
		w.upTunnel("six", "address-family = \"inet6\"", target))
	p := startReload(t, nil, "up", "-c", file)
	out := collect(p)
	base := out.wait(t, p, `debug: net/http/pprof on (http://\S+/debug/pprof/)`, 1)[1]
	getGoroutines(t, base)
	exchangeThrough(t, out.wait(t, p, `^pinhole up: four: -L \S+: listening on (\S+),`, 1)[1], 3)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(p.stderr.String(), "tunnel=six") || !strings.Contains(p.stderr.String(), "tunnel did not connect; retrying") {
		if time.Now().After(deadline) {
			t.Fatalf("the inet6 tunnel to 127.0.0.1 did not fail and retry; stderr:\n%s", p.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestUpConfigURLHost: tunnels of up's file whose host is a URL reach a
// pinhole server's one port over tls:// (the certificate pinned with
// tls-fingerprint) and wss:// (checked against tls-ca, a path relative to
// the file), with proxy = "none"; the host key is remembered under the
// URL's host:port, and pinhole check shows the URLs.
func TestUpConfigURLHost(t *testing.T) {
	dir := t.TempDir()
	identity, pub := writeKey(t, dir, "id_ed25519")
	writeFile(t, filepath.Join(dir, "authorized_keys"), string(ssh.MarshalAuthorizedKey(pub)))
	pem := filepath.Join(dir, "cert.pem")
	fp := selfSignedPair(t, pem)
	srv := start(t, "server", "--listen", "127.0.0.1:0", "--host-key", filepath.Join(dir, "host_key"),
		"--authorized-keys", filepath.Join(dir, "authorized_keys"), "--tls-cert", pem, "--tls-key", pem)
	_, port, _ := net.SplitHostPort(srv.waitLine(t, `listening on (\S+)`)[1])
	t1, t2 := streamtest.NewTarget(t).Port(), streamtest.NewTarget(t).Port()
	known := filepath.Join(dir, "known_hosts")
	file := filepath.Join(dir, "up.toml")
	writeFile(t, file, fmt.Sprintf(`[tunnel.pinned]
host = "tls://tester@127.0.0.1:%[1]s"
tls-fingerprint = %[2]q
proxy = "none"
identity = [%[3]q]
known-hosts = %[4]q
local = ["0:127.0.0.1:%[5]d"]

[tunnel.ca]
host = "wss://127.0.0.1:%[1]s/ssh"
user = "tester"
tls-ca = "cert.pem"
proxy = "none"
identity = [%[3]q]
known-hosts = %[4]q
local = ["0:127.0.0.1:%[6]d"]
`, port, fp, identity, known, t1, t2))
	code, stdout, stderr := run(t, "check", "-c", file)
	for _, w := range []string{
		fmt.Sprintf("pinned: tls://tester@127.0.0.1:%s: -L 0:127.0.0.1:%d", port, t1),
		fmt.Sprintf("ca: wss://tester@127.0.0.1:%s/ssh: -L 0:127.0.0.1:%d", port, t2),
	} {
		if code != 0 || !strings.Contains(stdout, w) {
			t.Errorf("check: exit %d, stdout does not say %q:\n%s%s", code, w, stdout, stderr)
		}
	}
	p := startReload(t, nil, "up", "-c", file)
	out := collect(p)
	exchangeThrough(t, out.wait(t, p, `^pinhole up: pinned: -L \S+: listening on (\S+),`, 1)[1], 1)
	exchangeThrough(t, out.wait(t, p, `^pinhole up: ca: -L \S+: listening on (\S+),`, 1)[1], 2)
	if b, err := os.ReadFile(known); err != nil || !strings.Contains(string(b), "[127.0.0.1]:"+port+" ssh-ed25519 ") {
		t.Errorf("known_hosts does not name the URL's host:port: %q, %v", b, err)
	}
}
