package rawio

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/streamtest"
)

// TestPollYieldRunsWhatThePollerWakes: on one P, a goroutine that only
// calls pollYield still lets a goroutine waiting for its socket run once
// data arrives. Gosched alone would not: the woken reader is found only
// by the poller, which the scheduler consults when it runs out of work or
// sysmon finds it unpolled for 10 ms, and a loop of Gosched never runs out.
func TestPollYieldRunsWhatThePollerWakes(t *testing.T) {
	if !supported {
		t.Skip("rawio: no raw socket calls on " + runtime.GOOS)
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	c1, c2 := streamtest.TCPPair(t)

	var ran atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		var b [1]byte
		if _, err := c2.Read(b[:]); err == nil {
			ran.Store(true)
		}
	}()
	time.Sleep(20 * time.Millisecond) // the reader waits in the poller
	if _, err := c1.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	yields := 0
	for ; yields < 100 && !ran.Load(); yields++ {
		pollYield()
	}
	if !ran.Load() {
		t.Fatalf("a reader whose data had arrived did not run in %d yields", yields)
	}
	t.Logf("the reader ran after %d yields", yields)
	<-done
}

// TestBusyYields: a reader that has found data at once for busyBudget
// yields and starts counting again; one that waited starts again at once.
func TestBusyYields(t *testing.T) {
	var b busy
	b.read(false)
	first := b.since
	if first == 0 {
		t.Fatal("the first Read did not start the count")
	}
	b.read(false)
	if b.since != first {
		t.Fatal("a Read within the budget restarted the count")
	}
	b.since -= int64(2 * busyBudget)
	old := b.since
	b.read(false)
	if b.since <= old+int64(busyBudget) {
		t.Fatalf("a reader busy for twice the budget did not yield and start again (since %d, was %d)", b.since, old)
	}
	b.since = old
	b.read(true)
	if b.since <= old {
		t.Fatal("a Read that waited did not restart the count")
	}
}

// TestFailedReadIsNotBusy: a Read that ends in an error found no data, so
// it neither yields nor keeps a streak going. net/http ends the read it
// waits in behind each request with a deadline in the past, at the first
// try; counted as data found at once, it made each public HTTP connection
// yield once a request (three system calls and a trip through the poller).
func TestFailedReadIsNotBusy(t *testing.T) {
	if !supported {
		t.Skip("rawio: no raw socket calls on " + runtime.GOOS)
	}
	tc, _ := streamtest.TCPPair(t)
	r := NewReader(tc).(*reader)
	r.busy.since = int64(time.Since(epoch)) - int64(10*busyBudget)
	if err := tc.SetReadDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	var b [8]byte
	if _, err := r.Read(b[:]); err == nil {
		t.Fatal("a Read past its deadline returned no error")
	}
	if r.busy.since != 0 {
		t.Fatalf("a Read that failed left the busy streak at %d, not ended", r.busy.since)
	}
}
