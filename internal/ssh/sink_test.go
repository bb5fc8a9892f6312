package ssh

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/streamtest"
)

// tcpPair returns both ends of a loopback TCP connection, b with a fixed
// receive buffer, so that while b's reader stalls the sink's non-blocking
// writes into a come up short.
func tcpPair(t *testing.T) (a, b *net.TCPConn) {
	a, b = streamtest.TCPPair(t)
	// A fixed receive buffer (no autotuning), larger than loopback's
	// 64 KiB MSS so that TCP does not fall back on its persist timer.
	b.SetReadBuffer(256 << 10)
	return a, b
}

// TestWriteToTCPOrder sends data through a channel into a TCP socket whose
// reader is slow and uneven, so that the read loop's direct writes, the
// queue behind them and WriteToTCP's own writes all take turns, and checks
// that every byte arrives once and in order.
func TestWriteToTCPOrder(t *testing.T) {
	w, r, mux := channelPair(t)
	defer w.Close()
	defer r.Close()
	defer mux.Close()

	a, b := tcpPair(t)
	want := make([]byte, 8<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range want {
		want[i] = byte(rng.Uint32())
	}

	copied := make(chan error, 1)
	go func() {
		_, err := writeToTCP(r, a)
		a.CloseWrite()
		copied <- err
	}()
	go func() {
		rng := rand.New(rand.NewPCG(3, 4)) // the writer's own
		rest := want
		for i := 0; len(rest) > 0; i++ {
			if i%8 == 0 {
				time.Sleep(2 * time.Millisecond) // let the queue drain now and then
			}
			n := min(len(rest), 1+rng.IntN(200<<10))
			if _, err := w.Write(rest[:n]); err != nil {
				t.Errorf("channel write: %v", err)
				return
			}
			rest = rest[n:]
		}
		w.CloseWrite()
	}()

	var got bytes.Buffer
	buf := make([]byte, 64<<10)
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; ; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d bytes arrived in 60 s", got.Len(), len(want))
		}
		if i%100 == 0 {
			time.Sleep(10 * time.Millisecond) // a reader that stalls now and then
		}
		n, err := b.Read(buf[:1+rng.IntN(len(buf))])
		got.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := <-copied; err != nil {
		t.Fatalf("WriteToTCP: %v", err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		i := 0
		for i < min(got.Len(), len(want)) && got.Bytes()[i] == want[i] {
			i++
		}
		t.Fatalf("got %d bytes, want %d; first difference at byte %d", got.Len(), len(want), i)
	}
}

// TestWriteToTCPStartRace starts the sink while the peer's data and EOF
// arrive: before it, during it, after it. Every byte must come out, then
// EOF, whichever goroutine wins.
func TestWriteToTCPStartRace(t *testing.T) {
	for i := range 200 {
		w, r, mux := channelPair(t)
		a, b := tcpPair(t)
		msg := bytes.Repeat([]byte{byte(i)}, 64+i)
		wrote := make(chan struct{})
		go func() {
			defer close(wrote)
			if i%3 == 0 {
				time.Sleep(time.Duration(i%50) * time.Microsecond)
			}
			w.Write(msg)
			w.CloseWrite()
		}()
		if i%2 == 0 {
			<-wrote // data and EOF first, then the sink
			for !r.pending.isClosed() {
				time.Sleep(100 * time.Microsecond)
			}
		}
		if _, err := writeToTCP(r, a); err != nil {
			t.Fatalf("round %d: WriteToTCP: %v", i, err)
		}
		a.CloseWrite()
		b.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(b)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("round %d: got %d bytes (%v), want %d", i, len(got), err, len(msg))
		}
		<-wrote
		w.Close()
		r.Close()
		mux.Close()
		a.Close()
		b.Close()
	}
}

// TestWriteToTCPEOFWhileStarting: data queued before the sink starts, and
// the peer's EOF arriving while it starts, must come out as data then EOF,
// not as an EOF that overtakes the data.
func TestWriteToTCPEOFWhileStarting(t *testing.T) {
	w, r, mux := channelPair(t)
	defer mux.Close()
	a, b := tcpPair(t)
	msg := []byte("queued before the sink started")
	if _, err := w.Write(msg); err != nil {
		t.Fatal(err)
	}
	for r.pending.empty() {
		time.Sleep(100 * time.Microsecond)
	}
	r.sinkStoredHook = func() {
		w.CloseWrite()
		for !r.pending.isClosed() {
			time.Sleep(100 * time.Microsecond)
		}
		time.Sleep(10 * time.Millisecond) // let the read loop's EOF handling finish
	}
	if _, err := writeToTCP(r, a); err != nil {
		t.Fatalf("WriteToTCP: %v", err)
	}
	a.CloseWrite()
	b.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(b)
	if err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("got %q (%v), want %q", got, err, msg)
	}
}

// writeToTCP is StartWriteToTCP that waits: it returns when done would be
// called, with the same results. It fails the copy when the running count
// does not end equal to what done reports.
func writeToTCP(ch *channel, c *net.TCPConn) (int64, error) {
	type result struct {
		n   int64
		err error
	}
	res := make(chan result, 1)
	var count atomic.Int64
	count.Store(1000) // a shared count has others' bytes in it already
	if err := ch.StartWriteToTCP(c, &count, func(n int64, err error) { res <- result{n, err} }); err != nil {
		return 0, err
	}
	r := <-res
	if got := count.Load() - 1000; got != r.n {
		return r.n, fmt.Errorf("the running count grew by %d, done reported %d", got, r.n)
	}
	return r.n, r.err
}
