package cli

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/natlab"
	"github.com/pinhole-dev/pinhole/internal/sshtest"
	"github.com/pinhole-dev/pinhole/internal/streamtest"
)

// The tests here run the pinhole binary on the LAN host of a real home
// router (natlab: miniupnpd with nftables NAT, in network namespaces) and
// check what it did on the router itself: its nftables ruleset, miniupnpd's
// own list (upnpc -l) and a connection from the internet host through the
// router's WAN address. They need root and skip without it; CI runs them.

// labLease is the lease the tests ask for: short, so that a renewal comes
// within the test, and no shorter than the lab's miniupnpd grants for PCP
// (natlab's min_lifetime, 10 s).
const labLease = 20 * time.Second

// TestMapLab: pinhole map with each of --via upnp, natpmp, pcp and auto,
// for TCP and for UDP: it prints the router's WAN address and the mapped
// port, the LAN host's service is reached byte for byte from the internet
// host through it, the lease is renewed and the mapping still works after
// the first lease would have run out, and after SIGTERM pinhole exits 0 and
// the mapping is gone from the router. Also --probe, --list and --delete,
// and pinhole server --map reached by OpenSSH from the internet host.
func TestMapLab(t *testing.T) {
	natlab.NeedPrograms(t, "upnpc")
	lab := natlab.New(t, natlab.Config{})
	pinhole := buildPinhole(t)
	tcpPort := lab.ServeTCP(t)

	t.Run("probe", func(t *testing.T) {
		ctx := labContext(t)
		began := time.Now()
		out, err := lab.Output(ctx, lab.LAN, pinhole, "map", "--probe")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("pinhole map --probe answered in %v:\n%s", time.Since(began).Round(time.Millisecond), out)
		for _, via := range []string{"pcp", "natpmp", "upnp"} {
			re := regexp.MustCompile(`(?m)^` + via + `: ok, external ` + regexp.QuoteMeta(natlab.WANAddr.String()) + `\b`)
			if !re.MatchString(out) {
				t.Errorf("--probe does not say %q:\n%s", via+": ok, external "+natlab.WANAddr.String(), out)
			}
		}
	})

	// Every method and protocol at once, in two rounds, so that the
	// whole lease is waited out once rather than once per case: first each
	// pinhole map starts and its mapping is checked, then, once the first
	// lease of every mapping has run out, each is checked again and
	// stopped.
	var cases []*mapCase
	for i, via := range []string{"upnp", "natpmp", "pcp", "auto"} {
		for j, proto := range []string{"tcp", "udp"} {
			c := &mapCase{lab: lab, via: via, proto: proto}
			// A service of its own: a router keys PCP and NAT-PMP
			// mappings by internal port, so two cases on one port
			// would meet there.
			c.internal = lab.ServeTCP(t)
			if proto == "udp" {
				c.internal = lab.ServeUDP(t)
			}
			if via != "auto" { // auto: whatever port the router gives
				c.external = uint16(30000 + 2*i + j)
			}
			c.start(t, pinhole)
			cases = append(cases, c)
		}
	}
	for _, c := range cases {
		t.Run("mapped/"+c.via+"/"+c.proto, c.checkMapped)
	}
	for _, c := range cases {
		t.Run("renewed/"+c.via+"/"+c.proto, c.checkRenewed)
	}
	for _, c := range cases {
		t.Run("removed/"+c.via+"/"+c.proto, c.checkRemoved)
	}

	t.Run("list and delete", func(t *testing.T) {
		testMapListDelete(t, lab, pinhole, tcpPort)
	})

	t.Run("server --map", func(t *testing.T) {
		testServerMap(t, lab, pinhole, tcpPort)
	})
}

// mapCase is one pinhole map process, for one method and protocol.
type mapCase struct {
	lab                *natlab.Lab
	via, proto         string
	internal, external uint16 // external 0: any

	p        *natlab.Proc
	addr     netip.AddrPort // what pinhole printed
	mappedAt time.Time
	ok       bool // every check so far passed
}

