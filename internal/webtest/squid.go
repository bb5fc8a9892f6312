package webtest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

// SquidConfig is what a test chooses about its squid; the zero value is a
// proxy on 127.0.0.1 and a port webtest picks that allows CONNECT to port
// 443 only.
type SquidConfig struct {
	// Listen is where squid listens (http_port). The zero value means
	// 127.0.0.1; a port of 0 means one webtest picks (see the package
	// comment). In a Namespace, give an address of that namespace, such
	// as natlab.InternetAddr.
	Listen netip.AddrPort

	// AllowConnectPorts lists the ports CONNECT may reach; squid answers
	// CONNECT to any other with 403 Forbidden. Empty means {443}, squid's
	// own default. On loopback any port will do: a test's Go listener on
	// 127.0.0.1:0 gets one of its own.
	AllowConnectPorts []uint16

	// Namespace is the network namespace (a natlab lab's LAN, Router or
	// Internet) to run squid in; "" means the test's own.
	Namespace string

	// Extra holds more squid.conf lines, e.g. an acl and an
	// "http_access deny ..." rule. They come before webtest's http_access
	// lines, so squid, which takes the first http_access rule that
	// matches, obeys them first.
	Extra []string
}

// Squid is a running squid. Its fields are read-only.
type Squid struct {
	Addr      netip.AddrPort // where it listens
	Namespace string         // where it runs, "" for the test's own namespace
	Pid       int

	Dir        string // the test's squid directory, mode 0755
	ConfigFile string
	// Squid's logs, in Dir's subfolder run (mode 0777, for the proxy
	// user). access.log has a line for each request, and for a CONNECT
	// once its tunnel has closed: "... TCP_TUNNEL/200 ... CONNECT
	// 127.0.0.1:443 ..." or, for a port not allowed, "TCP_DENIED/403".
	AccessLogFile, CacheLogFile string

	p       *proc
	path    string // squid's
	listen  netip.AddrPort
	ports   []uint16
	extra   []string
	as      string // the user to run squid as, "" for ours
	service string // squid -n: names its shared memory
}

// StartSquid writes a squid.conf for cfg, starts
// `squid -n NAME -N -f CONF` (NAME: see servicePrefix), waits until it
// accepts connections, and kills it when the test ends, writing the end of
// its cache.log to the test's log if the test failed. The
// config: http_port cfg.Listen; CONNECT denied to every port but
// cfg.AllowConnectPorts; every other request from anywhere allowed (squid
// listens on cfg.Listen only); no caching; DNS only to 127.0.0.1 (tests
// give addresses, not names); no pinger; shutdown_lifetime 1 seconds;
// pid file and logs in the test's directory. As root, squid runs as the
// proxy user (see the package comment).
//
// A CONNECT tunnel through squid does not carry a TCP half-close: when the
// client shut down its writing half (squid 5.7, seen in TestSquid's first
// version with streamtest.Exchange), squid closed the whole tunnel before
// the server's last bytes, so a client must not half-close and then wait
// for the rest of a reply.
//
// It skips the test when squid is not installed, and fails it when squid
// does not start.
func StartSquid(t testing.TB, cfg SquidConfig) *Squid {
	t.Helper()
	s := newSquid(t, cfg)
	last := startOnSomePort(s.listen, s.tryPort)
	if last == nil {
		return s
	}
	t.Fatalf("webtest: squid did not start: %v; its cache.log:\n%s", last, lastLines(s.CacheLog(), 40))
	return nil
}

// newSquid makes the directories of a squid for cfg, and kills the squid
// and deletes them when the test ends.
func newSquid(t testing.TB, cfg SquidConfig) *Squid {
	t.Helper()
	Need(t, "squid")
	path, _ := lookPath("squid")
	s := &Squid{Namespace: cfg.Namespace, path: path, listen: cfg.Listen, ports: cfg.AllowConnectPorts, extra: cfg.Extra}
	if !s.listen.Addr().IsValid() {
		s.listen = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), s.listen.Port())
	}
	if len(s.ports) == 0 {
		s.ports = []uint16{443}
	}
	if os.Geteuid() == 0 {
		s.as = "proxy"
	}
	deleteStaleShm()
	s.service = fmt.Sprintf("%s%dx%d", servicePrefix, os.Getpid(), squidCounter.Add(1))
	// Not t.TempDir: its parent is mode 0700, closed to the proxy user.
	dir, err := os.MkdirTemp("", "webtest-squid-")
	if err != nil {
		t.Fatalf("webtest: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) }) // after the kill below: cleanups run last-in first-out
	run := filepath.Join(dir, "run")
	if err := errors.Join(os.Chmod(dir, 0o755), os.Mkdir(run, 0o777), os.Chmod(run, 0o777)); err != nil {
		t.Fatalf("webtest: %v", err)
	}
	s.Dir, s.ConfigFile = dir, filepath.Join(dir, "squid.conf")
	s.AccessLogFile, s.CacheLogFile = filepath.Join(run, "access.log"), filepath.Join(run, "cache.log")
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("webtest: squid's cache.log (%s):\n%s", s.CacheLogFile, lastLines(s.CacheLog(), 40))
		}
	})
	return s
}

