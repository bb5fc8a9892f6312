package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/ssh"
	"github.com/pinhole-dev/pinhole/internal/sshtest"
	"github.com/pinhole-dev/pinhole/internal/streamtest"
)

// The guides' tests. Each guide in docs/guides/ marks the blocks it wants
// run with a line "<!-- test: NAME -->" right before the fence (or
// "<!-- test: file PATH -->" / "<!-- test: append PATH -->" for a file the
// reader writes); these tests read the blocks out of the markdown and run
// their lines, so a changed guide runs its new text.
//
// What the tests change in a line, and nothing else (guideEnv.rewrite):
//   - the ports of a forward spec, "A:localhost:B" (also "A localhost:B" in
//     ssh_config, and the home guide's camera 192.168.1.64, which becomes
//     127.0.0.1), become free loopback ports: the listening port A through
//     one map and the target port B through another, since both ends run
//     on this machine and 5432:localhost:5432 would otherwise be one port
//     twice;
//   - the port of "http://localhost:PORT/" (a curl on the VPS) is the
//     listening port of the same map;
//   - in a TOML file, "vps.example.com" becomes 127.0.0.1 and "port = 2222"
//     the port of the test's pinhole server;
//   - "pinhole connect" and "ssh" get "-F ~/.ssh/config" in front of their
//     arguments: ssh, and pinhole as ssh does, take ~ for ~/.ssh/config from
//     the password database, not from $HOME, so pointing HOME at a test
//     directory is not enough; -F also keeps /etc/ssh/ssh_config out.
//     That config maps vps, bastion and db to pinhole servers on 127.0.0.1
//     with their Port, one IdentityFile and a UserKnownHostsFile;
//   - a leading "~/" of a word becomes the test's HOME (set with t.Setenv,
//     which pinhole up's ~ follows).
//   - TestGuideDatabaseStockBastion only: "-J me@bastion" names the user
//     running the test, the one user its stock sshd lets in;
//   - "pinhole" is cli.Main in this process (or the binary "go build" made
//     in the systemd guide); a trailing "&" runs it in the background, as
//     every command that stays up does anyway here; "kill -HUP $!" is the
//     reload that SIGHUP sends under Run.

// guideBlock returns the lines of the fenced block after the marker
// "<!-- test: name -->" in docs/guides/file.
func guideBlock(t *testing.T, file, name string) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "docs", "guides", file))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	for i, l := range lines {
		if strings.TrimSpace(l) != "<!-- test: "+name+" -->" {
			continue
		}
		if i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], "```") {
			t.Fatalf("docs/guides/%s:%d: the marker %q is not right before a fenced block", file, i+1, name)
		}
		var block []string
		for _, b := range lines[i+2:] {
			if strings.HasPrefix(b, "```") {
				return block
			}
			block = append(block, b)
		}
		t.Fatalf("docs/guides/%s:%d: the block after %q is not closed", file, i+1, name)
	}
	t.Fatalf("docs/guides/%s has no block marked <!-- test: %s -->", file, name)
	return nil
}

// guideCommands is guideBlock without blank lines and "#" comments.
func guideCommands(t *testing.T, file, name string) []string {
	var cmds []string
	for _, l := range guideBlock(t, file, name) {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			cmds = append(cmds, l)
		}
	}
	if len(cmds) == 0 {
		t.Fatalf("docs/guides/%s: the block %q has no command", file, name)
	}
	return cmds
}

// guideEnv is a HOME with a key and an ssh_config whose hosts are pinhole
// servers on 127.0.0.1 that let the key in.
type guideEnv struct {
	home, config, identity string
	servers                map[string]*proc
	addrs                  map[string]string
	listen, target         map[int]int // guide port -> test port
	reloads                chan struct{}
}

