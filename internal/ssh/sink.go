// This file is pinhole's, not upstream's: see FORK.md.

package ssh

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
)

// A sink is a TCP connection that a channel's arriving data is written into
// straight from the connection's read loop, without waking a goroutine or
// copying the data again, for as long as the socket takes it without
// blocking. What it does not take waits in the channel's buffer for
// WriteToTCP's goroutine, which writes it with ordinary blocking writes.
//
// Order: data is written to the socket only by a holder of mu, and only the
// holder of mu takes data out of the buffer; the read loop writes directly
// only when the buffer is empty. So everything is written in arrival order.
type sink struct {
	mu   sync.Mutex
	conn *net.TCPConn
	raw  syscall.RawConn
}

// tryWrite writes as much of p as the socket takes at once, without
// blocking, and says how much that was. Errors count as nothing written:
// WriteToTCP's blocking write meets them again and reports them.
func (s *sink) tryWrite(p []byte) int {
	var n int
	err := s.raw.Write(func(fd uintptr) bool {
		for n < len(p) {
			m, err := syscall.Write(int(fd), p[n:])
			if m <= 0 || err != nil {
				break
			}
			n += m
		}
		return true // never wait for the socket: leave the rest queued
	})
	if err != nil {
		return 0
	}
	return n
}

// deliver offers data that arrived on ch to its sink, if it has one. It runs
// on the read loop and never blocks on the network. It reports whether it
// took care of data: written to the socket, or queued behind data that is
// already waiting.
func (ch *channel) deliver(data []byte) bool {
	s := ch.sink.Load()
	if s == nil || !s.mu.TryLock() {
		return false
	}
	defer s.mu.Unlock()
	if !ch.pending.empty() {
		return false // older data first
	}
	n := s.tryWrite(data)
	if n > 0 {
		ch.consumed(uint32(n))
	}
	if n < len(data) {
		// The packet is this channel's own copy (the transport hands
		// out a fresh slice for each), so the rest can wait as it is.
		ch.pending.write(data[n:])
	}
	return true
}

// consumed counts n bytes as read by the application. It runs on the read
// loop, which must never block on a write (both ends of a connection could
// wait for each other), so a window adjustment that is due is sent by
// WriteToTCP's goroutine, woken for it.
func (ch *channel) consumed(n uint32) {
	ch.windowMu.Lock()
	ch.myConsumed += n
	due := ch.myConsumed >= windowAdjustEvery
	ch.windowMu.Unlock()
	if due {
		ch.pending.wake()
	}
}

// WriteToTCP copies the channel's data to c until the peer sends EOF, as a
// loop of Read and c.Write would, but lets the connection's read loop write
// into c directly while c's socket has room (pinhole's fork: one goroutine
// hand-off and one copy fewer per packet). It returns the number of bytes
// written by its own goroutine (those written from the read loop are not
// counted) and nil at EOF. Only one WriteToTCP or Read may run on a channel.
func (ch *channel) WriteToTCP(c *net.TCPConn) (int64, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	s := &sink{conn: c, raw: raw}
	ch.sink.Store(s)
	defer ch.sink.Store(nil)

	var written int64
	for {
		closed, err := ch.pending.waitData()
		if err != nil {
			return written, err
		}
		// A due window adjustment, or one for what was written below.
		if err := ch.adjustWindow(0); err != nil && !errors.Is(err, io.EOF) {
			return written, err
		}
		s.mu.Lock()
		bufs := ch.pending.takeAll()
		var n int
		var werr error
		for _, b := range bufs {
			var m int
			m, werr = c.Write(b)
			n += m
			if werr != nil {
				break
			}
		}
		s.mu.Unlock()
		written += int64(n)
		if n > 0 {
			if err := ch.adjustWindow(uint32(n)); err != nil && !errors.Is(err, io.EOF) {
				return written, err
			}
		}
		if werr != nil {
			return written, werr
		}
		if closed && len(bufs) == 0 {
			return written, nil
		}
	}
}

// sinkPointer is the type of channel.sink.
type sinkPointer = atomic.Pointer[sink]
