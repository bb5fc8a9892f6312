package tunnel

import (
	"os"
	"runtime"
	"sync"
)

// cores sets GOMAXPROCS to the number of SSH connections the process holds
// (at least 1, at most what GOMAXPROCS was at start), as OpenSSH runs each
// connection in one single-threaded process.
//
// One connection's data path is a chain of goroutines (the transport's
// reader decrypts, the mux loop writes into the target socket) in which
// every packet is handed from one to the next. On more than one P each
// hand-off wakes another thread (a futex call) which spins and steals the
// goroutine; on one P it is a plain goroutine switch. Measured on a 2-core
// machine under iperf3, an OpenSSH client sending to pinhole server went
// from 0.8× to 1.2× OpenSSH ↔ OpenSSH with this, and pinhole ↔ pinhole
// from 1.8× to 2.2× (BENCHMARKS.md). A server with many clients still uses
// every core: one per connection.
//
// A GOMAXPROCS set in the environment is the user's choice and is left as
// it is. Setting GOMAXPROCS turns off the runtime's own updates of it from
// a cgroup CPU limit; the ceiling here is what that limit gave at start.
var cores = newCoreBudget(os.Getenv("GOMAXPROCS") == "", runtime.GOMAXPROCS(0), runtime.GOMAXPROCS)

type coreBudget struct {
	mu    sync.Mutex
	limit int // 0: leave GOMAXPROCS alone
	held  int
	set   func(int) int // runtime.GOMAXPROCS, or a stand-in in tests
	now   int           // what set was last given
}

func newCoreBudget(adapt bool, limit int, set func(int) int) *coreBudget {
	if !adapt {
		limit = 0
	}
	return &coreBudget{limit: limit, set: set, now: limit}
}

// hold counts one more connection until release is called; calling
// release more than once counts once.
func (b *coreBudget) hold() (release func()) {
	b.add(1)
	var once sync.Once
	return func() { once.Do(func() { b.add(-1) }) }
}

func (b *coreBudget) add(d int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.held += d
	if b.limit == 0 {
		return
	}
	if want := min(max(b.held, 1), b.limit); want != b.now {
		b.set(want)
		b.now = want
	}
}
