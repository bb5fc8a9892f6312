package cli

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/proxy"

	"github.com/pinhole-dev/pinhole/internal/sshtest"
	"github.com/pinhole-dev/pinhole/internal/streamtest"
)

// curlThrough checks every way curl uses a proxy against the -D port at
// proxyAddr, fetching origin's page by IP and by a name the far end
// resolves.
func curlThrough(t *testing.T, proxyAddr, originURLByIP, originURLByName, body string) {
	t.Helper()
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("skipping: curl is not installed (apt-get install curl, or run scripts/test)")
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"socks4", []string{"--socks4", proxyAddr, originURLByIP}},
		{"socks4a", []string{"--socks4a", proxyAddr, originURLByName}},
		{"socks5", []string{"--socks5", proxyAddr, originURLByIP}},
		{"socks5-hostname", []string{"--socks5-hostname", proxyAddr, originURLByName}},
		{"http", []string{"-x", "http://" + proxyAddr, originURLByName}},
		{"http-connect", []string{"-p", "-x", "http://" + proxyAddr, originURLByName}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, curl, append([]string{"-sS", "--max-time", "20"}, tc.args...)...).CombinedOutput()
			if err != nil || string(out) != body {
				t.Fatalf("curl %s: %v; got %q, want %q", strings.Join(tc.args, " "), err, out, body)
			}
		})
	}
}

func origin(t *testing.T, body string) (byIP, byName string) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, body)
	}))
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	return "http://127.0.0.1:" + port + "/", "http://localhost:" + port + "/"
}