// start runs pinhole map on the LAN host, for a lease of labLease.
func (c *mapCase) start(t *testing.T, pinhole string) {
	args := []string{"map", "--proto", c.proto, "--via", c.via, "--lifetime", labLease.String()}
	if c.external != 0 {
		args = append(args, "--external", strconv.Itoa(int(c.external)))
	}
	args = append(args, strconv.Itoa(int(c.internal)))
	c.p = c.lab.Start(t, c.lab.LAN, pinhole, args...)
}

func (c *mapCase) redirect() natlab.Redirect {
	return natlab.Redirect{Proto: c.proto, ExternalPort: c.addr.Port(), Internal: netip.AddrPortFrom(natlab.LANAddr, c.internal)}
}

func (c *mapCase) reach(ctx context.Context) error {
	if c.proto == "udp" {
		return c.lab.ReachUDP(ctx, c.addr)
	}
	return c.lab.ReachTCP(ctx, c.addr)
}

// checkMapped: pinhole map prints the router's WAN address and the port,
// and the mapping is on the router and works from the internet host.
func (c *mapCase) checkMapped(t *testing.T) {
	ctx := labContext(t)
	m, err := c.p.WaitStdout(ctx, `^\S+$`)
	if err != nil {
		t.Fatal(err)
	}
	c.mappedAt = time.Now()
	if c.addr, err = netip.ParseAddrPort(m[0]); err != nil {
		t.Fatalf("pinhole map printed %q, want ADDRESS:PORT: %v", m[0], err)
	}
	if c.addr.Addr() != natlab.WANAddr || (c.external != 0 && c.addr.Port() != c.external) {
		t.Fatalf("pinhole map printed %v, want %v:%s", c.addr, natlab.WANAddr, portOrAny(c.external))
	}
	c.checkOnRouter(t, ctx, "once mapped")
	c.ok = !t.Failed()
}

// checkOnRouter: the router's ruleset has the dnat, miniupnpd lists it,
// and the LAN host's service is reached through it.
func (c *mapCase) checkOnRouter(t *testing.T, ctx context.Context, when string) {
	t.Helper()
	if !routerHas(t, c.lab, c.redirect()) {
		t.Fatalf("%s: the router's ruleset has no dnat for %v", when, c.redirect())
	}
	if !upnpcLists(t, c.lab, c.redirect()) {
		t.Errorf("%s: upnpc -l does not list %v", when, c.redirect())
	}
	if err := c.reach(ctx); err != nil {
		t.Fatalf("%s: %v", when, err)
	}
}

// checkRenewed: pinhole map says it renewed the lease, and past the first
// lease (plus a margin for the router's clock) the mapping is still there
// and works: it is there only if the renewal reached the router.
func (c *mapCase) checkRenewed(t *testing.T) {
	if !c.ok {
		t.Skip("not mapped")
	}
	c.ok = false
	ctx := labContext(t)
	if _, err := c.p.WaitStderr(ctx, `\brenewed\b`); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(c.mappedAt.Add(labLease + 3*time.Second)))
	c.checkOnRouter(t, ctx, "after the first lease ran out")
	c.ok = !t.Failed()
}

