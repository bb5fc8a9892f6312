// Package faultlab builds a client and a server joined through a router in
// network namespaces, and breaks the path between them on demand: delay,
// loss and reordering, a link taken down, a silent blackhole, the client
// moving to a new address. It is a test double in the manner of
// internal/natlab, on whose helpers it builds: the fault tests of
// internal/cli run pinhole connect on the client and pinhole server on the
// server and check that every forward recovers, and pinhole-bench -netem
// measures pinhole and OpenSSH through 25 ms each way and 1 % loss.
//
// The lab, one per Build, each with namespace names of its own:
//
//	client              router                                 server
//	eth0 10.99.1.2 ──── cli0 10.99.1.1        srv0 10.99.2.1 ──── eth0 10.99.2.2
//	(moves to 10.99.3.2,     10.99.3.1)
//	default via .1           │   delay line    │              default via .1
//	                         └─ dla ⇄ Go ⇄ dlb ─┘
//
// Every packet the router forwards goes through the delay line: policy
// routing sends what arrives on cli0 out of the TUN device dla and what
// arrives on srv0 out of dlb; the lab's Go code reads each packet there,
// holds it for the delay, drops some at random and lets some overtake the
// queue (reordering), and writes it to the other TUN device, from where the
// kernel forwards it to its destination. This is what tc's netem qdisc
// would do; that qdisc is not in every kernel (this machine's has no
// sch_netem), so the lab does it itself, in userspace, and needs nothing
// but /dev/net/tun. docs/testing.md has more.
//
// The addresses are private and live only on the lab's veth pairs; no
// namespace of the lab has a route out of it, and no lab interface is in
// the machine's own namespace. Every helper that sends to a lab address
// does so from inside one of the lab's namespaces (natlab.Dial,
// natlab.Listen); never dial a lab address from the test process's own
// namespace.
//
// Build needs root, Linux, /dev/net/tun and the programs ip (iproute2) and
// nft (nftables); New skips the test without them.
package faultlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/natlab"
)

// The lab's addresses, the same in every lab: each lab has namespaces of its
// own.
var (
	ClientAddr   = netip.MustParseAddr("10.99.1.2") // the client, at first
	MovedAddr    = netip.MustParseAddr("10.99.3.2") // the client after MoveClient
	ServerAddr   = netip.MustParseAddr("10.99.2.2") // the server
	clientGW     = netip.MustParsePrefix("10.99.1.1/24")
	movedGW      = netip.MustParsePrefix("10.99.3.1/24")
	serverGW     = netip.MustParsePrefix("10.99.2.1/24")
	clientPrefix = 24
)

// Interface names: the router's, and eth0 on each host.
const (
	RouterClientIf = "cli0"
	RouterServerIf = "srv0"
	HostIf         = "eth0"
	tunClientSide  = "dla" // carries what the client sent, towards the server
	tunServerSide  = "dlb" // carries what the server sent, towards the client
)

// prefix starts every namespace name faultlab makes:
// faultlab-PID-N-{cli,rtr,srv}, PID being the process's.
const prefix = "faultlab-"

var counter atomic.Uint64

// Impairment is what the delay line does to each packet, the same in both
// directions. The zero value passes every packet at once.
type Impairment struct {
	// Delay holds each packet this long (each way).
	Delay time.Duration
	// Loss drops this percentage of packets, at random.
	Loss float64
	// Reorder lets this percentage of packets, at random, skip the delay
	// and overtake the packets held (as netem's reorder does). It does
	// nothing without a Delay.
	Reorder float64
}

func (i Impairment) String() string {
	return fmt.Sprintf("delay %v, loss %g %%, reorder %g %%", i.Delay, i.Loss, i.Reorder)
}

// Lab is a running fault lab. Its fields are read-only.
type Lab struct {
	// Namespace names, for natlab.Listen, natlab.Dial, Command and
	// `ip netns exec NAME`.
	Client, Router, Server string

	// Run starts programs in the lab's namespaces (Start, Output,
	// Command); set by New, nil after Build.
	Run *natlab.Lab

	ip, nft string
	lines   [2]*line // client→server, server→client
	tuns    []*os.File
	wg      sync.WaitGroup
	closed  sync.Once
	moved   atomic.Bool
}

// Need skips the test unless it runs as root on Linux with ip, nft and
// /dev/net/tun; New calls it.
func Need(t testing.TB) {
	t.Helper()
	if !supported {
		t.Skip("faultlab: skipping: the fault lab needs Linux network namespaces and TUN devices")
	}
	if os.Geteuid() != 0 {
		t.Skip("faultlab: skipping: the fault lab needs root (network namespaces, TUN devices, nftables); CI runs it as root")
	}
	natlab.NeedPrograms(t, "ip", "nft")
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		t.Skipf("faultlab: skipping: %v (the delay line needs TUN devices)", err)
	}
}

