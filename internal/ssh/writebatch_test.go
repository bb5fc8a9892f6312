// This file is pinhole's, not upstream's: see FORK.md.

package ssh

import (
	"crypto/rand"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestWriteBatchDelivers: many goroutines write at once, so that packets
// are left in the buffer for a later writer to flush, while key exchanges
// run in between; every packet arrives, each writer's in its order.
func TestWriteBatchDelivers(t *testing.T) {
	writeAtOnce(t, func(w, i int) []byte {
		return []byte{msgRequestSuccess, byte(w), byte(i >> 8), byte(i)}
	})
}

// TestWriteDeferredDelivers: the same with small channel packets, which
// wait for deferredFlush, and large ones, which flush at once; afterwards a
// lone small packet still arrives (nothing is stranded in the buffer).
func TestWriteDeferredDelivers(t *testing.T) {
	trC, trS := writeAtOnce(t, func(w, i int) []byte {
		size := 8
		if i%7 == 3 {
			size = deferMax + 100
		}
		p := make([]byte, size)
		p[0], p[1], p[2], p[3] = msgChannelData, byte(w), byte(i>>8), byte(i)
		return p
	})
	if err := trC.writePacket([]byte{msgChannelData, 0, 0, 0}); err != nil {
		t.Fatal(err)
	}
	if p, err := trS.readPacket(); err != nil || p[0] != msgChannelData {
		t.Fatalf("the lone packet after the rest: %v, %v", p, err)
	}
}

// writeAtOnce has 8 goroutines write 400 packets each, packet(w, i), with
// key exchanges in between, and checks that every packet arrives, each
// writer's in order. It returns the pair, open until the test ends.
func writeAtOnce(t *testing.T, packet func(w, i int) []byte) (trC, trS *handshakeTransport) {
	const writers, each = 8, 400
	trC, trS, err := handshakePair(&ClientConfig{HostKeyCallback: InsecureIgnoreHostKey()}, "addr", false)
	if err != nil {
		t.Fatalf("handshakePair: %v", err)
	}
	t.Cleanup(func() { trC.Close(); trS.Close() })
	// A packet stranded in the buffer would leave readPacket waiting:
	// closing both ends ends the wait, and the test fails.
	watchdog := time.AfterFunc(20*time.Second, func() { trC.Close(); trS.Close() })
	defer watchdog.Stop()

	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if w == 0 && i%100 == 50 {
					trC.requestKeyExchange()
				}
				if err := trC.writePacket(packet(w, i)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}

	next := make([]int, writers)
	for n := 0; n < writers*each; n++ {
		p, err := trS.readPacket()
		if err != nil {
			t.Fatalf("after %d packets: %v", n, err)
		}
		want := packet(0, 0)[0]
		if len(p) < 4 || p[0] != want || int(p[1]) >= writers {
			t.Fatalf("packet %d: unexpected %v", n, p[:min(len(p), 8)])
		}
		w, i := int(p[1]), int(p[2])<<8|int(p[3])
		if i != next[w] || len(p) != len(packet(w, i)) {
			t.Fatalf("writer %d: got packet %d of %d bytes, want packet %d", w, i, len(p), next[w])
		}
		next[w]++
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return trC, trS
}

// writeCounter counts the writes that reach a connection.
type writeCounter struct {
	net.Conn
	writes atomic.Int64
}

func (c *writeCounter) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// TestWriteDeferredBatches: on one P, 64 goroutines that each write a
// small channel packet at the same moment (as 64 answers woken by one
// trip through the poller do) reach the socket in a few writes, not 64.
func TestWriteDeferredBatches(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	const writers = 64
	a, b, err := netPipe()
	if err != nil {
		t.Fatal(err)
	}
	counted := &writeCounter{Conn: a}
	conf := &ClientConfig{HostKeyCallback: InsecureIgnoreHostKey()}
	conf.SetDefaults()
	v := []byte("version")
	trC := newClientTransport(newTransport(counted, rand.Reader, true), v, v, conf, "addr", a.RemoteAddr())
	serverConf := &ServerConfig{}
	serverConf.AddHostKey(testSigners["ecdsa"])
	serverConf.SetDefaults()
	trS := newServerTransport(newTransport(b, rand.Reader, false), v, v, serverConf)
	defer trC.Close()
	defer trS.Close()
	if err := trS.waitSession(); err != nil {
		t.Fatal(err)
	}
	if err := trC.waitSession(); err != nil {
		t.Fatal(err)
	}

	start := make(chan struct{})
	errs := make(chan error, writers)
	for w := range writers {
		go func() {
			<-start
			errs <- trC.writePacket([]byte{msgChannelData, byte(w), 0, 0, 0, 0, 0, 0})
		}()
	}
	runtime.Gosched() // the writers wait on start
	before := counted.writes.Load()
	close(start)
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for n := range writers {
		if _, err := trS.readPacket(); err != nil {
			t.Fatalf("after %d packets: %v", n, err)
		}
	}
	writes := counted.writes.Load() - before
	t.Logf("%d small packets from %d goroutines in %d writes", writers, writers, writes)
	if writes > writers/4 {
		t.Fatalf("%d small packets written at once took %d writes, want at most %d", writers, writes, writers/4)
	}
}

// TestWriteDeferredBeforeClose: a small packet left for deferredFlush is
// still sent when the transport closes before that goroutine has run (on
// one P, the writer goes on to Close without yielding).
func TestWriteDeferredBeforeClose(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	trC, trS, err := handshakePair(&ClientConfig{HostKeyCallback: InsecureIgnoreHostKey()}, "addr", false)
	if err != nil {
		t.Fatalf("handshakePair: %v", err)
	}
	defer trS.Close()
	watchdog := time.AfterFunc(20*time.Second, func() { trS.Close() })
	defer watchdog.Stop()
	if err := trC.writePacket([]byte{msgChannelData, 1}); err != nil { // flushes: the connection was idle
		t.Fatal(err)
	}
	if err := trC.writePacket([]byte{msgChannelData, 2}); err != nil { // deferred: it wrote just now
		t.Fatal(err)
	}
	trC.Close()
	for i := byte(1); i <= 2; i++ {
		p, err := trS.readPacket()
		if err != nil || len(p) != 2 || p[1] != i {
			t.Fatalf("packet %d, written before Close: %v, %v", i, p, err)
		}
	}
}