// checkRemoved: after SIGTERM pinhole map exits 0 saying the mapping was
// removed, and it is gone from the router.
func (c *mapCase) checkRemoved(t *testing.T) {
	if c.addr == (netip.AddrPort{}) {
		t.Skip("not mapped")
	}
	ctx := labContext(t)
	if err := c.p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.p.Done():
	case <-ctx.Done():
		t.Fatalf("pinhole map did not exit after SIGTERM: %v", ctx.Err())
	}
	if code := c.p.ExitCode(); code != 0 {
		t.Errorf("pinhole map exited %d after SIGTERM, want 0; stderr:\n%s", code, c.p.Stderr())
	}
	if !strings.Contains(c.p.Stderr(), "removed") {
		t.Errorf("pinhole map said nothing about the mapping being removed; stderr:\n%s", c.p.Stderr())
	}
	if lines := strings.Count(c.p.Stdout(), "\n"); lines != 1 {
		t.Errorf("pinhole map wrote %d lines to stdout, want 1:\n%s", lines, c.p.Stdout())
	}
	if routerHas(t, c.lab, c.redirect()) {
		t.Fatalf("after exit: the router still has the dnat for %v", c.redirect())
	}
	if upnpcLists(t, c.lab, c.redirect()) {
		t.Errorf("after exit: upnpc -l still lists %v", c.redirect())
	}
	if err := c.reach(ctx); err == nil {
		t.Fatalf("after exit: %v/%s still reaches the LAN host", c.addr, c.proto)
	}
}

// testMapListDelete: a mapping upnpc made is in pinhole map --list, and
// pinhole map --delete removes it from the router.
func testMapListDelete(t *testing.T, lab *natlab.Lab, pinhole string, internal uint16) {
	ctx := labContext(t)
	const external = 30100
	want := natlab.Redirect{Proto: "tcp", ExternalPort: external, Internal: netip.AddrPortFrom(natlab.LANAddr, internal)}
	if _, err := lab.Output(ctx, lab.LAN, "upnpc", "-u", natlab.RootDescURL,
		"-a", natlab.LANAddr.String(), fmt.Sprint(internal), fmt.Sprint(external), "TCP", "120"); err != nil {
		t.Fatal(err)
	}
	if !routerHas(t, lab, want) {
		t.Fatalf("upnpc made no dnat for %v", want)
	}
	out, err := lab.Output(ctx, lab.LAN, pinhole, "map", "--list")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, fmt.Sprint(external)) || !strings.Contains(out, fmt.Sprintf("%s:%d", natlab.LANAddr, internal)) {
		t.Errorf("pinhole map --list does not show %v:\n%s", want, out)
	}
	out, err = lab.Output(ctx, lab.LAN, pinhole, "map", "--delete", "--proto", "tcp", "--via", "upnp", "--external", fmt.Sprint(external), fmt.Sprint(internal))
	if err != nil {
		t.Fatal(err)
	}
	if routerHas(t, lab, want) {
		t.Fatalf("pinhole map --delete said\n%s\nbut the router still has the dnat for %v", out, want)
	}
}

