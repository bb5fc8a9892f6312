package rawio

import (
	"runtime"
	"time"
)

// Why a busy reader yields to the poller. The Go scheduler looks at the
// network poller only when a P runs out of goroutines to run, or when its
// sysmon thread finds that nobody has looked for 10 ms. A pinhole process
// runs on one P per SSH connection (tunnel.CoreBudget), and a bulk stream
// keeps a goroutine on it busy without ever waiting: the read loop of the
// receiving end always finds the next packet in its socket, the copier of
// the sending end always finds more of the download. A connection beside
// it whose socket became readable then waits for sysmon, up to 10 ms at
// each end, and an SSH session or a game's datagrams through the same
// tunnel as a download felt it: 4.5 ms p50 and 8–12 ms p99 round trips
// (BENCHMARKS.md, "Latency beside a download").
//
// So a Read that has found data at once for busyBudget in a row, without
// waiting in the poller, first yields to it (pollYield): the goroutine
// waits for an event it makes itself, which puts the P through the poller,
// so that every connection that became readable meanwhile runs before the
// busy one goes on. A yield costs a few µs, about 1 % at the budget.
const busyBudget = 200 * time.Microsecond

// busy is since when one reader has found data without waiting, in
// monotonic ns after epoch (8 bytes, not a time.Time's 24: there is one
// per forwarded connection). Its zero value is ready; it belongs to the
// reader's goroutine, as the reader does.
type busy struct{ since int64 }

var epoch = time.Now()

// read notes a Read that waited in the poller (waited) or found its data
// at once, and yields to the poller once the reader has been busy for
// busyBudget.
func (b *busy) read(waited bool) {
	now := int64(time.Since(epoch))
	switch {
	case waited || b.since == 0:
		b.since = now
	case time.Duration(now-b.since) >= busyBudget:
		pollYield()
		b.since = int64(time.Since(epoch))
	}
}

// idle notes a Read that brought no data (an error, a deadline, the end):
// the reader is not busy, and the next Read that finds data at once starts
// a new streak.
func (b *busy) idle() { b.since = 0 }

// goschedYield is pollYield where there is no event of our own to wait
// for: it lets the goroutines already runnable go first, though not the
// ones the poller would wake.
func goschedYield() { runtime.Gosched() }