// New builds a lab for a test and deletes it when the test ends; it skips
// the test as Need does and fails it if the lab cannot be built.
func New(t testing.TB) *Lab {
	t.Helper()
	Need(t)
	run := natlab.Attach(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := Build(ctx)
	if l != nil {
		// Registered before the programs a test starts in it, so that
		// they are stopped (their cleanups run first) before the
		// namespaces go.
		t.Cleanup(func() {
			if err := l.Close(); err != nil {
				t.Errorf("%v", err)
			}
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	l.Run = run
	return l
}

// Build makes a lab: the namespaces, the veth pairs, addresses and routes,
// the delay line and its policy routing, and an empty nftables chain for
// Blackhole. Close deletes it all; on an error the *Lab returned, if not
// nil, must still be closed. It needs root.
func Build(ctx context.Context) (*Lab, error) {
	ip, err := natlab.LookPath("ip")
	if err != nil {
		return nil, err
	}
	nft, err := natlab.LookPath("nft")
	if err != nil {
		return nil, err
	}
	natlab.DeleteStale(ip, prefix)
	base := fmt.Sprintf("%s%d-%d-", prefix, os.Getpid(), counter.Add(1))
	l := &Lab{Client: base + "cli", Router: base + "rtr", Server: base + "srv", ip: ip, nft: nft}
	if err := l.build(ctx); err != nil {
		return l, err
	}
	return l, nil
}

func (l *Lab) build(ctx context.Context) error {
	host := func(a netip.Addr) string { return netip.PrefixFrom(a, clientPrefix).String() }
	steps := [][]string{
		{"netns", "add", l.Client},
		{"netns", "add", l.Router},
		{"netns", "add", l.Server},
		// Made inside the router with the peer in the host's namespace,
		// so no lab interface is ever in the machine's own.
		{"-n", l.Router, "link", "add", RouterClientIf, "type", "veth", "peer", "name", HostIf, "netns", l.Client},
		{"-n", l.Router, "link", "add", RouterServerIf, "type", "veth", "peer", "name", HostIf, "netns", l.Server},
		{"-n", l.Client, "addr", "add", host(ClientAddr), "dev", HostIf},
		{"-n", l.Server, "addr", "add", host(ServerAddr), "dev", HostIf},
		{"-n", l.Router, "addr", "add", clientGW.String(), "dev", RouterClientIf},
		{"-n", l.Router, "addr", "add", movedGW.String(), "dev", RouterClientIf},
		{"-n", l.Router, "addr", "add", serverGW.String(), "dev", RouterServerIf},
	}
	for _, ns := range []string{l.Client, l.Router, l.Server} {
		steps = append(steps, []string{"-n", ns, "link", "set", "lo", "up"})
	}
	steps = append(steps,
		[]string{"-n", l.Client, "link", "set", HostIf, "up"},
		[]string{"-n", l.Server, "link", "set", HostIf, "up"},
		[]string{"-n", l.Router, "link", "set", RouterClientIf, "up"},
		[]string{"-n", l.Router, "link", "set", RouterServerIf, "up"},
		[]string{"-n", l.Client, "route", "add", "default", "via", clientGW.Addr().String()},
		[]string{"-n", l.Server, "route", "add", "default", "via", serverGW.Addr().String()},
	)
	if err := l.ipSteps(ctx, steps); err != nil {
		return err
	}
	err := natlab.InNamespace(l.Router, func() error {
		for _, k := range []string{"ipv4/ip_forward", "ipv4/conf/all/rp_filter", "ipv4/conf/default/rp_filter",
			"ipv4/conf/all/send_redirects", "ipv4/conf/default/send_redirects"} {
			v := "0\n"
			if k == "ipv4/ip_forward" {
				v = "1\n"
			}
			if err := os.WriteFile("/proc/sys/net/"+k, []byte(v), 0o644); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("faultlab: setting the router's sysctls: %w", err)
	}
	if err := l.startDelayLine(ctx); err != nil {
		return err
	}
	rules := "table inet faultlab {\n\tchain forward {\n\t\ttype filter hook forward priority -10; policy accept;\n\t}\n}\n"
	cmd := l.Command(ctx, l.Router, l.nft, "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("faultlab: nft -f in the router: %v: %s", err, bytes.TrimSpace(out))
	}
	return nil
}

// startDelayLine makes the two TUN devices in the router, starts the Go
// code between them and routes every forwarded packet through them.
func (l *Lab) startDelayLine(ctx context.Context) error {
	var a, b *os.File
	err := natlab.InNamespace(l.Router, func() (err error) {
		if a, err = openTun(tunClientSide); err != nil {
			return err
		}
		b, err = openTun(tunServerSide)
		return err
	})
	if a != nil {
		l.tuns = append(l.tuns, a)
	}
	if b != nil {
		l.tuns = append(l.tuns, b)
	}
	if err != nil {
		return fmt.Errorf("faultlab: making the delay line's TUN devices: %w", err)
	}
	l.lines[0] = newLine(a, b)
	l.lines[1] = newLine(b, a)
	for _, ln := range l.lines {
		l.wg.Add(2)
		go func() { defer l.wg.Done(); ln.read() }()
		go func() { defer l.wg.Done(); ln.write() }()
	}
	var steps [][]string
	for _, t := range []string{tunClientSide, tunServerSide} {
		steps = append(steps, []string{"-n", l.Router, "link", "set", t, "up"})
	}
	steps = append(steps,
		// What the client sends leaves by dla, what the server sends by
		// dlb; what the delay line writes to either comes in there and
		// is routed by the main table, to the other side.
		[]string{"-n", l.Router, "route", "add", "default", "dev", tunClientSide, "table", "100"},
		[]string{"-n", l.Router, "route", "add", "default", "dev", tunServerSide, "table", "101"},
		[]string{"-n", l.Router, "rule", "add", "iif", RouterClientIf, "lookup", "100", "priority", "100"},
		[]string{"-n", l.Router, "rule", "add", "iif", RouterServerIf, "lookup", "101", "priority", "101"},
	)
	if err := l.ipSteps(ctx, steps); err != nil {
		return err
	}
	// rp_filter: packets come in on a TUN device from addresses routed
	// elsewhere; with the filter on, the kernel would drop them.
	return natlab.InNamespace(l.Router, func() error {
		for _, t := range []string{tunClientSide, tunServerSide, RouterClientIf, RouterServerIf} {
			if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+t+"/rp_filter", []byte("0\n"), 0o644); err != nil {
				return fmt.Errorf("faultlab: rp_filter off on %s: %w", t, err)
			}
		}
		return nil
	})
}

func (l *Lab) ipSteps(ctx context.Context, steps [][]string) error {
	for _, args := range steps {
		if out, err := exec.CommandContext(ctx, l.ip, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("faultlab: ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
		}
	}
	return nil
}

// Close stops the delay line and deletes the lab's namespaces. Programs the
// caller started in them must be stopped first. It is idempotent.
func (l *Lab) Close() error {
	var errs []error
	l.closed.Do(func() {
		for _, ln := range l.lines {
			if ln != nil {
				ln.close()
			}
		}
		for _, f := range l.tuns {
			f.Close()
		}
		l.wg.Wait()
		for _, ns := range []string{l.Client, l.Router, l.Server} {
			if out, err := exec.Command(l.ip, "netns", "delete", ns).CombinedOutput(); err != nil && !strings.Contains(string(out), "No such file") {
				errs = append(errs, fmt.Errorf("faultlab: deleting namespace %s: %v: %s", ns, err, bytes.TrimSpace(out)))
			}
		}
	})
	return errors.Join(errs...)
}

// Command returns an exec.Cmd that runs name in namespace ns
// (`ip netns exec NS NAME ARGS...`); the kernel kills it if this process
// dies.
func (l *Lab) Command(ctx context.Context, ns, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, l.ip, append([]string{"netns", "exec", ns, name}, args...)...)
	dieWithParent(cmd)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Impair sets what the delay line does to every packet from now on, both
// ways; the zero Impairment ends it. Packets already held keep their delay.
func (l *Lab) Impair(imp Impairment) {
	for _, ln := range l.lines {
		ln.set(imp)
	}
}

// Counts returns how many packets the delay line has passed and dropped,
// both ways together.
func (l *Lab) Counts() (passed, dropped uint64) {
	for _, ln := range l.lines {
		passed += ln.passed.Load()
		dropped += ln.dropped.Load()
	}
	return passed, dropped
}

// LinkDown takes the router's link to the client down: neither side hears
// anything from the other (the client's eth0 loses its carrier). LinkUp
// brings it back.
func (l *Lab) LinkDown(ctx context.Context) error {
	return l.ipSteps(ctx, [][]string{{"-n", l.Router, "link", "set", RouterClientIf, "down"}})
}

// LinkUp undoes LinkDown.
func (l *Lab) LinkUp(ctx context.Context) error {
	return l.ipSteps(ctx, [][]string{{"-n", l.Router, "link", "set", RouterClientIf, "up"}})
}

// Blackhole makes the router drop every packet it forwards, without a word
// (no RST, no ICMP), when on is true, and forward them again when false.
func (l *Lab) Blackhole(ctx context.Context, on bool) error {
	args := []string{"flush", "chain", "inet", "faultlab", "forward"}
	if on {
		args = []string{"add", "rule", "inet", "faultlab", "forward", "counter", "drop"}
	}
	if out, err := l.Command(ctx, l.Router, l.nft, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("faultlab: nft %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// MoveClient moves the client from ClientAddr to MovedAddr, as a phone
// moves from Wi-Fi to mobile data: the old address is gone at once,
// without a word to anyone, so what the server sends to it is lost, and
// the client's default route now leaves from the new one. It can be done
// once per lab.
func (l *Lab) MoveClient(ctx context.Context) error {
	if l.moved.Swap(true) {
		return errors.New("faultlab: the client has moved already")
	}
	return l.ipSteps(ctx, [][]string{
		{"-n", l.Client, "addr", "del", netip.PrefixFrom(ClientAddr, clientPrefix).String(), "dev", HostIf},
		{"-n", l.Client, "addr", "add", netip.PrefixFrom(MovedAddr, clientPrefix).String(), "dev", HostIf},
		{"-n", l.Client, "route", "replace", "default", "via", movedGW.Addr().String()},
	})
}