// TestDynamicThroughPinhole: -D through pinhole server, with curl in every
// proxy mode, a 16 MiB byte-exact exchange with x/net/proxy's SOCKS5
// client, and a permitopen refusal answered fast with the right codes.
func TestDynamicThroughPinhole(t *testing.T) {
	const body = "hello from the far side"
	byIP, byName := origin(t, body)
	target := streamtest.NewTarget(t)
	_, originPort, _ := net.SplitHostPort(strings.TrimPrefix(strings.TrimSuffix(byIP, "/"), "http://"))
	w := newWorld(t, fmt.Sprintf(`permitopen="127.0.0.1:%s",permitopen="localhost:%s",permitopen="127.0.0.1:%d"`, originPort, originPort, target.Port()))
	c := start(t, w.connectArgs("-D", "0")...)
	addr := c.waitLine(t, `-D \S+: SOCKS4/4a/5 and HTTP proxy on (\S+),`)[1]

	curlThrough(t, addr, byIP, byName, body)

	t.Run("16MiB", func(t *testing.T) {
		d, err := proxy.SOCKS5("tcp", addr, nil, proxy.Direct)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := d.Dial("tcp", target.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := streamtest.Exchange(ctx, conn, 11, 16<<20, 16<<20); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("refused", func(t *testing.T) {
		// 127.0.0.1:9 is outside permitopen: SOCKS5 reply 0x02, HTTP 403.
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		began := time.Now()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		conn.Write([]byte{5, 1, 0})
		reply := make([]byte, 2)
		if _, err := conn.Read(reply); err != nil || reply[1] != 0 {
			t.Fatalf("SOCKS5 greeting: %v %v", reply, err)
		}
		conn.Write([]byte{5, 1, 0, 1, 127, 0, 0, 1, 0, 9})
		reply = make([]byte, 10)
		if _, err := conn.Read(reply); err != nil || reply[1] != 0x02 {
			t.Fatalf("SOCKS5 CONNECT outside permitopen: reply %v, %v; want code 0x02 (not allowed by ruleset)", reply, err)
		}
		if d := time.Since(began); d > 5*time.Second {
			t.Fatalf("a refusal took %v", d)
		}
		curl, err := exec.LookPath("curl")
		if err != nil {
			return
		}
		out, _ := exec.Command(curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20", "-x", "http://"+addr, "http://127.0.0.1:9/").Output()
		if string(out) != "403" {
			t.Fatalf("HTTP proxy GET outside permitopen: status %q, want 403", out)
		}
	})
}

// TestDynamicThroughOpenSSHD: -D through a stock sshd, with curl.
func TestDynamicThroughOpenSSHD(t *testing.T) {
	const body = "hello through sshd"
	byIP, byName := origin(t, body)
	dir := t.TempDir()
	key := sshtest.NewKey(t, dir, "client")
	d := sshtest.StartSSHD(t, sshtest.SSHDConfig{AuthorizedKeys: key.AuthorizedLine})
	known := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(known, []byte(d.KnownHostsLine()), 0o600); err != nil {
		t.Fatal(err)
	}
	c := start(t, "connect", "-p", fmt.Sprint(d.Port), "-i", key.PrivateFile, "--known-hosts", known, "-D", "0", d.User+"@127.0.0.1")
	addr := c.waitLine(t, `-D \S+: SOCKS4/4a/5 and HTTP proxy on (\S+),`)[1]
	curlThrough(t, addr, byIP, byName, body)
}

// socks5UDP asks the -D proxy at addr for a UDP association and, when it
// is granted, sends one datagram to dst through it and returns the reply's
// payload. code is the association's reply code.
func socks5UDP(t *testing.T, addr, dst string, payload []byte) (code byte, reply []byte) {
	t.Helper()
	ctrl, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ctrl.Close()
	ctrl.SetDeadline(time.Now().Add(10 * time.Second))
	ctrl.Write([]byte{5, 1, 0})
	buf := make([]byte, 70000)
	if _, err := io.ReadFull(ctrl, buf[:2]); err != nil {
		t.Fatal(err)
	}
	ctrl.Write([]byte{5, 3, 0, 1, 0, 0, 0, 0, 0, 0})
	if _, err := io.ReadFull(ctrl, buf[:10]); err != nil {
		t.Fatal(err)
	}
	if buf[1] != 0 {
		return buf[1], nil
	}
	relay := net.UDPAddrFromAddrPort(netip.AddrPortFrom(netip.AddrFrom4([4]byte(buf[4:8])), binary.BigEndian.Uint16(buf[8:10])))
	pc, err := net.DialUDP("udp", nil, relay)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	dstAddr := netip.MustParseAddrPort(dst)
	hdr := append([]byte{0, 0, 0, 1}, dstAddr.Addr().AsSlice()...)
	hdr = binary.BigEndian.AppendUint16(hdr, dstAddr.Port())
	for try := 0; try < 5; try++ {
		pc.Write(append(hdr, payload...))
		pc.SetReadDeadline(time.Now().Add(time.Second))
		n, err := pc.Read(buf)
		if err == nil && n >= len(hdr) {
			if !bytes.Equal(buf[:len(hdr)], hdr) {
				t.Fatalf("reply header %x, want %x (the destination as the source)", buf[:len(hdr)], hdr)
			}
			return 0, buf[len(hdr):n]
		}
	}
	t.Fatalf("no reply through the UDP association")
	return 0, nil
}

// TestDynamicUDPAssociate: SOCKS5 UDP ASSOCIATE through -D is carried by
// pinhole's UDP extension to a pinhole server; a stock sshd cannot carry it
// and the proxy says "command not supported".
func TestDynamicUDPAssociate(t *testing.T) {
	echo := streamtest.NewUDPEcho(t).LocalAddr().String()
	_, port, _ := net.SplitHostPort(echo)
	w := newWorld(t, `permitopen="127.0.0.1:`+port+`"`)
	c := start(t, w.connectArgs("-D", "0")...)
	addr := c.waitLine(t, `-D \S+: SOCKS4/4a/5 and HTTP proxy on (\S+),`)[1]
	big := bytes.Repeat([]byte{7}, 60000)
	if code, got := socks5UDP(t, addr, echo, big); code != 0 || !bytes.Equal(got, big) {
		t.Fatalf("UDP ASSOCIATE through pinhole server: code %#x, %d bytes back; want the 60000 sent", code, len(got))
	}

	dir := t.TempDir()
	key := sshtest.NewKey(t, dir, "client")
	d := sshtest.StartSSHD(t, sshtest.SSHDConfig{AuthorizedKeys: key.AuthorizedLine})
	known := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(known, []byte(d.KnownHostsLine()), 0o600); err != nil {
		t.Fatal(err)
	}
	s := start(t, "connect", "-p", fmt.Sprint(d.Port), "-i", key.PrivateFile, "--known-hosts", known, "-D", "0", d.User+"@127.0.0.1")
	saddr := s.waitLine(t, `-D \S+: SOCKS4/4a/5 and HTTP proxy on (\S+),`)[1]
	if code, _ := socks5UDP(t, saddr, echo, []byte("x")); code != 0x07 {
		t.Fatalf("UDP ASSOCIATE through a stock sshd: code %#x, want 0x07 command not supported", code)
	}
}