func newGuideEnv(t *testing.T, hosts ...string) *guideEnv {
	t.Helper()
	home := t.TempDir()
	t.Setenv("HOME", home)
	sshDir := filepath.Join(home, ".ssh")
	if err := os.Mkdir(sshDir, 0o700); err != nil {
		t.Fatal(err)
	}
	identity, pub := writeKey(t, sshDir, "id_ed25519")
	authKeys := filepath.Join(home, "authorized_keys")
	writeFile(t, authKeys, string(ssh.MarshalAuthorizedKey(pub)))
	g := &guideEnv{home: home, identity: identity, servers: map[string]*proc{}, addrs: map[string]string{},
		listen: map[int]int{}, target: map[int]int{}, reloads: make(chan struct{}, 1)}
	var cfg strings.Builder
	for _, h := range hosts {
		srv := start(t, "server", "--listen", "127.0.0.1:0", "--host-key", filepath.Join(home, h+"_host_key"), "--authorized-keys", authKeys)
		g.addrs[h] = srv.waitLine(t, `listening on (\S+)`)[1]
		g.servers[h] = srv
		_, port, _ := net.SplitHostPort(g.addrs[h])
		fmt.Fprintf(&cfg, "Host %s\n  HostName 127.0.0.1\n  Port %s\n  IdentityFile %s\n  IdentitiesOnly yes\n  UserKnownHostsFile %s\n  StrictHostKeyChecking accept-new\n  BatchMode yes\n  ServerAliveInterval 1\n\n",
			h, port, identity, filepath.Join(sshDir, "known_hosts"))
	}
	g.config = filepath.Join(sshDir, "config")
	writeFile(t, g.config, cfg.String())
	return g
}

// freePort is a loopback port free for TCP and UDP at once.
func freePort(t *testing.T) int {
	t.Helper()
	for range 50 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		ln.Close()
		if err == nil {
			pc.Close()
			return port
		}
	}
	t.Fatal("no port free for both TCP and UDP")
	return 0
}

func (g *guideEnv) port(t *testing.T, m map[int]int, guide int) int {
	if p, ok := m[guide]; ok {
		return p
	}
	m[guide] = freePort(t)
	return m[guide]
}

// listenOf and targetOf are the test's ports for a guide's listening and
// target port, which the guide's lines must have used.
func (g *guideEnv) listenOf(t *testing.T, guide int) int {
	t.Helper()
	p, ok := g.listen[guide]
	if !ok {
		t.Fatalf("the guide's commands listen on no port %d (listening ports: %v): the guide and its test disagree", guide, g.listen)
	}
	return p
}

func (g *guideEnv) targetOf(t *testing.T, guide int) int {
	t.Helper()
	p, ok := g.target[guide]
	if !ok {
		t.Fatalf("the guide's commands forward to no port %d (target ports: %v): the guide and its test disagree", guide, g.target)
	}
	return p
}

var (
	guideSpec    = regexp.MustCompile(`\b(\d+)([: ])(localhost|127\.0\.0\.1|192\.168\.1\.64):(\d+)\b`)
	guideTOMLPrt = regexp.MustCompile(`(?m)^port = 2222$`)
	guideURL     = regexp.MustCompile(`\bhttp://localhost:(\d+)/`)
)

// rewrite is the whole of what the tests change in a guide's line (see
// the comment at the top of this file).
func (g *guideEnv) rewrite(t *testing.T, line string) string {
	line = guideSpec.ReplaceAllStringFunc(line, func(s string) string {
		m := guideSpec.FindStringSubmatch(s)
		a, _ := strconv.Atoi(m[1])
		b, _ := strconv.Atoi(m[4])
		host := m[3]
		if host == "192.168.1.64" {
			host = "127.0.0.1"
		}
		return fmt.Sprintf("%d%s%s:%d", g.port(t, g.listen, a), m[2], host, g.port(t, g.target, b))
	})
	line = guideURL.ReplaceAllStringFunc(line, func(s string) string {
		a, _ := strconv.Atoi(guideURL.FindStringSubmatch(s)[1])
		return fmt.Sprintf("http://localhost:%d/", g.port(t, g.listen, a))
	})
	if addr, ok := g.addrs["vps"]; ok {
		_, port, _ := net.SplitHostPort(addr)
		line = guideTOMLPrt.ReplaceAllString(line, "port = "+port)
		line = strings.ReplaceAll(line, "vps.example.com", "127.0.0.1")
	}
	return line
}

