package cli

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/natlab"
	"github.com/pinhole-dev/pinhole/internal/streamtest"
)

// TestForwardKernelLab runs pinhole forward --kernel on the router of a
// natlab lab (namespaces the test makes and deletes) with a TCP and a UDP
// pair from the router's WAN address to services on the LAN host, which
// the internet host has no route to: the internet host reaches both
// through the rules (prerouting), the router reaches the TCP one through
// its own WAN address (output), the router's ruleset holds the process's
// table, and once the process has exited after SIGTERM, or after SIGHUP,
// the table is gone; a table that a killed process left is named with the
// command that removes it, and left alone. Needs root; skips without it. CI runs it.
func TestForwardKernelLab(t *testing.T) {
	lab := natlab.NewRouter(t)
	pinhole := buildPinhole(t)
	tcpPort := lab.ServeTCP(t)
	udpPort := lab.ServeUDP(t)
	// A table left by a pinhole forward --kernel that was killed: pid
	// 4194304 is above Linux's largest, so no process has it.
	const stale = "pinhole-forward-4194304"
	if out, err := lab.Output(labContext(t), lab.Router, "nft", "add", "table", "inet", stale); err != nil {
		t.Fatalf("%v: %s", err, out)
	}

	for i, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGHUP} {
		t.Run(sig.String(), func(t *testing.T) {
			ctx := labContext(t)
			tcpListen := netip.AddrPortFrom(natlab.WANAddr, uint16(18080+2*i))
			udpListen := netip.AddrPortFrom(natlab.WANAddr, uint16(18081+2*i))
			p := lab.Start(t, lab.Router, pinhole, "forward", "--kernel",
				"tcp://"+tcpListen.String(), fmt.Sprintf("tcp://%s:%d", natlab.LANAddr, tcpPort),
				fmt.Sprintf("udp://:%d", udpListen.Port()), fmt.Sprintf("udp://%s:%d", natlab.LANAddr, udpPort))
			m, err := p.WaitStdout(ctx, `nftables table inet (pinhole-forward-\d+); removed on exit`)
			if err != nil {
				t.Fatalf("%v; stderr:\n%s", err, p.Stderr())
			}
			table := m[1]
			if want := fmt.Sprintf("pinhole-forward-%d", p.Pid()); table != want {
				t.Errorf("table %s, want %s: the name carries the process id", table, want)
			}
			rules, err := lab.Ruleset(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(rules, "table inet "+table) {
				t.Fatalf("the router's ruleset has no table %s:\n%s", table, rules)
			}
			if i == 0 {
				if _, err := p.WaitStderr(ctx, `nft delete table inet `+stale); err != nil {
					t.Errorf("no warning about the table a killed process left: %v", err)
				}
			}
			if err := lab.ReachTCP(ctx, tcpListen); err != nil {
				t.Errorf("TCP from the internet host: %v\nruleset:\n%s", err, rules)
			}
			if err := lab.ReachUDP(ctx, udpListen); err != nil {
				t.Errorf("UDP from the internet host: %v\nruleset:\n%s", err, rules)
			}
			conn, err := natlab.Dial(ctx, lab.Router, "tcp4", tcpListen.String())
			if err != nil {
				t.Fatalf("TCP from the router itself: %v", err)
			}
			err = streamtest.Exchange(ctx, conn, rand.Uint64(), 64<<10, 64<<10)
			conn.Close()
			if err != nil {
				t.Errorf("TCP from the router itself: %v", err)
			}

			began := time.Now()
			if err := p.Signal(sig); err != nil {
				t.Fatal(err)
			}
			select {
			case <-p.Done():
			case <-time.After(15 * time.Second):
				t.Fatalf("pinhole forward --kernel did not exit within 15 s of %v", sig)
			}
			if code := p.ExitCode(); code != 0 {
				t.Errorf("exit %d after %v, want 0; stderr:\n%s", code, sig, p.Stderr())
			}
			t.Logf("exited %v after %v", time.Since(began).Round(time.Millisecond), sig)
			rules, err = lab.Ruleset(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(rules, table) {
				t.Errorf("the router's ruleset still has pinhole's rules after it exited:\n%s", rules)
			}
		})
	}

	t.Run("not root", func(t *testing.T) {
		ctx := labContext(t)
		// Run by nobody: the binary and the folders above it must be
		// readable by that user.
		for d := filepath.Dir(pinhole); d != filepath.Dir(d) && strings.HasPrefix(d, os.TempDir()) && d != os.TempDir(); d = filepath.Dir(d) {
			os.Chmod(d, 0o755)
		}
		cmd := exec.CommandContext(ctx, pinhole, "forward", "--kernel", "tcp://:18090", "tcp://192.168.77.2:80")
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		if code := cmd.ProcessState.ExitCode(); err == nil || code != 1 {
			t.Fatalf("as nobody: %v (exit %d), want exit 1; output:\n%s", err, code, out)
		}
		for _, want := range []string{"needs root", "leave out --kernel"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("as nobody, the output does not say %q:\n%s", want, out)
			}
		}
	})
}