// tryPort writes the config for squid on addr, runs squid, and waits until
// it accepts connections; if it does not, squid has been stopped, and the
// error is errPortTaken when addr was in use.
func (s *Squid) tryPort(addr netip.AddrPort) error {
	run := filepath.Join(s.Dir, "run")
	if err := os.WriteFile(s.ConfigFile, []byte(squidConf(addr, s.ports, s.extra, run)), 0o644); err != nil {
		return err
	}
	// A fresh log each try, so that the one kept is about the squid that
	// runs.
	os.Remove(s.CacheLogFile)
	os.Remove(s.AccessLogFile)
	stderr, err := os.Create(filepath.Join(s.Dir, "squid.stderr"))
	if err != nil {
		return err
	}
	defer stderr.Close()
	cmd := exec.Command(s.path, "-n", s.service, "-N", "-f", s.ConfigFile)
	cmd.Dir = run
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if cmd.SysProcAttr, err = sysProcAttr(s.as, addr.Port() < 1024); err != nil {
		return fmt.Errorf("webtest: squid's user: %w", err)
	}
	p, err := launch(s.Namespace, cmd)
	if err != nil {
		return fmt.Errorf("webtest: starting squid: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	ready := regexp.MustCompile(`Accepting HTTP Socket connections at .* local=` + regexp.QuoteMeta(addr.String()) + ` `)
	if err := p.waitStarted(ctx, s.CacheLogFile, ready, s.Namespace, addr); err != nil {
		p.stop()
		removeShm(s.service)
		return err
	}
	s.p, s.Addr, s.Pid = p, addr, cmd.Process.Pid
	return nil
}

// squidConf is the squid.conf of a squid on addr that allows CONNECT to
// ports, with its pid file and logs in run.
func squidConf(addr netip.AddrPort, ports []uint16, extra []string, run string) string {
	ports = slices.Clone(ports)
	slices.Sort(ports)
	ports = slices.Compact(ports)
	p := make([]string, len(ports))
	for i, port := range ports {
		p[i] = strconv.Itoa(int(port))
	}
	lines := []string{
		"# squid.conf written by webtest for one test",
		"http_port " + addr.String(),
		"visible_hostname webtest",
		"acl okports port " + strings.Join(p, " "),
		"acl CONNECT method CONNECT",
	}
	lines = append(lines, extra...)
	lines = append(lines,
		"http_access deny CONNECT !okports",
		"http_access allow all",
		"cache deny all",
		"dns_nameservers 127.0.0.1",
		"pinger_enable off",
		"pid_filename "+filepath.Join(run, "squid.pid"),
		"access_log stdio:"+filepath.Join(run, "access.log"),
		"cache_log "+filepath.Join(run, "cache.log"),
		"coredump_dir "+run,
		"shutdown_lifetime 1 seconds",
	)
	return strings.Join(lines, "\n") + "\n"
}

// URL returns the proxy's URL, "http://ADDR", for curl --proxy and
// http.ProxyURL.
func (s *Squid) URL() string { return "http://" + s.Addr.String() }

// AccessLog returns squid's access.log so far.
func (s *Squid) AccessLog() string { return readFile(s.AccessLogFile) }

// CacheLog returns squid's cache.log so far: its own messages.
func (s *Squid) CacheLog() string { return readFile(s.CacheLogFile) }

// WaitAccessLog waits until a line of access.log matches the regular
// expression re, and returns it; it gives up when ctx ends. A CONNECT's
// line is written when its tunnel closes.
func (s *Squid) WaitAccessLog(ctx context.Context, re string) (string, error) {
	return waitLine(ctx, s.AccessLogFile, re)
}

// Stop kills squid, waits for it to exit, and deletes its shared memory.
// It is idempotent and runs when the test ends.
func (s *Squid) Stop() {
	if s.p != nil {
		s.p.stop()
		removeShm(s.service)
	}
}

// Squid keeps shared memory segments in /dev/shm named after its service
// name (-n, alphanumeric only), "squid" by default, and leaves them when
// killed. Each webtest squid gets a name of its own,
// webtestPIDxN, PID being the test process's: squids of parallel tests do
// not take over each other's segments, and one run as another user does
// not fail on segments it may not replace ("shm_open(/squid-cf__...):
// File exists").
const servicePrefix = "webtest"

// squidCounter makes the service names of squids in one test process
// unique.
var squidCounter atomic.Uint64
