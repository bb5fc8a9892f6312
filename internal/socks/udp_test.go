package socks

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/streamtest"
)

// udpClient is a SOCKS5 UDP ASSOCIATE client, as RFC 1928 section 7 has
// it: x/net/proxy has none.
type udpClient struct {
	ctrl  net.Conn
	relay *net.UDPConn
}

// associate opens a control connection to the proxy at addr and asks for
// a UDP association. It returns the reply code when that is not success.
func associate(t *testing.T, addr string) (*udpClient, byte) {
	t.Helper()
	ctrl, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ctrl.Close() })
	ctrl.SetDeadline(time.Now().Add(10 * time.Second))
	ctrl.Write([]byte{5, 1, 0})
	buf := make([]byte, 512)
	if _, err := ctrl.Read(buf[:2]); err != nil || buf[1] != 0 {
		t.Fatalf("SOCKS5 greeting: %v %v", buf[:2], err)
	}
	ctrl.Write([]byte{5, 3, 0, 1, 0, 0, 0, 0, 0, 0}) // UDP ASSOCIATE, address unknown yet
	n, err := ctrl.Read(buf)
	if err != nil || n < 10 {
		t.Fatalf("UDP ASSOCIATE reply: %v %v", buf[:n], err)
	}
	if buf[1] != 0 {
		return nil, buf[1]
	}
	ip, _ := netip.AddrFromSlice(buf[4:8])
	port := binary.BigEndian.Uint16(buf[8:10])
	ctrl.SetDeadline(time.Time{})
	relay, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, port)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { relay.Close() })
	return &udpClient{ctrl: ctrl, relay: relay}, 0
}

// ask sends payload to dst ("host:port") through the association and
// returns the reply's source address and payload, or an error on timeout.
func (c *udpClient) ask(dst string, payload []byte, timeout time.Duration) (string, []byte, error) {
	c.relay.Write(append(appendUDPHeader(nil, dst), payload...))
	buf := make([]byte, 70000)
	c.relay.SetReadDeadline(time.Now().Add(timeout))
	n, err := c.relay.Read(buf)
	if err != nil {
		return "", nil, err
	}
	from, data, err := parseUDPDatagram(buf[:n])
	return from, data, err
}

func TestUDPAssociate(t *testing.T) {
	echoA, echoB := streamtest.NewUDPEcho(t), streamtest.NewUDPEcho(t)
	byIP := echoA.LocalAddr().String()
	byName := fmt.Sprintf("localhost:%d", echoB.LocalAddr().(*net.UDPAddr).Port)
	addr := startServer(t, &Server{})
	c, code := associate(t, addr)
	if code != 0 {
		t.Fatalf("UDP ASSOCIATE: reply %#x", code)
	}
	for _, dst := range []string{byIP, byName, byIP} {
		p := []byte("to " + dst)
		from, got, err := c.ask(dst, p, 3*time.Second)
		if err != nil || from != dst || !bytes.Equal(got, p) {
			t.Fatalf("via %s: from %q, %q, %v; want the reply from %s", dst, from, got, err, dst)
		}
	}
	big := bytes.Repeat([]byte{9}, 60000)
	if _, got, err := c.ask(byIP, big, 3*time.Second); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("60,000-byte datagram: %d bytes back, %v", len(got), err)
	}
	// A fragment is dropped: no reply.
	frag := append(appendUDPHeader(nil, byIP), 'x')
	frag[2] = 1
	c.relay.Write(frag)
	c.relay.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := c.relay.Read(make([]byte, 100)); err == nil {
		t.Fatalf("a fragment got a %d-byte reply; fragments must be dropped", n)
	}
	// Closing the control connection ends the association.
	c.ctrl.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, _, err := c.ask(byIP, []byte("after"), 200*time.Millisecond); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the relay still answers 5 s after its control connection closed")
		}
	}
}

func TestUDPAssociateRefused(t *testing.T) {
	addr := startServer(t, &Server{NoUDP: func() bool { return true }})
	if _, code := associate(t, addr); code != repCommandUnsupported {
		t.Fatalf("UDP ASSOCIATE with NoUDP: reply %#x, want 0x07 command not supported", code)
	}
}

func TestParseUDPDatagram(t *testing.T) {
	for _, dst := range []string{"127.0.0.1:53", "[::1]:5353", "example.test:80"} {
		b := append(appendUDPHeader(nil, dst), "data"...)
		addr, payload, err := parseUDPDatagram(b)
		if err != nil || addr != dst || string(payload) != "data" {
			t.Errorf("round trip of %s: %q %q %v", dst, addr, payload, err)
		}
	}
	frag := appendUDPHeader(nil, "127.0.0.1:53")
	frag[2] = 2
	if _, _, err := parseUDPDatagram(frag); !errors.Is(err, errFragment) {
		t.Errorf("fragment: %v; want errFragment", err)
	}
	for _, bad := range [][]byte{nil, {0, 0, 0}, {1, 0, 0, 1, 1, 2, 3, 4, 0, 1}, {0, 0, 0, 9}, {0, 0, 0, 3, 5, 'a'}} {
		if _, _, err := parseUDPDatagram(bad); err == nil {
			t.Errorf("parseUDPDatagram(%v) succeeded", bad)
		}
	}
}

// FuzzUDPDatagram: any bytes from a client parse or fail, never panic,
// and what parses re-encodes to a header that parses the same.
func FuzzUDPDatagram(f *testing.F) {
	f.Add(append(appendUDPHeader(nil, "127.0.0.1:53"), "q"...))
	f.Add(appendUDPHeader(nil, "example.test:80"))
	f.Add([]byte{0, 0, 0, 4})
	f.Fuzz(func(t *testing.T, b []byte) {
		addr, payload, err := parseUDPDatagram(b)
		if err != nil {
			return
		}
		if len(payload) > len(b) {
			t.Fatalf("payload of %d bytes from a %d-byte datagram", len(payload), len(b))
		}
		// A name that is an IP literal ("::00") comes back as that IP.
		hdr := appendUDPHeader(nil, addr)
		if again, rest, err := parseUDPDatagram(append(hdr, payload...)); err != nil || again != addr || !bytes.Equal(rest, payload) {
			t.Fatalf("re-encoded %q parses as %q, %v", addr, again, err)
		}
	})
}
