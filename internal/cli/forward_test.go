package cli

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/streamtest"
)

// TestForwardBadInput: a malformed pair is a usage error (exit 2) that says
// what a pair looks like; a port already taken fails the start (exit 1)
// and says to pick another; nothing starts in either case.
func TestForwardBadInput(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"no pairs", []string{"forward"}, 2, []string{"give at least one LISTEN TARGET pair"}},
		{"no target", []string{"forward", "tcp://127.0.0.1:0"}, 2, []string{"has no TARGET"}},
		{"no scheme", []string{"forward", "127.0.0.1:0", "tcp://127.0.0.1:9"}, 2, []string{"no tcp:// or udp:// in front", "e.g. tcp://:8080 tcp://10.0.0.5:80", "pinhole forward -h"}},
		{"mixed", []string{"forward", "tcp://127.0.0.1:0", "udp://127.0.0.1:9"}, 2, []string{"make both tcp:// or both udp://"}},
		{"bad flag", []string{"forward", "--no-such-flag", "tcp://127.0.0.1:0", "tcp://127.0.0.1:9"}, 2, nil},
		{"port taken", []string{"forward", "tcp://127.0.0.1:0", "tcp://127.0.0.1:9", "tcp://" + taken.Addr().String(), "tcp://127.0.0.1:9"}, 1,
			[]string{"tcp://" + taken.Addr().String(), "address already in use", "pick another LISTEN address"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := run(t, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, tc.code, errOut)
			}
			for _, w := range tc.want {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr does not say %q:\n%s", w, errOut)
				}
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing: nothing may start", out)
			}
		})
	}
}

// TestForwardRelays: one process with three pairs, TCP to a target, TCP
// to a port that refuses and UDP to an echo: the TCP pair carries bytes
// both ways intact, a client of the refusing pair sees its connection
// closed while the other pairs keep working, and the process exits 0 when
// its context ends.
func TestForwardRelays(t *testing.T) {
	target := streamtest.NewTarget(t)
	echo := streamtest.NewUDPEcho(t)
	gone, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusing := gone.Addr().String()
	gone.Close() // connections to it are refused from now on
	p := start(t, "forward",
		"tcp://127.0.0.1:0", "tcp://"+target.Addr(),
		"tcp://127.0.0.1:0", "tcp://"+refusing,
		"udp://127.0.0.1:0", "udp://"+echo.LocalAddr().String())
	tcpAddr := p.waitLine(t, `^pinhole forward: tcp://(\S+) → tcp://`+target.Addr()+`$`)[1]
	refusingAddr := p.waitLine(t, `^pinhole forward: tcp://(\S+) → tcp://`+refusing+`$`)[1]
	udpAddr := p.waitLine(t, `^pinhole forward: udp://(\S+) → udp://`)[1]

	exchange := func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		c, err := net.Dial("tcp", tcpAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := streamtest.Exchange(ctx, c, rand.Uint64(), 1<<20, 1<<20); err != nil {
			t.Fatal(err)
		}
	}
	exchange()

	c, err := net.Dial("tcp", refusingAddr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := c.Read(make([]byte, 1))
	c.Close()
	if ne, ok := err.(net.Error); n != 0 || err == nil || ok && ne.Timeout() {
		t.Fatalf("read through the pair whose target refuses: %d, %v; want the connection closed", n, err)
	}
	if !strings.Contains(p.stderr.String(), "cannot reach the target") {
		t.Errorf("stderr does not say the target could not be reached:\n%s", p.stderr)
	}

	exchange() // the other pairs keep working
	u, err := net.Dial("udp", udpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	msg := []byte("through pinhole forward")
	buf := make([]byte, 64)
	for try := 0; ; try++ {
		u.Write(msg)
		u.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, err := u.Read(buf)
		if err == nil && bytes.Equal(buf[:n], msg) {
			break
		}
		if try == 10 {
			t.Fatalf("no UDP echo through the forward in %d tries: %v", try, err)
		}
	}

	p.cancel()
	select {
	case code := <-p.code:
		p.code <- code // for the cleanup's wait
		if code != 0 {
			t.Fatalf("exit %d after the context ended, want 0; stderr:\n%s", code, p.stderr)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("pinhole forward did not stop within 15 s of its context ending")
	}
}

// TestForwardProxyProtocol: with --proxy-protocol v1, each TCP stream to
// the target starts with the PROXY line naming the client's address and
// port; with --kernel it is refused.
func TestForwardProxyProtocol(t *testing.T) {
	tl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Close()
	p := start(t, "forward", "--proxy-protocol", "v1", "tcp://127.0.0.1:0", "tcp://"+tl.Addr().String())
	addr := p.waitLine(t, `^pinhole forward: tcp://(\S+) → tcp://`)[1]
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "after\n")
	tl.(*net.TCPListener).SetDeadline(time.Now().Add(10 * time.Second))
	s, err := tl.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(s)
	line, _ := r.ReadString('\n')
	client := c.LocalAddr().(*net.TCPAddr)
	want := fmt.Sprintf("PROXY TCP4 127.0.0.1 %s %d %s\r\n", strings.Split(addr, ":")[0], client.Port, strings.Split(addr, ":")[1])
	if line != want {
		t.Errorf("the target's first line %q, want %q", line, want)
	}
	if rest, _ := r.ReadString('\n'); rest != "after\n" {
		t.Errorf("after the header: %q, want the client's bytes", rest)
	}
	if code, _, stderr := run(t, "forward", "--kernel", "--proxy-protocol", "v2", "tcp://127.0.0.1:9000", "tcp://127.0.0.1:9001"); code != 2 || !strings.Contains(stderr, "needs the user-space relay") {
		t.Errorf("--kernel --proxy-protocol: exit %d, %q", code, stderr)
	}
}

// TestForwardKernelBadInput: what --kernel cannot install is refused before
// any rule is: a bind name (rules match addresses), port 0, IPv6 to IPv4.
func TestForwardKernelBadInput(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipping: --kernel checks its pairs only as root (without root it refuses first, as TestForwardKernelLab checks); CI runs as root")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("skipping: nft is not installed (Debian: apt-get install nftables)")
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"bind name", []string{"tcp://localhost:18095", "tcp://10.0.0.5:80"}, "matches an IP address, not a name"},
		{"port 0", []string{"tcp://:0", "tcp://10.0.0.5:80"}, "tcp://:0: --kernel needs a listening port 1-65535, not 0"},
		{"families", []string{"tcp://[::1]:18095", "tcp://10.0.0.5:80"}, "does not translate between IPv4 and IPv6"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := run(t, append([]string{"forward", "--kernel"}, tc.args...)...)
			if code != 1 || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit %d, stderr %q; want exit 1 and %q", code, errOut, tc.want)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing: no rule may be installed", out)
			}
		})
	}
}
