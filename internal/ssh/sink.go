// This file is pinhole's, not upstream's: see FORK.md.

package ssh

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/pinhole-dev/pinhole/internal/rawio"
)

// A sink is a TCP connection that a channel's arriving data is copied into
// without a goroutine of its own while nothing waits: the connection's read
// loop writes each data packet straight into the socket for as long as the
// socket takes it without blocking. What it does not take is queued in the
// channel's buffer, and a goroutine is started that writes the queue with
// ordinary blocking writes and ends when the queue is empty.
//
// Order: the read loop writes directly only when the queue is empty and no
// drainer runs (buffer.claim); a drainer, once started, takes everything
// that arrives until it finds the queue empty, and only then stops
// (buffer.takeOrStop). Both decisions are made under the buffer's lock, so
// at most one goroutine writes to the socket at a time, in arrival order.
type sink struct {
	conn *net.TCPConn
	raw  syscall.RawConn
	ch   *channel

	written atomic.Int64  // by drainers; the read loop's writes add too
	count   *atomic.Int64 // the caller's running count, or nil
	once    sync.Once
	done    func(n int64, err error)
}

// tryWrite writes as much of p as the socket takes at once, without
// blocking, and says how much that was. Errors count as nothing written:
// the drainer's blocking write meets them again and reports them.
func (s *sink) tryWrite(p []byte) int {
	var n int
	err := s.raw.Write(func(fd uintptr) bool {
		for n < len(p) {
			m, err := rawio.WriteOnce(fd, p[n:])
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

// add counts n more bytes written into the socket.
func (s *sink) add(n int) {
	s.written.Add(int64(n))
	if s.count != nil {
		s.count.Add(int64(n))
	}
}

// finish reports the end of the copy, once.
func (s *sink) finish(err error) {
	s.once.Do(func() {
		s.ch.pending.endSink()
		s.ch.sink.Store(nil)
		s.done(s.written.Load(), err)
	})
}

// drain runs while data is queued: it writes the queue into the socket and
// ends when the queue is empty, finishing the copy if the peer's EOF came.
func (s *sink) drain() {
	ch := s.ch
	for {
		bufs, closed := ch.pending.takeOrStop()
		if bufs == nil {
			if closed {
				s.finish(nil)
			}
			// A window adjustment the read loop's writes made due.
			ch.adjustWindow(0)
			return
		}
		var n int
		for _, b := range bufs {
			m, err := s.conn.Write(b)
			n += m
			if err == nil {
				recyclePacket(b)
			} else {
				s.add(n)
				ch.pending.stopDraining()
				s.finish(err)
				return
			}
		}
		s.add(n)
		if err := ch.adjustWindow(uint32(n)); err != nil && !errors.Is(err, io.EOF) {
			ch.pending.stopDraining()
			s.finish(err)
			return
		}
	}
}

// deliver takes data that arrived on ch: to its sink, if it has one, or
// into the buffer for Read. It runs on the read loop and never blocks on the
// network.
func (ch *channel) deliver(data []byte) {
	s := ch.sink.Load()
	if s == nil {
		// No sink, as far as this load saw; but one may be starting
		// right now, after its startSink looked at the queue. The
		// buffer's lock decides: queued before startSink, the drainer
		// it starts takes the data; after, the sink takes it.
		if ch.pending.writeIfNoSink(data) {
			return
		}
		if s = ch.sink.Load(); s == nil {
			// The sink finished in the meantime: queue as usual.
			ch.pending.write(data)
			return
		}
	}
	if !ch.pending.claim(data) {
		return // queued behind older data, which a drainer writes
	}
	n := s.tryWrite(data)
	if n > 0 {
		s.add(n)
		ch.consumed(uint32(n))
	}
	if n == len(data) {
		recyclePacket(data)
	} else {
		// The packet is this channel's own (the transport hands out a
		// new slice for each), so the rest can wait as it is.
		ch.pending.queueAndDrain(data[n:])
		go s.drain()
	}
}

// consumed counts n bytes as read by the application. It runs on the read
// loop, which must never block on a write (both ends of a connection could
// wait for each other), so a window adjustment that is due is sent from a
// goroutine of its own.
func (ch *channel) consumed(n uint32) {
	ch.windowMu.Lock()
	ch.myConsumed += n
	due := ch.myConsumed >= windowAdjustEvery
	ch.windowMu.Unlock()
	if due {
		go ch.adjustWindow(0)
	}
}

// sinkEOF is called after the peer's EOF or the channel's end was put in
// the buffer: with no drainer running, the copy is finished now.
func (ch *channel) sinkEOF() {
	if s := ch.sink.Load(); s != nil && ch.pending.idle() {
		s.finish(nil)
	}
}

// StartWriteToTCP copies the channel's data into c until the peer sends EOF,
// as a loop of Read and c.Write would, without a goroutine while no data
// waits (pinhole's fork). done is called once, with the bytes written: with
// a nil error after the peer's EOF (or the channel's end) once everything
// before it is in c, or with the first write error. done may run on the
// connection's read loop and must not block: CloseWrite or Close on c and a
// send on a buffered channel are fine, writing to the SSH connection is not.
// No Read or other copy may run on the channel at the same time. count, if
// not nil, has every write's bytes added as they go into c, so that a
// reader can watch a long copy move.
func (ch *channel) StartWriteToTCP(c *net.TCPConn, count *atomic.Int64, done func(n int64, err error)) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	s := &sink{conn: c, raw: raw, ch: ch, count: count, done: done}
	ch.sink.Store(s)
	if ch.sinkStoredHook != nil {
		ch.sinkStoredHook() // tests: what arrives between the two steps
	}
	// Data, or the EOF, may have come before the sink.
	switch queued, closed := ch.pending.startSink(); {
	case queued:
		go s.drain()
	case closed:
		s.finish(nil)
	}
	return nil
}
