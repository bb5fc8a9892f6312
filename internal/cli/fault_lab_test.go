package cli

import (
	"bufio"
	"context"
	cryptorand "crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/faultlab"
	"github.com/pinhole-dev/pinhole/internal/natlab"
	"github.com/pinhole-dev/pinhole/internal/sshtest"
	"github.com/pinhole-dev/pinhole/internal/streamtest"
)

// The fault tests run pinhole server in the fault lab's server namespace
// and pinhole connect in its client namespace, with -L, -R, -D and a /udp
// forward at once and keepalives every second on both ends, break the
// path or the server in one way each, and check what issue 12 asks of
// pinhole:
//
//   - every forward works again within recoverWithin of the fault's end;
//   - a stream open through the fault either still carries data afterwards
//     or has ended with a close or a reset: it never hangs;
//   - new streams after the recovery carry checksummed data exactly;
//   - the fds and goroutines of both processes come back to their level
//     before the fault.
//
// Each scenario has a lab of its own and they run in parallel. They need
// root (faultlab skips without it); CI runs them.

const (
	recoverWithin = 10 * time.Second // the requirement
	faultLength   = 5 * time.Second  // longer than 3 keepalives of 1 s: the client must notice
	heldDeadline  = 5 * time.Second  // for a held stream to answer or end once all forwards work
	settleWithin  = 20 * time.Second // for fds and goroutines to come back
	fdSlack       = 2
	goroutineRoom = 5
)

// The rig's fixed ports: each lab has namespaces of its own.
const (
	sshPort      = 2222
	serverDebug  = 6060 // 127.0.0.1 in the server namespace
	clientDebug  = 6061 // 127.0.0.1 in the client namespace
	srvTarget    = 7000 // streamtest target, server side: behind -L 8001 and -D
	srvUDPEcho   = 7001 // behind -L 8003/udp
	srvEcho      = 7002 // behind -L 8004 and -D: held streams
	cliTarget    = 7100 // streamtest target, client side: behind -R 9001
	cliEcho      = 7102 // behind -R 9002: a held stream
	fwdL         = 8001
	fwdD         = 8002
	fwdUDP       = 8003
	fwdLEcho     = 8004
	fwdR         = 9001
	fwdREcho     = 9002
	udpIdleFlag  = "2s"
	keepaliveArg = "1s"
)

