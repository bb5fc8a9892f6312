package relay

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/streamtest"
)

// startForwarder relays a new loopback UDP socket to target with plain UDP.
func startForwarder(t *testing.T, f *UDPForwarder, target string) string {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	f.Dial = func(ctx context.Context, _ netip.AddrPort) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", target)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Serve(ctx, pc) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return pc.LocalAddr().String()
}

func client(t *testing.T, addr string) *net.UDPConn {
	t.Helper()
	ua, _ := net.ResolveUDPAddr("udp", addr)
	c, err := net.DialUDP("udp", nil, ua)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// ask sends p and returns the reply, or nil after the timeout.
func ask(c *net.UDPConn, p []byte, timeout time.Duration) []byte {
	c.Write(p)
	c.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 65535)
	n, err := c.Read(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

func TestUDPForwarderReplies(t *testing.T) {
	echo := streamtest.NewUDPEcho(t)
	f := &UDPForwarder{}
	addr := startForwarder(t, f, echo.LocalAddr().String())
	a, b := client(t, addr), client(t, addr)
	for i := range 20 {
		for _, c := range []*net.UDPConn{a, b} {
			p := []byte(c.LocalAddr().String() + string(rune('a'+i)))
			if got := ask(c, p, 2*time.Second); !bytes.Equal(got, p) {
				t.Fatalf("%s got %q, want its own %q", c.LocalAddr(), got, p)
			}
		}
	}
	big := bytes.Repeat([]byte{7}, 60000)
	if got := ask(a, big, 2*time.Second); !bytes.Equal(got, big) {
		t.Fatalf("60000-byte datagram came back as %d bytes", len(got))
	}
	if n := f.Flows(); n != 2 {
		t.Fatalf("%d flows, want 2", n)
	}
	// Each datagram counted once each way, two flows opened, none dropped.
	// (A reply is counted just after it is sent: give the last a moment.)
	want := UDPStats{Datagrams: 41, Replies: 41, Flows: 2}
	for deadline := time.Now().Add(2 * time.Second); f.Stats() != want && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if got := f.Stats(); got != want {
		t.Fatalf("Stats %+v, want %+v", got, want)
	}
}

func TestUDPForwarderIdleAndCap(t *testing.T) {
	echo := streamtest.NewUDPEcho(t)
	f := &UDPForwarder{IdleTimeout: 200 * time.Millisecond, MaxFlows: 2}
	addr := startForwarder(t, f, echo.LocalAddr().String())
	a, b, c := client(t, addr), client(t, addr), client(t, addr)
	if ask(a, []byte("a"), 2*time.Second) == nil || ask(b, []byte("b"), 2*time.Second) == nil {
		t.Fatal("no reply within the cap")
	}
	if got := ask(c, []byte("c"), 300*time.Millisecond); got != nil {
		t.Fatalf("a third flow past MaxFlows 2 got a reply %q", got)
	}
	if st := f.Stats(); f.Dropped() == 0 || st.NoFlow != f.Dropped() {
		t.Fatalf("the datagram past the cap was not counted as dropped for want of a flow: %+v", st)
	}
	deadline := time.Now().Add(5 * time.Second)
	for f.Flows() > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := f.Flows(); n != 0 {
		t.Fatalf("%d flows still open well past the idle timeout", n)
	}
	if got := ask(c, []byte("c"), 2*time.Second); string(got) != "c" {
		t.Fatalf("after the idle flows expired a new flow got %q, want \"c\"", got)
	}
}

// TestSetBuffers: a UDP socket gets SocketBuffer each way where the
// process may force it (root) or the sysctl limits allow it, and is
// reported capped exactly when it did not.
func TestSetBuffers(t *testing.T) {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	b := SetBuffers(pc)
	t.Logf("got %+v", b)
	if runtime.GOOS != "linux" {
		return
	}
	limit := SocketBuffer
	if os.Geteuid() != 0 {
		if raw, err := os.ReadFile("/proc/sys/net/core/rmem_max"); err == nil {
			n, _ := strconv.Atoi(strings.TrimSpace(string(raw)))
			limit = min(limit, n)
		}
	}
	if b.Read < limit {
		t.Errorf("receive buffer %d bytes, want at least %d", b.Read, limit)
	}
	if b.Capped != (b.Read < SocketBuffer || b.Write < SocketBuffer) {
		t.Errorf("Capped %v for %+v", b.Capped, b)
	}
	if os.Geteuid() == 0 && b.Capped {
		t.Errorf("as root the buffers are forced to %d, got %+v", SocketBuffer, b)
	}
	if got := SetBuffers(struct{}{}); got != (Buffers{}) {
		t.Errorf("SetBuffers of no socket = %+v, want zero", got)
	}
}
