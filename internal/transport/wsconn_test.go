package transport

import (
	"bytes"
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// wsPair starts a Dispatcher whose WebSocket streams go to serve, and
// returns a ws:// conn to it, from a Dialer.
func wsPair(t *testing.T, serve func(net.Conn)) (net.Conn, *Dispatcher) {
	t.Helper()
	d := &Dispatcher{SSH: serve}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ln.Close()
		d.Close()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				if inner, err := d.Unwrap(c); err != nil || inner != nil {
					c.Close() // not the WebSocket this test dials
				}
			}()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ap := ln.Addr().(*net.TCPAddr).AddrPort()
	c, err := new(Dialer).DialEndpoint(ctx, Endpoint{Scheme: WS, Host: "127.0.0.1", Port: ap.Port(), Path: DefaultPath})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, d
}

func echoConn(c net.Conn) {
	defer c.Close()
	io.Copy(c, c)
}

// TestWebSocketRoundTripAllocs: a small message there and back through
// a WebSocket stream allocates next to nothing, at either end (the
// counts are the whole process's). websocket.NetConn made coder/websocket
// arm a context.AfterFunc for each frame read and written: about 20
// allocations and 2 kB of garbage per round trip.
func TestWebSocketRoundTripAllocs(t *testing.T) {
	c, _ := wsPair(t, echoConn)
	msg := bytes.Repeat([]byte("x"), 64)
	got := make([]byte, len(msg))
	roundTrip := func() {
		if _, err := c.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatal(err)
		}
	}
	roundTrip()
	allocs := testing.AllocsPerRun(200, roundTrip)
	t.Logf("%.1f allocations per round trip", allocs)
	if allocs > 8 {
		t.Errorf("%.1f allocations per 64-byte round trip through a WebSocket stream, want at most 8", allocs)
	}
}

// TestWebSocketDeadlines: the deadlines of a WebSocket stream are those
// of the connection under it: one that passes ends a Read waiting for a
// message, and one lifted while a Read waits (as the SSH server lifts
// the login grace's when the handshake ends) leaves that Read be.
func TestWebSocketDeadlines(t *testing.T) {
	t.Run("passes", func(t *testing.T) {
		c, _ := wsPair(t, echoConn)
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		start := time.Now()
		_, err := c.Read(make([]byte, 1))
		if !isTimeout(err) {
			t.Fatalf("Read after the deadline: %v, want a timeout", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("the Read took %v to time out", d)
		}
	})
	t.Run("lifted", func(t *testing.T) {
		c, _ := wsPair(t, echoConn)
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		read := make(chan error, 1)
		go func() {
			b := make([]byte, 1)
			_, err := io.ReadFull(c, b)
			read <- err
		}()
		time.Sleep(50 * time.Millisecond)
		c.SetReadDeadline(time.Time{})
		time.Sleep(500 * time.Millisecond) // past the first deadline
		if _, err := c.Write([]byte("y")); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-read:
			if err != nil {
				t.Fatalf("Read: %v, want the echoed byte", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the Read never returned")
		}
	})
}

// TestWebSocketDispatcherCloseEndsStreams: the Dispatcher's Close ends
// the WebSocket streams it handed out, and so the client's reads.
func TestWebSocketDispatcherCloseEndsStreams(t *testing.T) {
	served := make(chan struct{})
	c, d := wsPair(t, func(c net.Conn) {
		close(served)
		io.Copy(io.Discard, c) // only Close ends it
	})
	<-served
	d.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("Read after the Dispatcher's Close: %v, want the stream closed", err)
	}
}
