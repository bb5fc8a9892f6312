// Package webtest runs the web middleboxes that stand between pinhole and
// its server in the transport tests: squid as an office's HTTP CONNECT
// proxy (StartSquid) and nginx as a TLS-terminating reverse proxy that
// passes WebSocket upgrades on (StartNginx), with throwaway certificates
// made in Go (Cert). It is an importable test double, like internal/sshtest:
// a test starts the real program with a config it writes into its own
// directory, talks to it, and reads its logs.
//
// Either program runs on loopback in the test's own network namespace, or,
// with Namespace set, inside a namespace of a natlab lab (the internet host
// of natlab.NewFirewall, say), so that a client on the lab's LAN host
// reaches it only through the lab's firewall:
//
//	lab := natlab.NewFirewall(t, natlab.FirewallConfig{AllowTCP: []uint16{3128}})
//	proxy := webtest.StartSquid(t, webtest.SquidConfig{
//		Listen:            netip.MustParseAddrPort("11.22.33.2:3128"),
//		AllowConnectPorts: []uint16{443},
//		Namespace:         lab.Internet,
//	})
//
// Processes: each program runs in the foreground as one process (squid -N;
// nginx with master_process off and daemon off), started with
// Pdeathsig, so the kernel kills it if the test process dies, and killed by
// its process id when the test ends. As root, squid is started as Debian's
// proxy user (squid refuses to run as root, and a program that changes its
// own user loses Pdeathsig); nginx stays root (user root), in one process.
// A namespace is entered by starting the program from an OS thread in that
// namespace (natlab.InNamespace), not with `ip netns exec`, which would
// need root in the child.
//
// Ports: both programs bind their own ports from their config, so there is
// no listener to hand them. With a port of 0 in Listen, webtest picks a
// random port in 20000-32767 (below Linux's ephemeral range, where the
// kernel picks source ports), starts the program on it, and when the
// program's log says the port is taken ("Address already in use"), kills it
// and tries another, 10 tries at most; it never closes a listener to hand
// its port on. A program counts as started once its log says it listens
// and a TCP connect to it succeeds.
//
// Every file a program reads or writes (config, pid file, logs, nginx's
// temporary files) is in the test's directory. A test that needs a program
// that is not installed skips with a line naming the Debian package
// (Need); scripts/test installs squid and nginx.
package webtest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/natlab"
)

// debianPackage names the Debian package that provides program, "" if
// webtest does not know it.
func debianPackage(program string) string {
	switch filepath.Base(program) {
	case "squid", "nginx", "curl", "socat", "openssl", "chromium":
		return filepath.Base(program)
	case "pebble", "pebble-challtestsrv":
		return "pebble"
	case "python3":
		return "python3 (and python3-websockets, python3-socks)"
	}
	return ""
}

// Need skips the test unless every one of programs is installed: found in
// PATH, /usr/sbin or /sbin (where Debian puts squid and nginx), or, for an
// absolute path, there and executable. The skip line names the program and
// its Debian package.
func Need(t testing.TB, programs ...string) {
	t.Helper()
	if msg := missing(programs); msg != "" {
		t.Skip(msg)
	}
}

func missing(programs []string) string {
	for _, p := range programs {
		if _, err := lookPath(p); err == nil {
			continue
		}
		install := "install it"
		if pkg := debianPackage(p); pkg != "" {
			install = "install " + pkg
		}
		return fmt.Sprintf("webtest: skipping: %s not found (%s, or run scripts/test which installs it)", p, install)
	}
	return ""
}

func lookPath(p string) (string, error) {
	if filepath.IsAbs(p) {
		fi, err := os.Stat(p)
		if err == nil && (fi.IsDir() || fi.Mode()&0o111 == 0) {
			err = fmt.Errorf("webtest: %s is not executable", p)
		}
		return p, err
	}
	return natlab.LookPath(p)
}

// errPortTaken is what run returns when the program's log says its port
// is in use: try another.
var errPortTaken = errors.New("webtest: address already in use")

// tries is how many ports webtest tries for a program before it gives up.
const tries = 10