// words splits a command line as sh would for the guides' lines: spaces,
// '...' and "..." quotes, and ~/ at the start of a word.
func (g *guideEnv) words(t *testing.T, line string) []string {
	var out []string
	var cur strings.Builder
	in, quote := false, rune(0)
	for _, r := range line {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '\'' || r == '"':
			quote, in = r, true
		case r == ' ' || r == '\t':
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if quote != 0 {
		t.Fatalf("unclosed quote in %q", line)
	}
	if in {
		out = append(out, cur.String())
	}
	for i, w := range out {
		if strings.HasPrefix(w, "~/") {
			out[i] = filepath.Join(g.home, w[2:])
		}
	}
	return out
}

// runLine runs one of a guide's command lines: pinhole through Main in the
// background, ssh as a process of the test's; it returns the pinhole one.
func (g *guideEnv) runLine(t *testing.T, line string) *proc {
	t.Helper()
	w := g.words(t, g.rewrite(t, line))
	if n := len(w); n > 0 && w[n-1] == "&" {
		w = w[:n-1]
	}
	t.Logf("guide line %q runs as %q", line, w)
	switch {
	case len(w) >= 2 && w[0] == "pinhole" && w[1] == "connect":
		return start(t, append([]string{"connect", "-F", g.config}, w[2:]...)...)
	case len(w) >= 2 && w[0] == "pinhole":
		return startReload(t, g.reloads, w[1:]...)
	case len(w) >= 1 && w[0] == "ssh":
		cmd := exec.Command("ssh", append([]string{"-F", g.config}, w[1:]...)...)
		stderr := new(syncBuffer)
		cmd.Stderr = stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Kill() // our own child, by its pid
			cmd.Wait()
			if t.Failed() {
				t.Logf("stderr of %q:\n%s", line, stderr)
			}
		})
		return nil
	case strings.Join(w, " ") == "kill -HUP $!":
		g.reloads <- struct{}{}
		return nil
	}
	t.Fatalf("the guides' test does not know how to run %q", line)
	return nil
}

