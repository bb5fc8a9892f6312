// Package natlab builds a home router in network namespaces for tests: a LAN
// host behind a real miniupnpd (UPnP IGD, NAT-PMP and PCP) doing NAT with
// nftables, and an "internet" host on the router's WAN side. It is an
// importable test double, like internal/sshtest: the tests of pinhole map
// run pinhole on the LAN host, ask the router for a port mapping, and reach
// the LAN host's service from the internet host through the router's WAN
// address, checking the router's real nftables ruleset as they go.
//
// The lab, one per New, each with namespace names of its own so that labs
// of parallel tests and test processes never meet:
//
//	LAN host            router                              internet host
//	eth0 192.168.77.2 ── lan0 192.168.77.1                  (Internet)
//	(LAN)                    miniupnpd, nftables NAT
//	default via .1           wan0 11.22.33.1 ────────────── eth0 11.22.33.2
//
// The router's WAN address must look public, or miniupnpd refuses every
// mapping; 11.22.33.0/24 lives only on the veth pair between the router and
// the internet host, inside the lab's namespaces. No namespace of the lab
// has a route out of the lab (the router and the internet host have no
// default route, and no interface of the lab is in the machine's own
// namespace), so no packet can leave. Every helper here that sends a packet
// to a lab address does so from inside one of the lab's namespaces; never
// dial a lab address from the test process's own namespace.
//
// NewFirewall builds the same three namespaces with a firewall as the
// router instead: no miniupnpd, and an nftables forward chain that lets the
// LAN host open TCP connections to a few destination ports only (say 443,
// or an office proxy's 3128) and drops everything else from the LAN, UDP
// included, masquerading what it lets out. The transport tests run
// pinhole on the LAN host against a server, a squid or an nginx
// (internal/webtest) on the internet host:
//
//	lab := natlab.NewFirewall(t, natlab.FirewallConfig{AllowTCP: []uint16{443}})
//	ln, _ := natlab.Listen(lab.Internet, "tcp4", "11.22.33.2:443")
//	p := lab.Start(t, lab.LAN, "curl", "-sk", "https://11.22.33.2/")
//
// Everything the lab starts is ended by its process id and every namespace
// deleted when the test ends (t.Cleanup). Programs in the lab get SIGKILL
// from the kernel if the test process dies without cleaning up, and the
// namespaces left by a test process that died are deleted by the next New.
//
// New needs root and the programs ip (iproute2), nft (nftables) and
// miniupnpd (NewFirewall: ip and nft); without them it skips the test with
// a line saying what is missing. scripts/test installs them and CI runs as root.
package natlab

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The lab's addresses, the same in every lab: each lab has namespaces of its
// own.
var (
	LANPrefix    = netip.MustParsePrefix("192.168.77.0/24")
	LANAddr      = netip.MustParseAddr("192.168.77.2") // the LAN host
	GatewayAddr  = netip.MustParseAddr("192.168.77.1") // the router's LAN side, where miniupnpd answers
	WANPrefix    = netip.MustParsePrefix("11.22.33.0/24")
	WANAddr      = netip.MustParseAddr("11.22.33.1") // the router's WAN address
	InternetAddr = netip.MustParseAddr("11.22.33.2") // the internet host
)

// The router's interface names (in the router's namespace) and the hosts'
// (eth0 in each).
const (
	RouterLANIf = "lan0"
	RouterWANIf = "wan0"
	HostIf      = "eth0"
)

// Ports miniupnpd answers on, at GatewayAddr.
const (
	HTTPPort   = 5000 // UPnP IGD: http://192.168.77.1:5000/rootDesc.xml
	NATPMPPort = 5351 // NAT-PMP and PCP
)

// RootDescURL is where the router's UPnP IGD description is.
var RootDescURL = fmt.Sprintf("http://%s:%d/rootDesc.xml", GatewayAddr, HTTPPort)

// Config is what a test chooses about its lab; the zero value is the router
// of package comment with miniupnpd's NAT-PMP, PCP and UPnP IGD on.
type Config struct {
	// MinLifetime is miniupnpd's min_lifetime, the shortest PCP lease it
	// grants (it raises shorter requests to it). Zero means 10 s, so tests
	// can watch leases being renewed; miniupnpd's own default is 120 s.
	// NAT-PMP and UPnP leases are granted as asked.
	MinLifetime time.Duration

	// Extra holds more miniupnpd.conf lines, e.g. "enable_upnp=no". They
	// come after natlab's own lines; for a permission rule, put it before
	// natlab's "deny" line by starting it with "allow".
	Extra []string
}

