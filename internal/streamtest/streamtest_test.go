package streamtest_test

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/streamtest"
)

// testContext bounds a test's exchanges, so a hang fails instead of blocking.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func dialTCP(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

func TestExchange(t *testing.T) {
	target := streamtest.NewTarget(t)
	tests := []struct {
		name       string
		send, recv int64
	}{
		{"empty", 0, 0},
		{"one byte up", 1, 0},
		{"one byte down", 0, 1},
		{"odd sizes", 65537, 100003},
		{"upload", 8 << 20, 1},
		{"download", 1, 8 << 20},
		{"64 MiB each way", 64 << 20, 64 << 20},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := dialTCP(t, target.Addr())
			if err := streamtest.Exchange(testContext(t), conn, uint64(i), tt.send, tt.recv); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// middleman relays one connection at a time to target and spoils it as told.
type middleman struct {
	flipRequest int64 // raw offset (header included) of a client byte to flip, or -1
	flipReply   int64 // offset of a reply byte to flip, or -1
	// fullClose closes both ways when the client half-closes, as a relay
	// that ignores half-close does.
	fullClose bool
}

// start listens on loopback and relays each connection to target.
func (m middleman) start(t *testing.T, target string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				t.Errorf("middleman: %v", err)
				c.Close()
				return
			}
			client, server := c.(*net.TCPConn), s.(*net.TCPConn)
			wg.Go(func() {
				copyFlip(server, client, m.flipRequest)
				if m.fullClose {
					client.Close()
					server.Close()
					return
				}
				server.CloseWrite()
			})
			wg.Go(func() {
				copyFlip(client, server, m.flipReply)
				client.CloseWrite()
			})
			t.Cleanup(func() {
				client.Close()
				server.Close()
			})
		}
	})
	return ln.Addr().String()
}

// copyFlip copies src to dst, inverting the byte at offset flip.
func copyFlip(dst io.Writer, src io.Reader, flip int64) {
	buf := make([]byte, 32<<10)
	var off int64
	for {
		n, err := src.Read(buf)
		if flip >= off && flip < off+int64(n) {
			buf[flip-off] ^= 0xff
		}
		off += int64(n)
		if _, werr := dst.Write(buf[:n]); werr != nil {
			return
		}
		if err != nil {
			return
		}
	}
}

// TestExchangeDetects proves that Exchange fails when the path spoils the
// stream, and passes through the same middleman when it does not.
func TestExchangeDetects(t *testing.T) {
	target := streamtest.NewTarget(t)
	const header = 16
	tests := []struct {
		name       string
		m          middleman
		send, recv int64
		want       string // "" means no error
	}{
		{"clean relay", middleman{flipRequest: -1, flipReply: -1}, 1 << 20, 1 << 20, ""},
		{"reply byte flipped", middleman{flipRequest: -1, flipReply: 1234567}, 1 << 20, 2 << 20, "byte 1234567 of the reply differs"},
		{"first reply byte flipped", middleman{flipRequest: -1, flipReply: 0}, 0, 10, "byte 0 of the reply differs"},
		{"request byte flipped", middleman{flipRequest: header + 500000, flipReply: -1}, 1 << 20, 1 << 20, "the server hashed the 1048576 bytes sent differently"},
		{"seed flipped", middleman{flipRequest: 7, flipReply: -1}, 10, 1 << 10, "of the reply differs"},
		{"half-close lost, long reply", middleman{flipRequest: -1, flipReply: -1, fullClose: true}, 0, 64 << 20, "half-close lost?"},
		{"half-close lost, short reply", middleman{flipRequest: -1, flipReply: -1, fullClose: true}, 1 << 20, 10, "half-close lost?"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := tt.m.start(t, target.Addr())
			conn := dialTCP(t, addr)
			err := streamtest.Exchange(testContext(t), conn, 42, tt.send, tt.recv)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Exchange: %v", err)
			case tt.want != "" && err == nil:
				t.Fatalf("Exchange succeeded; want an error containing %q", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("Exchange: %v\nwant an error containing %q", err, tt.want)
			case err != nil:
				t.Logf("Exchange: %v", err)
			}
		})
	}
}

func TestExchangeNeedsCloseWrite(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	err := streamtest.Exchange(testContext(t), a, 1, 1, 1)
	if err == nil || !strings.Contains(err.Error(), "CloseWrite") {
		t.Fatalf("Exchange over net.Pipe: %v; want an error about CloseWrite", err)
	}
}

func TestExchangeCanceled(t *testing.T) {
	// A listener that accepts and never answers: only ctx can end the exchange.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conn := dialTCP(t, ln.Addr().String())
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	err = streamtest.Exchange(ctx, conn, 1, 0, 1)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Exchange against a silent server: %v; want context.DeadlineExceeded", err)
	}
}

func TestMany(t *testing.T) {
	target := streamtest.NewTarget(t)
	var d net.Dialer
	dialTarget := func(ctx context.Context) (net.Conn, error) {
		return d.DialContext(ctx, "tcp", target.Addr())
	}
	t.Run("200 at once", func(t *testing.T) {
		if err := streamtest.Many(testContext(t), 200, 64<<10, dialTarget); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("dial fails", func(t *testing.T) {
		var mu sync.Mutex
		dials := 0
		dial := func(ctx context.Context) (net.Conn, error) {
			mu.Lock()
			dials++
			n := dials
			mu.Unlock()
			if n == 5 {
				return nil, errors.New("no more")
			}
			return dialTarget(ctx)
		}
		err := streamtest.Many(testContext(t), 10, 1024, dial)
		if err == nil || !strings.Contains(err.Error(), "dial: no more") {
			t.Fatalf("Many: %v; want the dial error", err)
		}
	})
	t.Run("one corrupted", func(t *testing.T) {
		spoiled := middleman{flipRequest: -1, flipReply: 100}.start(t, target.Addr())
		var mu sync.Mutex
		dials := 0
		dial := func(ctx context.Context) (net.Conn, error) {
			mu.Lock()
			dials++
			n := dials
			mu.Unlock()
			if n == 3 {
				return d.DialContext(ctx, "tcp", spoiled)
			}
			return dialTarget(ctx)
		}
		err := streamtest.Many(testContext(t), 10, 1024, dial)
		if err == nil || !strings.Contains(err.Error(), "byte 100 of the reply differs") {
			t.Fatalf("Many: %v; want the corruption", err)
		}
	})
}

func TestTargetClose(t *testing.T) {
	target := streamtest.NewTarget(t)
	conn := dialTCP(t, target.Addr())
	// Ask for a 10-byte reply and never half-close: the Target keeps the
	// connection open, waiting for the end of the request.
	hdr := make([]byte, 16)
	hdr[15] = 10
	if _, err := conn.Write(hdr); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(conn, make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	if err := target.Close(); err != nil {
		t.Fatal(err)
	}
	if err := target.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	if n, err := conn.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("after Close, Read = %d, %v; want 0, EOF", n, err)
	}
	if c, err := net.Dial("tcp", target.Addr()); err == nil {
		c.Close()
		t.Fatal("the listener still accepts after Close")
	}
}

func TestEcho(t *testing.T) {
	echo := streamtest.NewEcho(t)
	conn := dialTCP(t, echo.Addr())
	msg := []byte("hello through the hole")
	if _, err := conn.Write(msg); err != nil {
		t.Fatal(err)
	}
	if err := conn.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(msg) {
		t.Fatalf("echo = %q, want %q", got, msg)
	}
}