// retry calls f until it succeeds or 20 s pass.
func retry(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// httpApp is the guide's local web app on 127.0.0.1:port.
func httpApp(t *testing.T, port int) string {
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf("hello from the app on %d\n", port)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return body
}

func httpGet(url, want string) error {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if string(b) != want {
		return fmt.Errorf("got %q, want %q", b, want)
	}
	return nil
}

// echoThrough runs a stream exchange with a streamtest target through addr.
func echoThrough(t *testing.T, addr string, seed uint64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := streamtest.Exchange(ctx, conn, seed, 1<<20, 1<<20); err != nil {
		t.Fatalf("through %s: %v", addr, err)
	}
}

func targetOn(t *testing.T, port int) {
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	streamtest.NewTargetListener(t, ln)
}

// TestGuideWebApp: docs/guides/web-app.md, with pinhole connect and with
// OpenSSH's ssh, against pinhole server; the app answers HTTP through the
// server's port.
func TestGuideWebApp(t *testing.T) {
	g := newGuideEnv(t, "vps")
	for _, block := range []string{"web-connect", "web-ssh"} {
		t.Run(block, func(t *testing.T) {
			cmds := guideCommands(t, "web-app.md", block)
			if len(cmds) != 1 {
				t.Fatalf("want one command in %s, got %q", block, cmds)
			}
			if block == "web-ssh" {
				if _, err := exec.LookPath("ssh"); err != nil {
					t.Skip("no ssh (Debian package openssh-client)")
				}
			}
			clear(g.listen) // each block afresh: the other's forward may still be closing
			clear(g.target)
			p := g.runLine(t, cmds[0])
			if p != nil {
				p.waitLine(t, `-R \S+: the server listens on`)
			}
			body := httpApp(t, g.targetOf(t, 3000))
			url := fmt.Sprintf("http://127.0.0.1:%d/", g.listenOf(t, 8080))
			retry(t, "GET "+url, func() error { return httpGet(url, body) })
			// The guide's curl on the VPS, which here is this machine.
			if _, err := exec.LookPath("curl"); err != nil {
				t.Log("no curl (Debian package curl): the guide's curl line is not run")
				return
			}
			curl := g.words(t, g.rewrite(t, guideCommands(t, "web-app.md", "web-curl")[0]))
			if curl[0] != "curl" {
				t.Fatalf("the web-curl block runs %q, not curl", curl)
			}
			out, err := exec.Command(curl[0], curl[1:]...).Output()
			if err != nil || string(out) != body {
				t.Errorf("%q: %q, %v; want %q", curl, out, err, body)
			}
		})
	}
}

// TestGuideDatabaseBastion: docs/guides/database-bastion.md, -J on the
// command line and then the guide's Host entry; bastion and db are two
// pinhole servers, the database a stream echo.
func TestGuideDatabaseBastion(t *testing.T) {
	g := newGuideEnv(t, "bastion", "db")
	t.Run("jump", func(t *testing.T) {
		cmds := guideCommands(t, "database-bastion.md", "db-jump")
		p := g.runLine(t, cmds[0])
		targetOn(t, g.targetOf(t, 5432))
		p.waitLine(t, `-L \S+: listening on \S+,`)
		echoThrough(t, fmt.Sprintf("127.0.0.1:%d", g.listenOf(t, 5432)), 1)
		bastionUsed(t, g, 1)
		p.cancel()
		<-p.code
		p.code <- 0 // for start's cleanup
	})
	t.Run("config", func(t *testing.T) {
		clear(g.listen)
		clear(g.target)
		// The test's Host db (HostName, Port, key) comes first, so its
		// HostName wins over the guide's; the guide's ProxyJump and
		// LocalForward apply.
		base, err := os.ReadFile(g.config)
		if err != nil {
			t.Fatal(err)
		}
		var entry strings.Builder
		for _, l := range guideBlock(t, "database-bastion.md", "db-config") {
			entry.WriteString(g.rewrite(t, l) + "\n")
		}
		writeFile(t, g.config, string(base)+entry.String())
		cmds := guideCommands(t, "database-bastion.md", "db-connect")
		p := g.runLine(t, cmds[0])
		targetOn(t, g.targetOf(t, 5432))
		p.waitLine(t, `-L \S+: listening on \S+,`)
		echoThrough(t, fmt.Sprintf("127.0.0.1:%d", g.listenOf(t, 5432)), 2)
		bastionUsed(t, g, 2)
		p.cancel()
		<-p.code
		p.code <- 0
	})
	// OpenSSH's ssh with the same entry: its ProxyJump runs ssh -W
	// through the bastion's pinhole server, -F passed along.
	t.Run("ssh", func(t *testing.T) {
		if _, err := exec.LookPath("ssh"); err != nil {
			t.Skip("no ssh (Debian package openssh-client)")
		}
		g.runLine(t, guideCommands(t, "database-bastion.md", "db-ssh")[0])
		targetOn(t, g.targetOf(t, 5432)) // the config subtest's is gone with it
		retry(t, "ssh -N db's LocalForward", func() error {
			conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", g.listenOf(t, 5432)))
			if err == nil {
				conn.Close()
			}
			return err
		})
		echoThrough(t, fmt.Sprintf("127.0.0.1:%d", g.listenOf(t, 5432)), 7)
		bastionUsed(t, g, 3)
	})
}

// bastionUsed: the bastion's server has let the client in n times, so
// the way to db went through it.
func bastionUsed(t *testing.T, g *guideEnv, n int) {
	t.Helper()
	if got := strings.Count(g.servers["bastion"].stderr.String(), `msg="client connected"`); got != n {
		t.Errorf("the bastion let a client in %d times, want %d: -J was not used", got, n)
	}
}

// TestGuideGameServer: docs/guides/game-server.md's UDP -R; a datagram to
// the server's port comes back from the game's UDP echo. pinhole map is
// not run here: it needs a router (TestMapLab builds one, as root).
func TestGuideGameServer(t *testing.T) {
	g := newGuideEnv(t, "vps")
	cmds := guideCommands(t, "game-server.md", "game-connect")
	p := g.runLine(t, cmds[0])
	pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", g.targetOf(t, 27015)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	p.waitLine(t, `-R \S+/udp: the server listens on`)
	conn, err := net.Dial("udp", fmt.Sprintf("127.0.0.1:%d", g.listenOf(t, 27015)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, 100)
	retry(t, "a datagram through the game's -R/udp", func() error {
		conn.Write([]byte("A2S_INFO"))
		conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, err := conn.Read(buf)
		if err == nil && string(buf[:n]) != "A2S_INFO" {
			err = fmt.Errorf("got %q back", buf[:n])
		}
		return err
	})
}

// TestGuideHomeServer: docs/guides/home-server.md: the file, pinhole up,
// the second tunnel appended and SIGHUP; both tunnels carry data.
func TestGuideHomeServer(t *testing.T) {
	g := newGuideEnv(t, "vps")
	writeBlock := func(marker string, flags int) {
		path := filepath.Join(g.home, strings.TrimPrefix(strings.TrimPrefix(marker, "file "), "append ")[2:])
		var b strings.Builder
		for _, l := range guideBlock(t, "home-server.md", marker) {
			b.WriteString(g.rewrite(t, l) + "\n")
		}
		f, err := os.OpenFile(path, flags|os.O_WRONLY|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString(b.String()); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	writeBlock("file ~/tunnels.toml", os.O_TRUNC)
	targetOn(t, g.targetOf(t, 554))
	up := g.runLine(t, guideCommands(t, "home-server.md", "home-up")[0])
	log := collect(up)
	log.wait(t, up, `camera: -R \S+: the server listens on`, 1)
	echoThrough(t, fmt.Sprintf("127.0.0.1:%d", g.listenOf(t, 8554)), 3)

	writeBlock("append ~/tunnels.toml", os.O_APPEND)
	targetOn(t, g.targetOf(t, 8000))
	g.runLine(t, guideCommands(t, "home-server.md", "home-reload")[0])
	log.wait(t, up, `nas: -R \S+: the server listens on`, 1)
	// The file watcher may have seen the new tunnel first; SIGHUP must
	// still have made a reload of its own.
	retry(t, "a reload on SIGHUP", func() error {
		if !strings.Contains(up.stderr.String(), "why=SIGHUP") {
			return fmt.Errorf("no reload with why=SIGHUP logged")
		}
		return nil
	})
	echoThrough(t, fmt.Sprintf("127.0.0.1:%d", g.listenOf(t, 8080)), 4)
	echoThrough(t, fmt.Sprintf("127.0.0.1:%d", g.listenOf(t, 8554)), 5)
	if n := log.count(`camera: .*(stopp|restart)`); n != 0 {
		t.Errorf("the reload touched the camera tunnel (%d lines)", n)
	}
}

// TestGuideVPSSystemd: docs/guides/vps-systemd.md. systemd is not run
// here: the sudo install and systemctl lines, and the journal, are only
// checked for naming files that exist. What is run: the guide's go build
// line (into a test directory instead of ./pinhole), and that binary with
// the flags of the unit's ExecStart (its --listen :443 made a free
// loopback port, /etc/pinhole/authorized_keys a test file,
// $STATE_DIRECTORY a test directory), reached by pinhole connect -L.
func TestGuideVPSSystemd(t *testing.T) {
	cmds := guideCommands(t, "vps-systemd.md", "vps-install")
	root := filepath.Join("..", "..")
	var unit string
	for _, c := range cmds {
		for _, w := range strings.Fields(c) {
			if strings.HasPrefix(w, "contrib/") || strings.HasPrefix(w, "./cmd/") {
				if _, err := os.Stat(filepath.Join(root, w)); err != nil {
					t.Errorf("the guide names %s: %v", w, err)
				}
				if strings.HasSuffix(w, ".service") {
					unit = w
				}
			}
		}
	}
	if unit == "" {
		t.Fatal("the guide installs no contrib/systemd unit")
	}
	if !strings.HasPrefix(cmds[0], "go build -o pinhole ") {
		t.Fatalf("the guide's first line is %q, not the go build the test runs", cmds[0])
	}
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "pinhole")
	w := strings.Fields(cmds[0])
	w[3] = bin
	build := exec.Command(w[0], w[1:]...)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cmds[0], err, out)
	}

	data, err := os.ReadFile(filepath.Join(root, unit))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^ExecStart=/usr/local/bin/pinhole (.*)$`).FindSubmatch(data)
	if m == nil {
		t.Fatalf("%s has no ExecStart=/usr/local/bin/pinhole line", unit)
	}
	dir := t.TempDir()
	keyPath, pub := writeKey(t, dir, "id_ed25519")
	authKeys := filepath.Join(dir, "authorized_keys")
	writeFile(t, authKeys, string(ssh.MarshalAuthorizedKey(pub)))
	state := filepath.Join(dir, "state")
	os.Mkdir(state, 0o700)
	args := strings.Fields(string(m[1]))
	for i, a := range args {
		switch {
		case i > 0 && args[i-1] == "--listen":
			args[i] = "127.0.0.1:0"
		case a == "/etc/pinhole/authorized_keys":
			args[i] = authKeys
		}
	}
	t.Logf("the unit's ExecStart runs as %s %q", bin, args)
	srv := exec.Command(bin, args...)
	srv.Env = append(os.Environ(), "STATE_DIRECTORY="+state)
	stdout, err := srv.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr := new(syncBuffer)
	srv.Stderr = stderr
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	t.Cleanup(func() {
		srv.Process.Kill() // our own child, by its pid
		srv.Wait()
		if t.Failed() {
			t.Logf("stderr of pinhole server:\n%s", stderr)
		}
	})
	p := &proc{lines: lines, stderr: stderr}
	addr := p.waitLine(t, `listening on (\S+)`)[1]
	if ents, err := os.ReadDir(state); err != nil || len(ents) == 0 {
		t.Errorf("no host key made in $STATE_DIRECTORY: %v %v", ents, err)
	}
	target := streamtest.NewTarget(t)
	_, port, _ := net.SplitHostPort(addr)
	c := start(t, "connect", "-F", "none", "-p", port, "-i", keyPath, "--known-hosts", filepath.Join(dir, "known_hosts"),
		"-L", fmt.Sprintf("0:127.0.0.1:%d", target.Port()), "me@127.0.0.1")
	local := c.waitLine(t, `-L \S+: listening on (\S+),`)[1]
	echoThrough(t, local, 6)
}

// TestGuideBlocksAccounted: every fenced block of docs/guides/ is either
// run by a test ("<!-- test: ... -->" before it) or says why not
// ("<!-- not run: why -->"), so a new command cannot slip in untested
// without saying so.
func TestGuideBlocksAccounted(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "docs", "guides", "*.md"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no guides: %v", err)
	}
	marker := regexp.MustCompile(`^<!-- (test: \S.*|not run: \S.*) -->$`)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(data), "\n")
		open := false
		for i, l := range lines {
			if !strings.HasPrefix(l, "```") {
				continue
			}
			if open = !open; open && (i == 0 || !marker.MatchString(strings.TrimSpace(lines[i-1]))) {
				t.Errorf("%s:%d: a block with neither <!-- test: NAME --> nor <!-- not run: why --> before it", f, i+1)
			}
		}
	}
}

