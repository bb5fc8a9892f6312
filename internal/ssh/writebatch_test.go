// This file is pinhole's, not upstream's: see FORK.md.

package ssh

import (
	"sync"
	"testing"
)

// TestWriteBatchDelivers: many goroutines write at once, so that packets
// are left in the buffer for a later writer to flush, while key exchanges
// run in between; every packet arrives, each writer's in its order.
func TestWriteBatchDelivers(t *testing.T) {
	const writers, each = 8, 400
	trC, trS, err := handshakePair(&ClientConfig{HostKeyCallback: InsecureIgnoreHostKey()}, "addr", false)
	if err != nil {
		t.Fatalf("handshakePair: %v", err)
	}
	defer trC.Close()
	defer trS.Close()

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
				if err := trC.writePacket([]byte{msgRequestSuccess, byte(w), byte(i >> 8), byte(i)}); err != nil {
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
		if len(p) != 4 || p[0] != msgRequestSuccess || int(p[1]) >= writers {
			t.Fatalf("packet %d: unexpected %v", n, p)
		}
		w, i := int(p[1]), int(p[2])<<8|int(p[3])
		if i != next[w] {
			t.Fatalf("writer %d: got packet %d, want %d", w, i, next[w])
		}
		next[w]++
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}