// Lab is a running router lab. Its fields are read-only.
type Lab struct {
	// Namespace names, for `ip netns exec NAME` and for Command, Listen and
	// Dial.
	LAN, Router, Internet string

	Dir string // the lab's files: router.nft (the router's ruleset), miniupnpd.conf, logs

	// miniupnpd's; zero in a firewall lab (NewFirewall), which has none.
	MiniupnpdPid  int
	MiniupnpdLog  string // the file miniupnpd -d writes its log to
	MiniupnpdConf string

	ip, nft   string // the programs' paths
	miniupnpd *Proc
}

// counter makes the namespace names of labs in one test process unique.
var counter atomic.Uint64

// prefix starts every namespace name natlab makes:
// natlab-PID-N-{lan,rtr,inet}, PID being the test process's.
const prefix = "natlab-"

// Need skips the test unless it runs as root with ip, nft and miniupnpd
// installed, and returns the paths of ip and nft. New calls it.
func Need(t testing.TB) (ip, nft string) {
	t.Helper()
	return need(t, "miniupnpd")
}

// need skips the test unless it runs as root on Linux with ip, nft and
// more installed, and returns the paths of ip and nft.
func need(t testing.TB, more ...string) (ip, nft string) {
	t.Helper()
	if !supported {
		t.Skip("natlab: skipping: the router lab needs Linux network namespaces")
	}
	if os.Geteuid() != 0 {
		t.Skip("natlab: skipping: the router lab needs root (network namespaces, nftables); CI runs it as root")
	}
	NeedPrograms(t, append([]string{"ip", "nft"}, more...)...)
	ip, _ = LookPath("ip")
	nft, _ = LookPath("nft")
	return ip, nft
}

// NeedPrograms skips the test unless every one of programs is installed
// (found by LookPath), saying which Debian package to install.
func NeedPrograms(t testing.TB, programs ...string) {
	t.Helper()
	for _, p := range programs {
		if _, err := LookPath(p); err != nil {
			pkg := map[string]string{"ip": "iproute2", "nft": "nftables", "upnpc": "miniupnpc", "ssh": "openssh-client"}[p]
			if pkg == "" {
				pkg = p
			}
			t.Skipf("natlab: skipping: %s not found (install %s, or run scripts/test which installs it)", p, pkg)
		}
	}
}

// LookPath finds a program in PATH, then in /usr/sbin and /sbin, where
// Debian puts ip, nft and miniupnpd and where a PATH without sbin misses
// them.
func LookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("natlab: %s not found in PATH, /usr/sbin or /sbin", name)
}

// New builds a lab, starts miniupnpd in its router and waits until
// miniupnpd answers; everything is torn down when the test ends. It skips
// the test as Need does, and fails it if the lab cannot be built.
func New(t testing.TB, cfg Config) *Lab {
	t.Helper()
	ip, nft := Need(t)
	miniupnpd, _ := LookPath("miniupnpd")
	l := newLab(t, ip, nft, nftRules())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l.startMiniupnpd(t, ctx, miniupnpd, cfg)
	return l
}