// TestFaultLab runs every scenario, each in its own lab, in parallel.
func TestFaultLab(t *testing.T) {
	faultlab.Need(t)
	pinhole := buildPinhole(t)
	ctx := context.Background()
	scenarios := []struct {
		name string
		// fault breaks something and mends it, returning when the fault
		// has ended (the clock for recoverWithin starts then).
		fault func(t *testing.T, r *rig)
		// survive: held streams must come through the fault alive.
		survive bool
	}{
		{"delay loss reorder", func(t *testing.T, r *rig) {
			r.lab.Impair(faultlab.Impairment{Delay: 100 * time.Millisecond, Loss: 5, Reorder: 10})
			// A stream through the impairment crosses exactly, or ends
			// with an error if the tunnel dropped (its keepalives of
			// 1 s x 3 can time out behind the bulk data queued on a
			// path this slow); it never hangs.
			began := time.Now()
			switch err := r.exchangeL(t, 256<<10, 30*time.Second); {
			case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
				t.Errorf("-L during delay, loss and reordering: hung for %v: %v", time.Since(began).Round(time.Millisecond), err)
			case err != nil:
				t.Logf("-L during delay, loss and reordering: cut after %v: %v", time.Since(began).Round(time.Millisecond), err)
			default:
				t.Logf("-L during delay, loss and reordering: 256 KiB each way crossed exactly in %v", time.Since(began).Round(time.Millisecond))
			}
			time.Sleep(time.Until(r.faultAt.Add(faultLength)))
			r.lab.Impair(faultlab.Impairment{})
		}, false},
		{"link down", func(t *testing.T, r *rig) {
			must(t, r.lab.LinkDown(ctx))
			time.Sleep(faultLength)
			must(t, r.lab.LinkUp(ctx))
		}, false},
		{"blackhole", func(t *testing.T, r *rig) {
			must(t, r.lab.Blackhole(ctx, true))
			time.Sleep(faultLength)
			must(t, r.lab.Blackhole(ctx, false))
		}, false},
		{"client moves", func(t *testing.T, r *rig) {
			must(t, r.lab.MoveClient(ctx))
		}, false},
		{"server killed", func(t *testing.T, r *rig) {
			r.killServer(t)
			time.Sleep(2 * time.Second)
			r.startServer(t)
		}, false},
		{"server stopped", func(t *testing.T, r *rig) {
			must(t, r.server.Signal(syscall.SIGSTOP))
			time.Sleep(faultLength)
			must(t, r.server.Signal(syscall.SIGCONT))
		}, false},
		{"port taken while down", func(t *testing.T, r *rig) {
			r.killServer(t)
			squat := r.squat(t)
			// A server started now cannot listen, and says so.
			p := r.lab.Run.Start(t, r.lab.Server, r.pinhole, r.serverArgs()...)
			select {
			case <-p.Done():
				if p.ExitCode() == 0 {
					t.Errorf("pinhole server exited 0 with its port taken")
				}
			case <-time.After(15 * time.Second):
				t.Errorf("pinhole server neither listened nor exited within 15 s with its port taken")
				p.Stop()
			}
			time.Sleep(time.Until(r.faultAt.Add(faultLength)))
			squat()
			r.startServer(t)
		}, false},
		{"target stopped", func(t *testing.T, r *rig) {
			for _, s := range r.targets {
				s.stop()
			}
			// While the targets are down, a new stream through each
			// forward ends at once with a close or reset, never a hang.
			for _, f := range r.forwards() {
				if f.name == "-L /udp" {
					continue // a datagram to nobody is just lost
				}
				began := time.Now()
				err := f.probe(t, r, 64<<10)
				if err == nil {
					t.Errorf("%s: worked with its target stopped", f.name)
				} else if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
					t.Errorf("%s with its target stopped: hung for %v (%v), want a close or reset", f.name, time.Since(began).Round(time.Millisecond), err)
				}
			}
			time.Sleep(time.Until(r.faultAt.Add(faultLength)))
			for _, s := range r.targets {
				s.start(t)
			}
		}, true},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			began := time.Now()
			r := newRig(t, pinhole)
			r.waitAll(t, time.Now().Add(30*time.Second), "at start")
			if t.Failed() {
				t.FailNow()
			}
			base := r.settle(t)
			held := r.openHeld(t)
			r.faultAt = time.Now()
			sc.fault(t, r)
			ended := time.Now()
			took := r.waitAll(t, ended.Add(recoverWithin), "after the fault")
			t.Logf("fault %v; every forward works again after %v", ended.Sub(r.faultAt).Round(time.Millisecond), took)
			r.checkHeld(t, held, sc.survive)
			for _, f := range r.forwards() {
				if err := f.probe(t, r, 1<<20); err != nil {
					t.Errorf("%s after recovery, 1 MiB each way: %v", f.name, err)
				}
			}
			r.checkLevels(t, base)
			t.Logf("scenario took %v", time.Since(began).Round(time.Millisecond))
		})
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// rig is one lab with pinhole server, pinhole connect and the services
// behind their forwards.
type rig struct {
	lab               *faultlab.Lab
	pinhole           string
	dir               string
	hostKey, authKeys string
	server, client    *natlab.Proc
	targets           []*service
	faultAt           time.Time
}

func newRig(t *testing.T, pinhole string) *rig {
	lab := faultlab.New(t)
	r := &rig{lab: lab, pinhole: pinhole, dir: t.TempDir()}
	client := sshtest.NewKey(t, r.dir, "client")
	host := sshtest.NewKey(t, r.dir, "host")
	r.hostKey = host.PrivateFile
	r.authKeys = filepath.Join(r.dir, "authorized_keys")
	must(t, os.WriteFile(r.authKeys, []byte(client.AuthorizedLine), 0o600))
	known := filepath.Join(r.dir, "known_hosts")
	must(t, os.WriteFile(known, []byte(fmt.Sprintf("[%s]:%d %s", faultlab.ServerAddr, sshPort, host.AuthorizedLine)), 0o600))

	r.targets = []*service{
		{ns: lab.Server, port: srvTarget, kind: "target"},
		{ns: lab.Server, port: srvUDPEcho, kind: "udp"},
		{ns: lab.Client, port: cliTarget, kind: "target"},
	}
	for _, s := range r.targets {
		s.start(t)
	}
	for _, s := range []*service{{ns: lab.Server, port: srvEcho, kind: "echo"}, {ns: lab.Client, port: cliEcho, kind: "echo"}} {
		s.start(t)
	}
	r.startServer(t)
	lp := func(p int) string { return "127.0.0.1:" + strconv.Itoa(p) }
	r.client = lab.Run.Start(t, lab.Client, pinhole, "connect",
		"-p", strconv.Itoa(sshPort), "-i", client.PrivateFile,
		"--known-hosts", known, "--host-key-check", "yes",
		"--keepalive", keepaliveArg, "--keepalive-count", "3", "--udp-idle", udpIdleFlag,
		"--debug-addr", lp(clientDebug),
		"-L", lp(fwdL)+":"+lp(srvTarget),
		"-L", lp(fwdLEcho)+":"+lp(srvEcho),
		"-L", lp(fwdUDP)+":"+lp(srvUDPEcho)+"/udp",
		"-D", lp(fwdD),
		"-R", lp(fwdR)+":"+lp(cliTarget),
		"-R", lp(fwdREcho)+":"+lp(cliEcho),
		"pinhole@"+faultlab.ServerAddr.String())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := r.client.WaitStdout(ctx, `^pinhole connect: connected to `); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *rig) serverArgs() []string {
	return []string{"server", "--listen", netip.AddrPortFrom(faultlab.ServerAddr, sshPort).String(),
		"--host-key", r.hostKey, "--authorized-keys", r.authKeys,
		"--keepalive", keepaliveArg, "--udp-idle", udpIdleFlag,
		"--debug-addr", "127.0.0.1:" + strconv.Itoa(serverDebug)}
}