// testServerMap: pinhole server --map on the LAN host says where it is
// reachable, and OpenSSH's ssh -N -L from the internet host logs in there
// and carries a TCP stream to the LAN host's service; after SIGTERM the
// mapping is gone.
func testServerMap(t *testing.T, lab *natlab.Lab, pinhole string, target uint16) {
	sshtest.Need(t, sshtest.SSHPath)
	ctx := labContext(t)
	dir := t.TempDir()
	client := sshtest.NewKey(t, dir, "client")
	host := sshtest.NewKey(t, dir, "host")
	authKeys := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authKeys, []byte(client.AuthorizedLine), 0o600); err != nil {
		t.Fatal(err)
	}
	const listen = 2222 // in the LAN host's own namespace: no one else is there
	srv := lab.Start(t, lab.LAN, pinhole, "server", "--listen", fmt.Sprintf(":%d", listen),
		"--host-key", host.PrivateFile, "--authorized-keys", authKeys, "--map")
	m, err := srv.WaitStdout(ctx, `^pinhole server: reachable from the internet at (\S+)$`)
	if err != nil {
		t.Fatal(err)
	}
	addr, err := netip.ParseAddrPort(m[1])
	if err != nil || addr.Addr() != natlab.WANAddr {
		t.Fatalf("pinhole server --map printed %q, want %v:PORT (%v)", m[0], natlab.WANAddr, err)
	}
	want := natlab.Redirect{Proto: "tcp", ExternalPort: addr.Port(), Internal: netip.AddrPortFrom(natlab.LANAddr, listen)}
	if !routerHas(t, lab, want) {
		t.Fatalf("the router's ruleset has no dnat for %v", want)
	}

	known := filepath.Join(dir, "known_hosts")
	line := fmt.Sprintf("[%s]:%d %s", addr.Addr(), addr.Port(), host.AuthorizedLine)
	if err := os.WriteFile(known, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	const local = 10022 // in the internet host's own namespace
	args, err := sshtest.SSHOptions{
		Addr: addr.String(),
		Key:  client,
		Args: []string{"-L", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:%d", local, target)},
	}.CommandArgs(known)
	if err != nil {
		t.Fatal(err)
	}
	ssh := lab.Start(t, lab.Internet, sshtest.SSHPath, args...)
	localAddr := fmt.Sprintf("127.0.0.1:%d", local)
	var exchanged error
	for try := 0; try < 150; try++ { // ssh needs a moment to log in and listen
		conn, err := natlab.Dial(ctx, lab.Internet, "tcp4", localAddr)
		if err == nil {
			exchanged = streamtest.Exchange(ctx, conn, 7, 1<<20, 1<<20)
			conn.Close()
			break
		}
		exchanged = err
		select {
		case <-ssh.Done():
			t.Fatalf("ssh -N -L from the internet host to %v exited: %v; its stderr:\n%s", addr, ssh.Wait(), ssh.Stderr())
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
	if exchanged != nil {
		t.Fatalf("through ssh -L from the internet host via %v: %v", addr, exchanged)
	}
	ssh.Stop()

	if !srv.Terminate(15 * time.Second) {
		t.Fatalf("pinhole server --map did not exit within 15 s of SIGTERM")
	}
	if code := srv.ExitCode(); code != 0 {
		t.Errorf("pinhole server --map exited %d after SIGTERM, want 0", code)
	}
	if routerHas(t, lab, want) {
		t.Fatalf("after pinhole server exited the router still has the dnat for %v", want)
	}
}

func portOrAny(p uint16) string {
	if p == 0 {
		return "PORT"
	}
	return strconv.Itoa(int(p))
}

// routerHas reports whether the router's nftables ruleset has r.
func routerHas(t *testing.T, lab *natlab.Lab, r natlab.Redirect) bool {
	t.Helper()
	rs, err := lab.Redirects(labContext(t))
	if err != nil {
		t.Fatal(err)
	}
	return slices.Contains(rs, r)
}

// upnpcLists reports whether miniupnpd's own list of mappings, as upnpc -l
// shows it from the LAN host, has r (mappings made by NAT-PMP and PCP are
// there too).
func upnpcLists(t *testing.T, lab *natlab.Lab, r natlab.Redirect) bool {
	t.Helper()
	out, err := lab.Output(labContext(t), lab.LAN, "upnpc", "-u", natlab.RootDescURL, "-l")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(out, fmt.Sprintf(" %s %d->%s ", strings.ToUpper(r.Proto), r.ExternalPort, r.Internal))
}

func labContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// buildPinhole builds cmd/pinhole into a directory of the test's, to run
// it in the lab's namespaces as a user would. It builds with -race when
// this test binary was, so the build reuses what go test -race compiled
// (and the race detector watches pinhole map too).
func buildPinhole(t *testing.T) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is not in PATH: %v", err)
	}
	path := filepath.Join(t.TempDir(), "pinhole")
	args := []string{"build", "-o", path}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" && s.Value == "true" {
				args = append(args, "-race")
			}
		}
	}
	began := time.Now()
	out, err := exec.Command(gobin, append(args, "github.com/pinhole-dev/pinhole/cmd/pinhole")...).CombinedOutput()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("go %s: %v", strings.Join(args, " "), time.Since(began).Round(time.Millisecond))
	return path
}
