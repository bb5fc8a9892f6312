package relay

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/streamtest"
)

// serveTCP runs f on a fresh loopback listener and returns its address;
// the forwarder is closed when the test ends.
func serveTCP(t *testing.T, f *TCPForwarder) (string, <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- f.Serve(ln) }()
	t.Cleanup(func() { f.Close() })
	return ln.Addr().String(), errc
}

// TestTCPForwarder: several connections at once carry their bytes both
// ways intact.
func TestTCPForwarder(t *testing.T) {
	target := streamtest.NewTarget(t)
	addr, _ := serveTCP(t, &TCPForwarder{Target: target.Addr()})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var d net.Dialer
	err := streamtest.Many(ctx, 8, 256<<10, func(ctx context.Context) (net.Conn, error) {
		return d.DialContext(ctx, "tcp", addr)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestTCPForwarderRefused: a target that refuses gets the client a close,
// and the forwarder keeps serving.
func TestTCPForwarderRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusing := ln.Addr().String()
	ln.Close() // nothing listens there now: connections to it are refused
	addr, _ := serveTCP(t, &TCPForwarder{Target: refusing})
	for range 3 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := c.Read(make([]byte, 1))
		c.Close()
		if n != 0 || err == nil || isTimeout(err) {
			t.Fatalf("read from a connection to a refusing target: %d, %v; want a close", n, err)
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestTCPForwarderShutdown: Shutdown stops accepting at once, lets an open
// connection finish, and when its ctx ends closes what is left.
func TestTCPForwarderShutdown(t *testing.T) {
	echo := streamtest.NewEcho(t)
	f := &TCPForwarder{Target: echo.Addr()}
	addr, errc := serveTCP(t, f)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- f.Shutdown(ctx) }()
	if err := <-errc; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Serve after Shutdown: %v, want net.ErrClosed", err)
	}
	if nc, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		nc.Close()
		t.Fatal("a new connection was accepted during Shutdown")
	}
	// Still open while draining:
	if _, err := c.Write([]byte("y")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatalf("the open connection stopped during the drain: %v", err)
	}
	if err := <-shut; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown with a connection left open: %v, want the deadline", err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("read after the drain ran out: %v, want the connection closed", err)
	}
}

// TestTCPForwarderHeader: Header's bytes reach the target before the
// client's, and the client's follow intact.
func TestTCPForwarderHeader(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- err.Error()
			return
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		b, _ := io.ReadAll(c)
		got <- string(b)
	}()
	f := &TCPForwarder{Target: ln.Addr().String(), Header: func(client net.Conn) ([]byte, error) {
		return []byte("HEADER " + client.RemoteAddr().String() + "\r\n"), nil
	}}
	addr, _ := serveTCP(t, f)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("payload"))
	c.(*net.TCPConn).CloseWrite()
	want := "HEADER " + c.LocalAddr().String() + "\r\npayload"
	if g := <-got; g != want {
		t.Errorf("the target got %q, want %q", g, want)
	}
	c.Close()
}