// startServer starts pinhole server and waits until it listens.
func (r *rig) startServer(t *testing.T) {
	t.Helper()
	r.server = r.lab.Run.Start(t, r.lab.Server, r.pinhole, r.serverArgs()...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := r.server.WaitStdout(ctx, `^pinhole server: listening on `); err != nil {
		t.Fatal(err)
	}
}

// killServer ends pinhole server with SIGKILL, by its pid, and waits for it.
func (r *rig) killServer(t *testing.T) {
	t.Helper()
	must(t, r.server.Signal(syscall.SIGKILL))
	select {
	case <-r.server.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("pinhole server still runs 10 s after SIGKILL")
	}
}

// squat has another program take the server's address while it is down:
// it accepts every connection and answers as a web server would. The
// function it returns ends the squatter.
func (r *rig) squat(t *testing.T) func() {
	t.Helper()
	ln, err := natlab.Listen(r.lab.Server, "tcp4", netip.AddrPortFrom(faultlab.ServerAddr, sshPort).String())
	if err != nil {
		t.Fatalf("taking the server's port: %v", err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.SetDeadline(time.Now().Add(2 * time.Second))
			io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
			c.Close()
		}
	})
	var once sync.Once
	stop := func() { once.Do(func() { ln.Close(); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

// service is one of the programs behind a forward, which a scenario can
// stop and start again on the same port.
type service struct {
	ns   string
	port int
	kind string // "target", "echo" or "udp"
	stop func()
}

func (s *service) start(t *testing.T) {
	t.Helper()
	addr := "127.0.0.1:" + strconv.Itoa(s.port)
	if s.kind == "udp" {
		pc, err := natlab.ListenUDP(s.ns, netip.MustParseAddrPort(addr))
		if err != nil {
			t.Fatal(err)
		}
		streamtest.NewUDPEchoConn(t, pc)
		s.stop = func() { pc.Close() }
		return
	}
	ln, err := natlab.Listen(s.ns, "tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	if s.kind == "echo" {
		e := streamtest.NewEchoListener(t, ln)
		s.stop = func() { e.Close() }
		return
	}
	tg := streamtest.NewTargetListener(t, ln)
	s.stop = func() { tg.Close() }
}

// forward is one of the client's forwards and how to check it.
type forward struct {
	name  string
	probe func(t *testing.T, r *rig, size int64) error
}

func (r *rig) forwards() []forward {
	return []forward{
		{"-L", func(t *testing.T, r *rig, size int64) error { return r.exchangeL(t, size, 10*time.Second) }},
		{"-D", func(t *testing.T, r *rig, size int64) error {
			return r.exchange(t, r.lab.Client, fwdD, srvTarget, size, 10*time.Second)
		}},
		{"-R", func(t *testing.T, r *rig, size int64) error {
			return r.exchange(t, r.lab.Server, fwdR, 0, size, 10*time.Second)
		}},
		{"-L /udp", func(t *testing.T, r *rig, size int64) error { return r.udpEcho(t) }},
	}
}

func (r *rig) exchangeL(t *testing.T, size int64, limit time.Duration) error {
	return r.exchange(t, r.lab.Client, fwdL, 0, size, limit)
}

// exchange dials port in namespace ns (through SOCKS5 to socksTo when that
// is not 0) and runs a streamtest exchange of size bytes each way, all
// within limit.
func (r *rig) exchange(t *testing.T, ns string, port, socksTo int, size int64, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	conn, err := r.dial(ctx, ns, port, socksTo)
	if err != nil {
		return err
	}
	defer conn.Close()
	return streamtest.Exchange(ctx, conn, rand.Uint64(), size, size)
}

// dial connects to 127.0.0.1:port in ns, through a SOCKS5 CONNECT to
// 127.0.0.1:socksTo when that is not 0.
func (r *rig) dial(ctx context.Context, ns string, port, socksTo int) (net.Conn, error) {
	conn, err := natlab.Dial(ctx, ns, "tcp4", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil || socksTo == 0 {
		return conn, err
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	req := []byte{5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, byte(socksTo >> 8), byte(socksTo)}
	if _, err := conn.Write(req); err != nil {
		conn.Close()
		return nil, fmt.Errorf("socks5: %w", err)
	}
	reply := make([]byte, 2+10)
	if _, err := io.ReadFull(conn, reply); err != nil {
		conn.Close()
		return nil, fmt.Errorf("socks5 reply: %w", err)
	}
	if reply[0] != 5 || reply[1] != 0 || reply[2] != 5 || reply[3] != 0 {
		conn.Close()
		return nil, fmt.Errorf("socks5: refused: % x", reply)
	}
	return conn, nil
}

// udpEcho sends a datagram through -L /udp from a new socket and waits for
// its echo: 3 tries, 500 ms each.
func (r *rig) udpEcho(t *testing.T) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := natlab.Dial(ctx, r.lab.Client, "udp4", "127.0.0.1:"+strconv.Itoa(fwdUDP))
	if err != nil {
		return err
	}
	defer conn.Close()
	msg, buf := make([]byte, 200), make([]byte, 2048)
	cryptorand.Read(msg)
	var last error
	for range 3 {
		if _, err := conn.Write(msg); err != nil {
			last = err
			time.Sleep(500 * time.Millisecond)
			continue
		}
		conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, err := conn.Read(buf)
		if err == nil && string(buf[:n]) == string(msg) {
			return nil
		}
		last = err
		if err == nil {
			last = errors.New("the echo differs")
		}
	}
	return fmt.Errorf("no echo through -L /udp in 3 tries: %w", last)
}

// waitAll tries every forward over and over until each has worked once or
// deadline passes, failing the test for those that did not; it returns how
// long the slowest took.
func (r *rig) waitAll(t *testing.T, deadline time.Time, when string) time.Duration {
	t.Helper()
	began := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var slowest time.Duration
	for _, f := range r.forwards() {
		wg.Go(func() {
			var last error
			for tries := 0; tries < 1000 && time.Now().Before(deadline); tries++ {
				if last = f.probe(t, r, 64<<10); last == nil {
					mu.Lock()
					slowest = max(slowest, time.Since(began))
					mu.Unlock()
					return
				}
				time.Sleep(200 * time.Millisecond)
			}
			t.Errorf("%s: %s, not working within %v: %v", when, f.name, deadline.Sub(began).Round(time.Millisecond), last)
		})
	}
	wg.Wait()
	return slowest.Round(time.Millisecond)
}

// heldStream is a connection through an echo forward, open across the
// fault.
type heldStream struct {
	name string
	conn net.Conn
}

func (r *rig) openHeld(t *testing.T) []heldStream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var held []heldStream
	for _, h := range []struct {
		name          string
		ns            string
		port, socksTo int
	}{
		{"-L", r.lab.Client, fwdLEcho, 0},
		{"-D", r.lab.Client, fwdD, srvEcho},
		{"-R", r.lab.Server, fwdREcho, 0},
	} {
		conn, err := r.dial(ctx, h.ns, h.port, h.socksTo)
		if err != nil {
			t.Fatalf("held stream through %s: %v", h.name, err)
		}
		t.Cleanup(func() { conn.Close() })
		if err := echoOnce(conn, time.Now().Add(5*time.Second)); err != nil {
			t.Fatalf("held stream through %s, before the fault: %v", h.name, err)
		}
		held = append(held, heldStream{h.name, conn})
	}
	return held
}

// checkHeld: each held stream either still echoes or has ended with a
// close or a reset, within heldDeadline; none hangs. With survive, each
// must still echo. The streams are closed afterwards.
func (r *rig) checkHeld(t *testing.T, held []heldStream, survive bool) {
	t.Helper()
	var wg sync.WaitGroup
	for _, h := range held {
		wg.Go(func() {
			defer h.conn.Close()
			began := time.Now()
			err := echoOnce(h.conn, began.Add(heldDeadline))
			switch {
			case err == nil:
				t.Logf("held stream through %s: survived", h.name)
			case isTimeout(err):
				t.Errorf("held stream through %s: hung, neither answered nor ended within %v of every forward working again", h.name, heldDeadline)
			case survive:
				t.Errorf("held stream through %s: ended (%v), want it to survive this fault", h.name, err)
			default:
				t.Logf("held stream through %s: ended after %v: %v", h.name, time.Since(began).Round(time.Millisecond), err)
			}
		})
	}
	wg.Wait()
}

// echoOnce writes 64 random bytes and reads them back, by deadline.
func echoOnce(c net.Conn, deadline time.Time) error {
	c.SetDeadline(deadline)
	defer c.SetDeadline(time.Time{})
	msg, got := make([]byte, 64), make([]byte, 64)
	cryptorand.Read(msg)
	if _, err := c.Write(msg); err != nil {
		return err
	}
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if string(got) != string(msg) {
		return errors.New("the echo differs")
	}
	return nil
}

// levels are the fds and goroutines of both pinhole processes.
type levels struct {
	serverFDs, serverG, clientFDs, clientG int
}

func (l levels) String() string {
	return fmt.Sprintf("server %d fds, %d goroutines; client %d fds, %d goroutines", l.serverFDs, l.serverG, l.clientFDs, l.clientG)
}

func (r *rig) levels() (levels, error) {
	var l levels
	var err error
	if l.serverFDs, err = countFDs(r.server.Pid()); err != nil {
		return l, err
	}
	if l.clientFDs, err = countFDs(r.client.Pid()); err != nil {
		return l, err
	}
	if l.serverG, err = goroutines(r.lab.Server, serverDebug); err != nil {
		return l, err
	}
	if l.clientG, err = goroutines(r.lab.Client, clientDebug); err != nil {
		return l, err
	}
	return l, nil
}

// settle reads the levels every 500 ms until three readings in a row agree
// (UDP flows ending, streams finishing), at most 10 s, and returns the last.
func (r *rig) settle(t *testing.T) levels {
	t.Helper()
	var last levels
	same := 0
	for tries := 0; tries < 20; tries++ {
		l, err := r.levels()
		if err != nil {
			t.Fatal(err)
		}
		if l == last {
			same++
		} else {
			same = 0
		}
		last = l
		if same == 2 {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("before the fault: %v", last)
	return last
}

// checkLevels: within settleWithin the fds of each process are back within
// fdSlack of base and its goroutines within goroutineRoom.
func (r *rig) checkLevels(t *testing.T, base levels) {
	t.Helper()
	deadline := time.Now().Add(settleWithin)
	var l levels
	var err error
	for tries := 0; tries < 100; tries++ {
		l, err = r.levels()
		if err == nil && l.serverFDs <= base.serverFDs+fdSlack && l.clientFDs <= base.clientFDs+fdSlack &&
			l.serverG <= base.serverG+goroutineRoom && l.clientG <= base.clientG+goroutineRoom {
			t.Logf("after the fault: %v", l)
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if err != nil {
		t.Errorf("reading fds and goroutines: %v", err)
		return
	}
	t.Errorf("fds and goroutines did not come back within %v:\nbefore: %v\nafter:  %v", settleWithin, base, l)
	if g, err := goroutineDump(r.lab.Client, clientDebug); err == nil && l.clientG > base.clientG+goroutineRoom {
		t.Logf("the client's goroutines:\n%s", lastLines(g, 150))
	}
	if g, err := goroutineDump(r.lab.Server, serverDebug); err == nil && l.serverG > base.serverG+goroutineRoom {
		t.Logf("the server's goroutines:\n%s", lastLines(g, 150))
	}
}

func countFDs(pid int) (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(ents), err
}

var goroutineTotal = regexp.MustCompile(`(?m)^goroutine profile: total (\d+)$`)

// goroutines reads the goroutine count of the pinhole process whose
// --debug-addr is 127.0.0.1:port in ns.
func goroutines(ns string, port int) (int, error) {
	body, err := goroutineDump(ns, port)
	if err != nil {
		return 0, err
	}
	m := goroutineTotal.FindStringSubmatch(body)
	if m == nil {
		return 0, fmt.Errorf("no goroutine total in the profile:\n%.200s", body)
	}
	return strconv.Atoi(m[1])
}

func goroutineDump(ns string, port int) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := natlab.Dial(ctx, ns, "tcp4", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	req, _ := http.NewRequest("GET", "http://127.0.0.1/debug/pprof/goroutine?debug=1", nil)
	req.Close = true
	if err := req.Write(conn); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func lastLines(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "")
}