// startTimeout bounds the start of a program on one port.
const startTimeout = 15 * time.Second

// randomPort returns a port in 20000-32767.
func randomPort() uint16 { return uint16(20000 + rand.IntN(32768-20000)) }

// startOnSomePort calls try with listen, or, when listen's port is 0,
// with random ports on listen's address until one is not taken (at most
// tries of them). It returns try's last error.
func startOnSomePort(listen netip.AddrPort, try func(netip.AddrPort) error) error {
	fixed := listen.Port() != 0
	var last error
	for range tries {
		addr := listen
		if !fixed {
			addr = netip.AddrPortFrom(listen.Addr(), randomPort())
		}
		if last = try(addr); last == nil || !errors.Is(last, errPortTaken) || fixed {
			return last
		}
	}
	return last
}

// proc is a program webtest started.
type proc struct {
	cmd      *exec.Cmd
	done     chan struct{} // closed once it has exited and been reaped
	err      error         // from Wait, set before done is closed
	stopOnce sync.Once
}

// launch starts cmd, in namespace ns unless ns is "". cmd's Stdout and
// Stderr must be files or nil, so that Start starts no goroutine.
func launch(ns string, cmd *exec.Cmd) (*proc, error) {
	var err error
	if ns == "" {
		err = cmd.Start()
	} else {
		// The child inherits the network namespace of the thread that
		// forks it.
		err = natlab.InNamespace(ns, cmd.Start)
	}
	if err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// stop kills the program by its pid and waits for it; idempotent.
func (p *proc) stop() {
	p.stopOnce.Do(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
}

// waitStarted waits until the log file says the program listens (ready
// matches a line), and a connect to addr from namespace ns succeeds. It
// returns errPortTaken when the log says the port is taken, and another
// error when the program exits, or ctx ends, first.
func (p *proc) waitStarted(ctx context.Context, log string, ready *regexp.Regexp, ns string, addr netip.AddrPort) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	listening := false
	for {
		text := readFile(log)
		switch {
		case portTakenIn(text):
			return errPortTaken
		case !listening && ready.MatchString(text):
			listening = true
		}
		if listening {
			if c, err := dial(ctx, ns, addr); err == nil {
				c.Close()
				return nil
			}
		}
		select {
		case <-p.done:
			// The log is whole now: the program may have written its
			// bind failure since the read above.
			if portTakenIn(readFile(log)) {
				return errPortTaken
			}
			return fmt.Errorf("webtest: %s exited (%v) before it listened", filepath.Base(p.cmd.Path), p.err)
		case <-ctx.Done():
			return fmt.Errorf("webtest: waiting for %s to listen on %s: %w", filepath.Base(p.cmd.Path), addr, ctx.Err())
		case <-tick.C:
		}
	}
}

// portTakenIn reports whether a program's log says its port is taken: C
// programs' "Address already in use", Go's "address already in use".
func portTakenIn(log string) bool {
	return strings.Contains(strings.ToLower(log), "address already in use")
}

// dial connects to addr from namespace ns ("" for the test's own) within
// a second.
func dial(ctx context.Context, ns string, addr netip.AddrPort) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if ns == "" {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr.String())
	}
	return natlab.Dial(ctx, ns, "tcp", addr.String())
}

// readFile returns the file's contents, "" if it cannot be read.
func readFile(name string) string {
	b, _ := os.ReadFile(name)
	return string(b)
}

// waitLine waits until a line of the file matches re, polling every 50 ms,
// and returns that line; it gives up when ctx ends.
func waitLine(ctx context.Context, file, re string) (string, error) {
	rx, err := regexp.Compile(re)
	if err != nil {
		return "", fmt.Errorf("webtest: %w", err)
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		for line := range strings.Lines(readFile(file)) {
			if strings.HasSuffix(line, "\n") && rx.MatchString(line) {
				return strings.TrimSuffix(line, "\n"), nil
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("webtest: no line matching %q in %s: %w; it holds:\n%s", re, file, ctx.Err(), lastLines(readFile(file), 20))
		case <-tick.C:
		}
	}
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	if len(lines) > n {
		lines = append([]string{"...\n"}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "")
}