// TestGuideDatabaseStockBastion: the guide says the bastion may be any
// OpenSSH sshd: the same -J line with a stock sshd as bastion. sshd lets
// in only the user running the test, so here (and only here) the guide's
// "me@bastion" is that user at bastion.
func TestGuideDatabaseStockBastion(t *testing.T) {
	sshtest.Need(t, "sshd")
	g := newGuideEnv(t, "db")
	data, err := os.ReadFile(g.identity)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(data)
	if err != nil {
		t.Fatal(err)
	}
	pub := ssh.MarshalAuthorizedKey(signer.PublicKey())
	d := sshtest.StartSSHD(t, sshtest.SSHDConfig{AuthorizedKeys: string(pub)})
	cfg, err := os.ReadFile(g.config)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, g.config, string(cfg)+fmt.Sprintf("Host bastion\n  HostName 127.0.0.1\n  Port %d\n  IdentityFile %s\n  IdentitiesOnly yes\n  UserKnownHostsFile %s\n  StrictHostKeyChecking accept-new\n",
		d.Port, g.identity, filepath.Join(g.home, ".ssh", "known_hosts")))
	line := guideCommands(t, "database-bastion.md", "db-jump")[0]
	if !strings.Contains(line, "-J me@bastion ") {
		t.Fatalf("the guide's line %q has no -J me@bastion", line)
	}
	p := g.runLine(t, strings.Replace(line, "-J me@bastion ", "-J "+d.User+"@bastion ", 1))
	targetOn(t, g.targetOf(t, 5432))
	p.waitLine(t, `-L \S+: listening on \S+,`)
	echoThrough(t, fmt.Sprintf("127.0.0.1:%d", g.listenOf(t, 5432)), 8)
	if log, err := os.ReadFile(d.LogFile); err != nil || !strings.Contains(string(log), "Accepted publickey") {
		t.Errorf("sshd's log shows no login: the jump did not go through it: %v\n%s", err, log)
	}
}