// newLab builds the namespaces of a lab whose router has the nftables
// ruleset rules, and deletes them when the test ends.
func newLab(t testing.TB, ip, nft, rules string) *Lab {
	t.Helper()
	DeleteStale(ip, prefix)
	base := fmt.Sprintf("%s%d-%d-", prefix, os.Getpid(), counter.Add(1))
	l := &Lab{
		LAN: base + "lan", Router: base + "rtr", Internet: base + "inet",
		Dir: t.TempDir(),
		ip:  ip, nft: nft,
	}
	// Registered before anything exists, so that a lab that fails halfway
	// is deleted too. Cleanups run last-in first-out: miniupnpd and every
	// Proc stop before this deletes their namespaces.
	t.Cleanup(func() {
		for _, ns := range []string{l.LAN, l.Router, l.Internet} {
			if out, err := exec.Command(ip, "netns", "delete", ns).CombinedOutput(); err != nil && !strings.Contains(string(out), "No such file") {
				t.Errorf("natlab: deleting namespace %s: %v: %s", ns, err, out)
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.build(ctx, rules); err != nil {
		t.Fatal(err)
	}
	return l
}

// build makes the namespaces, the veth pairs, the addresses and routes, and
// the router's forwarding and its nftables ruleset, rules.
func (l *Lab) build(ctx context.Context, rules string) error {
	lanHost := netip.PrefixFrom(LANAddr, LANPrefix.Bits()).String()
	gw := netip.PrefixFrom(GatewayAddr, LANPrefix.Bits()).String()
	wan := netip.PrefixFrom(WANAddr, WANPrefix.Bits()).String()
	inet := netip.PrefixFrom(InternetAddr, WANPrefix.Bits()).String()
	steps := [][]string{
		{"netns", "add", l.LAN},
		{"netns", "add", l.Router},
		{"netns", "add", l.Internet},
		// Each pair is made inside the router's namespace with its peer
		// in the host's, so no lab interface ever exists in the
		// machine's own namespace, even for a moment.
		{"-n", l.Router, "link", "add", RouterLANIf, "type", "veth", "peer", "name", HostIf, "netns", l.LAN},
		{"-n", l.Router, "link", "add", RouterWANIf, "type", "veth", "peer", "name", HostIf, "netns", l.Internet},
		{"-n", l.LAN, "addr", "add", lanHost, "dev", HostIf},
		{"-n", l.Router, "addr", "add", gw, "dev", RouterLANIf},
		{"-n", l.Router, "addr", "add", wan, "dev", RouterWANIf},
		{"-n", l.Internet, "addr", "add", inet, "dev", HostIf},
	}
	for _, ns := range []string{l.LAN, l.Router, l.Internet} {
		steps = append(steps, []string{"-n", ns, "link", "set", "lo", "up"})
	}
	steps = append(steps,
		[]string{"-n", l.LAN, "link", "set", HostIf, "up"},
		[]string{"-n", l.Router, "link", "set", RouterLANIf, "up"},
		[]string{"-n", l.Router, "link", "set", RouterWANIf, "up"},
		[]string{"-n", l.Internet, "link", "set", HostIf, "up"},
		// The LAN host's only way out is the router; the router and the
		// internet host know only their own links.
		[]string{"-n", l.LAN, "route", "add", "default", "via", GatewayAddr.String()},
	)
	for _, args := range steps {
		if out, err := exec.CommandContext(ctx, l.ip, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("natlab: ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
		}
	}
	err := InNamespace(l.Router, func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644)
	})
	if err != nil {
		return fmt.Errorf("natlab: turning on forwarding in the router: %w", err)
	}
	file := filepath.Join(l.Dir, "router.nft")
	if err := os.WriteFile(file, []byte(rules), 0o644); err != nil {
		return fmt.Errorf("natlab: %w", err)
	}
	if out, err := l.Command(ctx, l.Router, l.nft, "-f", file).CombinedOutput(); err != nil {
		return fmt.Errorf("natlab: nft -f %s in the router: %v: %s", file, err, bytes.TrimSpace(out))
	}
	return nil
}

// nftRules are the tables miniupnpd 2.3.1 inserts its rules into (Debian's
// nft_init.sh, meant to make them, is broken): a router that forwards
// what comes from the LAN, what belongs to a connection already allowed and
// what miniupnpd lets in, and masquerades what leaves by the WAN side.
func nftRules() string {
	return fmt.Sprintf(`table inet filter {
	chain forward {
		type filter hook forward priority 0; policy drop;
		jump miniupnpd
		ct state established,related accept
		iifname %[1]q accept
	}
	chain miniupnpd {
	}
	chain prerouting {
		type nat hook prerouting priority -100; policy accept;
		jump prerouting_miniupnpd
	}
	chain postrouting {
		type nat hook postrouting priority 100; policy accept;
		jump postrouting_miniupnpd
		oifname %[2]q masquerade
	}
	chain prerouting_miniupnpd {
	}
	chain postrouting_miniupnpd {
	}
}
`, RouterLANIf, RouterWANIf)
}

// miniupnpdConf is the router's miniupnpd.conf.
func miniupnpdConf(cfg Config) string {
	min := cfg.MinLifetime
	if min <= 0 {
		min = 10 * time.Second
	}
	lines := []string{
		"ext_ifname=" + RouterWANIf,
		"listening_ip=" + RouterLANIf,
		"http_port=" + strconv.Itoa(HTTPPort),
		"enable_natpmp=yes", // NAT-PMP and PCP: this version has no separate PCP switch
		"enable_upnp=yes",
		"secure_mode=yes",
		"system_uptime=yes",
		"min_lifetime=" + strconv.Itoa(int(min.Round(time.Second)/time.Second)),
		"uuid=3d2b8e5c-6a0f-4c57-9f3e-1f2a3b4c5d6e",
	}
	lines = append(lines, cfg.Extra...)
	lines = append(lines,
		"allow 1024-65535 "+LANPrefix.String()+" 1024-65535",
		"deny 0-65535 0.0.0.0/0 0-65535",
	)
	return strings.Join(lines, "\n") + "\n"
}

// startMiniupnpd runs miniupnpd -d in the router and waits until it
// listens for HTTP and for NAT-PMP/PCP.
func (l *Lab) startMiniupnpd(t testing.TB, ctx context.Context, path string, cfg Config) {
	t.Helper()
	l.MiniupnpdConf = filepath.Join(l.Dir, "miniupnpd.conf")
	l.MiniupnpdLog = filepath.Join(l.Dir, "miniupnpd.log")
	if err := os.WriteFile(l.MiniupnpdConf, []byte(miniupnpdConf(cfg)), 0o644); err != nil {
		t.Fatalf("natlab: %v", err)
	}
	p := l.start(t, l.Router, false, path, "-d", "-f", l.MiniupnpdConf, "-P", filepath.Join(l.Dir, "miniupnpd.pid"))
	l.miniupnpd = p
	l.MiniupnpdPid = p.Pid()
	t.Cleanup(func() {
		p.Terminate(5 * time.Second)
		os.WriteFile(l.MiniupnpdLog, []byte(p.Stderr()), 0o644)
		if t.Failed() {
			t.Logf("natlab: miniupnpd's log (%s):\n%s", l.MiniupnpdLog, lastLines(quietLog(p.Stderr()), 80))
		}
	})
	for _, s := range []string{"HTTP listening on port", "Listening for NAT-PMP/PCP traffic"} {
		if _, err := p.WaitStderr(ctx, regexp.QuoteMeta(s)); err != nil {
			t.Fatalf("natlab: miniupnpd did not start: %v", err)
		}
	}
}

// quietLog leaves out the lines miniupnpd -d repeats at every turn of its
// loop, which say nothing about a failure.
func quietLog(log string) string {
	var b strings.Builder
	for line := range strings.Lines(log) {
		if strings.Contains(line, "is not a IGD pinhole") || strings.Contains(line, "setting timeout to") || strings.Contains(line, "table_cb(") {
			continue
		}
		b.WriteString(line)
	}
	return b.String()
}

// lastLines returns the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.SplitAfter(s, "\n")
	if len(lines) > n {
		lines = append([]string{"...\n"}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "")
}

// Attach returns a Lab with no namespaces of its own, for running programs
// (Command, Output, Start) in namespaces that some other lab built, such
// as faultlab's. It skips the test unless it runs as root on Linux with ip
// installed.
func Attach(t testing.TB) *Lab {
	t.Helper()
	if !supported {
		t.Skip("natlab: skipping: the lab needs Linux network namespaces")
	}
	if os.Geteuid() != 0 {
		t.Skip("natlab: skipping: the lab needs root (network namespaces); CI runs it as root")
	}
	NeedPrograms(t, "ip")
	ip, _ := LookPath("ip")
	nft, _ := LookPath("nft")
	return &Lab{ip: ip, nft: nft}
}

// Command returns an exec.Cmd that runs name in namespace ns
// (`ip netns exec NS NAME ARGS...`, which execs NAME: the Cmd's process is
// the program's own). The kernel kills it if the test process dies.
func (l *Lab) Command(ctx context.Context, ns, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, l.ip, append([]string{"netns", "exec", ns, name}, args...)...)
	dieWithTest(cmd)
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Output runs name in namespace ns to the end and returns what it wrote to
// stdout and stderr; the error, if it failed, includes that output.
func (l *Lab) Output(ctx context.Context, ns, name string, args ...string) (string, error) {
	out, err := l.Command(ctx, ns, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("natlab: %s %s in %s: %w; its output:\n%s", name, strings.Join(args, " "), ns, err, out)
	}
	return string(out), nil
}

// Ruleset returns the router's whole nftables ruleset, `nft list ruleset`.
func (l *Lab) Ruleset(ctx context.Context) (string, error) {
	return l.Output(ctx, l.Router, l.nft, "list", "ruleset")
}

// Redirects returns the port mappings the router really has: the dnat rules
// in its nftables ruleset.
func (l *Lab) Redirects(ctx context.Context) ([]Redirect, error) {
	rules, err := l.Ruleset(ctx)
	if err != nil {
		return nil, err
	}
	return ParseRedirects(rules), nil
}

// MiniupnpdOutput returns what miniupnpd has logged so far. The whole log
// is also written to MiniupnpdLog when the test ends.
// A firewall lab (NewFirewall) has no miniupnpd: "".
func (l *Lab) MiniupnpdOutput() string {
	if l.miniupnpd == nil {
		return ""
	}
	return l.miniupnpd.Stderr()
}
