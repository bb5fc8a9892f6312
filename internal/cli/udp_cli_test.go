package cli

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/sshtest"
	"github.com/pinhole-dev/pinhole/internal/streamtest"
)

// TestConnectUDP: -L/udp through pinhole server carries a datagram there
// and back.
func TestConnectUDP(t *testing.T) {
	echo := streamtest.NewUDPEcho(t)
	w := newWorld(t, "")
	c := start(t, w.connectArgs("-L", "0:"+echo.LocalAddr().String()+"/udp")...)
	local := c.waitLine(t, `-L \S+/udp: listening on (\S+),`)[1]
	conn, err := net.Dial("udp", local)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, 100)
	for try := 0; ; try++ {
		conn.Write([]byte("ping"))
		conn.SetReadDeadline(time.Now().Add(time.Second))
		n, err := conn.Read(buf)
		if err == nil && string(buf[:n]) == "ping" {
			break
		}
		if try == 5 {
			t.Fatalf("no echo through -L/udp: %v", err)
		}
	}
}

// TestConnectUDPToStockSSHD: only /udp forwards against OpenSSH's sshd is
// an error at start, saying why; beside a TCP forward it is a warning.
func TestConnectUDPToStockSSHD(t *testing.T) {
	dir := t.TempDir()
	key := sshtest.NewKey(t, dir, "client")
	d := sshtest.StartSSHD(t, sshtest.SSHDConfig{AuthorizedKeys: key.AuthorizedLine})
	known := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(known, []byte(d.KnownHostsLine()), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"connect", "-p", fmt.Sprint(d.Port), "-i", key.PrivateFile, "--known-hosts", known, "--host-key-check", "yes"}
	dest := d.User + "@127.0.0.1"

	code, _, stderr := run(t, append(append(base, "-L", "0:127.0.0.1:53/udp"), dest)...)
	if code != 1 || !strings.Contains(stderr, "does not speak pinhole's UDP extension") || !strings.Contains(stderr, "pinhole server") {
		t.Fatalf("only -L/udp to a stock sshd: exit %d; want 1 and a message naming pinhole server; stderr:\n%s", code, stderr)
	}

	c := start(t, append(append(base, "-L", "0:127.0.0.1:53/udp", "-L", "0:127.0.0.1:9"), dest)...)
	c.waitLine(t, `-L 0:127\.0\.0\.1:9: listening on`)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(c.stderr.String(), "cannot carry UDP") {
		if time.Now().After(deadline) {
			t.Fatalf("no warning about the skipped /udp forward; stderr:\n%s", c.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
