package faultlab

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/natlab"
	"github.com/pinhole-dev/pinhole/internal/streamtest"
)

// TestLab: the lab carries a TCP stream from the client to the server byte
// for byte; the delay line adds its delay to a round trip and drops what
// it is told to; a blackhole and a link taken down stop every packet
// without a reset; and after MoveClient the server sees the new address.
func TestLab(t *testing.T) {
	lab := New(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ln, err := natlab.Listen(lab.Server, "tcp4", "0.0.0.0:7000")
	if err != nil {
		t.Fatal(err)
	}
	streamtest.NewTargetListener(t, ln)
	echoLn, err := natlab.Listen(lab.Server, "tcp4", "0.0.0.0:7001")
	if err != nil {
		t.Fatal(err)
	}
	streamtest.NewEchoListener(t, echoLn)
	target := netip.AddrPortFrom(ServerAddr, 7000).String()
	echoAddr := netip.AddrPortFrom(ServerAddr, 7001).String()

	exchange := func(t *testing.T, size int64) {
		t.Helper()
		conn, err := natlab.Dial(ctx, lab.Client, "tcp4", target)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if err := streamtest.Exchange(ctx, conn, 1, size, size); err != nil {
			t.Fatal(err)
		}
	}
	rtt := func(t *testing.T) time.Duration {
		t.Helper()
		conn, err := natlab.Dial(ctx, lab.Client, "tcp4", echoAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		b := make([]byte, 64)
		best := time.Hour
		for range 5 {
			began := time.Now()
			if _, err := conn.Write(b); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(conn, b); err != nil {
				t.Fatal(err)
			}
			best = min(best, time.Since(began))
		}
		return best
	}

	t.Run("plain", func(t *testing.T) {
		exchange(t, 4<<20)
		if d := rtt(t); d > 20*time.Millisecond {
			t.Errorf("round trip %v without impairment, want well under 20 ms", d)
		}
	})
	t.Run("delay", func(t *testing.T) {
		lab.Impair(Impairment{Delay: 25 * time.Millisecond})
		defer lab.Impair(Impairment{})
		if d := rtt(t); d < 50*time.Millisecond || d > 80*time.Millisecond {
			t.Errorf("round trip %v with 25 ms each way, want 50-80 ms", d)
		}
	})
	t.Run("loss and reorder", func(t *testing.T) {
		lab.Impair(Impairment{Delay: 5 * time.Millisecond, Loss: 5, Reorder: 10})
		defer lab.Impair(Impairment{})
		_, dropped0 := lab.Counts()
		exchange(t, 1<<20)
		passed, dropped := lab.Counts()
		if dropped == dropped0 {
			t.Errorf("5 %% loss dropped nothing (%d passed)", passed)
		}
	})
	silent := func(t *testing.T, what string) {
		t.Helper()
		dctx, dcancel := context.WithTimeout(ctx, 1500*time.Millisecond)
		defer dcancel()
		conn, err := natlab.Dial(dctx, lab.Client, "tcp4", target)
		if err == nil {
			conn.Close()
			t.Fatalf("%s: a connection got through", what)
		}
		// Unanswered: the dial ran into its deadline. The dial's own
		// timeout may report that a moment before the context does.
		var ne net.Error
		if dctx.Err() == nil && !(errors.As(err, &ne) && ne.Timeout()) {
			t.Fatalf("%s: the dial failed at once (%v), want it unanswered", what, err)
		}
	}
	t.Run("blackhole", func(t *testing.T) {
		if err := lab.Blackhole(ctx, true); err != nil {
			t.Fatal(err)
		}
		defer lab.Blackhole(ctx, false) // also when a check fails, for the subtests after
		silent(t, "blackholed")
		if err := lab.Blackhole(ctx, false); err != nil {
			t.Fatal(err)
		}
		exchange(t, 64<<10)
	})
	t.Run("link down", func(t *testing.T) {
		if err := lab.LinkDown(ctx); err != nil {
			t.Fatal(err)
		}
		defer lab.LinkUp(ctx)
		silent(t, "link down")
		if err := lab.LinkUp(ctx); err != nil {
			t.Fatal(err)
		}
		exchange(t, 64<<10)
	})
	t.Run("move", func(t *testing.T) {
		got := make(chan netip.Addr, 1)
		ln, err := natlab.Listen(lab.Server, "tcp4", "0.0.0.0:7002")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err != nil {
				got <- netip.Addr{}
				return
			}
			got <- c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr().Unmap()
			c.Close()
		}()
		if err := lab.MoveClient(ctx); err != nil {
			t.Fatal(err)
		}
		conn, err := natlab.Dial(ctx, lab.Client, "tcp4", netip.AddrPortFrom(ServerAddr, 7002).String())
		if err != nil {
			t.Fatal(err)
		}
		conn.Close()
		if a := <-got; a != MovedAddr {
			t.Errorf("after the move the server saw %v, want %v", a, MovedAddr)
		}
	})
}
