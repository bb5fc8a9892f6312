package tunnel

import (
	"sync"
)

// CoreBudget sets GOMAXPROCS to the number of SSH connections the process
// holds (at least 1, at most a limit), as OpenSSH runs each connection in
// one single-threaded process. The command line makes one for the whole
// process and hands it to its Server and Clients (ServerConfig.Cores,
// ClientConfig.Cores); a library user who wants GOMAXPROCS left alone
// passes none.
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
// Setting GOMAXPROCS turns off the runtime's own updates of it from a
// cgroup CPU limit; the limit given here is what that gave at start.
type CoreBudget struct {
	mu    sync.Mutex
	limit int
	held  int
	set   func(int) int // runtime.GOMAXPROCS, or a stand-in in tests
	now   int           // what set was last given
}

// NewCoreBudget returns a budget of at most limit cores, applied through
// set (runtime.GOMAXPROCS).
func NewCoreBudget(limit int, set func(int) int) *CoreBudget {
	return &CoreBudget{limit: max(limit, 1), set: set, now: limit}
}

// Hold counts one more connection until release is called; calling release
// more than once counts once. On a nil budget it does nothing.
func (b *CoreBudget) Hold() (release func()) {
	if b == nil {
		return func() {}
	}
	b.add(1)
	var once sync.Once
	return func() { once.Do(func() { b.add(-1) }) }
}

func (b *CoreBudget) add(d int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.held += d
	if want := min(max(b.held, 1), b.limit); want != b.now {
		b.set(want)
		b.now = want
	}
}
