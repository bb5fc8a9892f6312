// This file is pinhole's, not upstream's: see FORK.md.

package ssh

import (
	"runtime"
	"time"
)

// Writes from many channels share one connection, and each used to reach
// the socket in a write(2) of its own: on loopback each one also runs the
// receiver's TCP stack and wakes its read loop. Instead, a writePacket that
// sees other writers waiting for the transport's lock leaves its sealed
// packet in the write buffer, and the last writer in line flushes them all
// in one write(2). Nobody waits for it: a writer that finds no one behind
// it flushes at once, as before, so a lone packet goes out as soon as it
// did upstream.
//
// Why nothing is left behind: a packet stays in the buffer only while
// writersWaiting > 0, that is while some writePacket has not yet taken mu,
// or while flushPending, that is while a deferredFlush is on its way.
// Each writePacket that takes mu ends by flushing unless yet another is
// waiting or a deferredFlush is;
// the key exchange writes (sendKexInit, kexLoop, enterKeyExchange) always
// flush, which empties the buffer too.

// bufferingTransport is a keyingTransport that can seal a packet into its
// write buffer without writing it out: *transport is one.
type bufferingTransport interface {
	bufferPacket(p []byte) error
	flush() error
}

func (t *transport) bufferPacket(p []byte) error {
	if debugTransport {
		t.printPacket(p, true)
	}
	return t.writer.writePacket(t.bufWriter, t.rand, p, t.strictMode, false)
}

func (t *transport) flush() error { return t.bufWriter.Flush() }

// pushOrBuffer writes p, or only buffers it when another writer waits for
// mu and will flush it, or when it is a small packet whose flush can wait
// for the goroutines already runnable (deferredFlush). t.mu is held.
func (t *handshakeTransport) pushOrBuffer(p []byte) error {
	b, ok := t.conn.(bufferingTransport)
	if !ok {
		return t.pushPacket(p)
	}
	now := nanotime()
	switch {
	case t.writersWaiting.Load() > 0:
		if !deferrable(p) {
			t.urgentBuffered = true // the last writer in line flushes it, pending or not
		}
	case deferrable(p) && now-t.lastFlush < int64(deferBusy):
		if !t.flushPending {
			t.flushPending = true
			go t.deferredFlush()
		}
	default:
		t.lastFlush = now
		return t.pushPacket(p)
	}
	if debugHandshake {
		t.printPacket(p, true)
	}
	return b.bufferPacket(p)
}

// Small packets from many channels at once. On one P (tunnel.CoreBudget)
// goroutines do not overlap, so writers rarely wait for mu, and each
// channel's small packet went out in a write(2) of its own: 64 HTTP
// requests in flight through a name cost 64 SSH writes at each end, and as
// many reads at the other. A small channel packet that finds nobody
// waiting is left in the buffer instead, and a goroutine of its own
// flushes it after the goroutines already runnable have run
// (runtime.Gosched sends it to the back): those that write meanwhile add
// to the same write(2). A lone packet waits for one trip through the
// scheduler; beside a bulk stream, the bulk's next packet flushes it
// sooner. Only a connection that flushed within deferBusy defers: one
// request at a time (a shell, a game's datagrams) goes out at once.
const (
	deferMax  = 2 << 10
	deferBusy = 100 * time.Microsecond
)

// nanotime is a monotonic clock in ns, for lastFlush.
func nanotime() int64 { return int64(time.Since(clockEpoch)) }

var clockEpoch = time.Now()

// deferrable says whether p may wait for deferredFlush: channel data of at
// most deferMax bytes. Not a window adjustment: a bulk sender may be
// waiting for it, and the receiver's busy read loop would hold the flush
// until it yields.
func deferrable(p []byte) bool {
	if len(p) == 0 || len(p) > deferMax {
		return false
	}
	return p[0] == msgChannelData || p[0] == msgChannelExtendedData
}

// deferredFlush is the flush a deferred packet is owed.
func (t *handshakeTransport) deferredFlush() {
	runtime.Gosched()
	t.mu.Lock()
	defer t.mu.Unlock()
	t.flushPending = false
	t.flushLocked()
}

// flushLocked writes out what pushOrBuffer left in the buffer; it costs
// nothing when the buffer is empty. t.mu is held. During a key exchange it
// does nothing: the exchange writes without mu, and sendKexInit flushed
// what was buffered before it began.
func (t *handshakeTransport) flushLocked() error {
	b, ok := t.conn.(bufferingTransport)
	if !ok || t.sentInitMsg != nil {
		return nil
	}
	t.lastFlush = nanotime()
	t.urgentBuffered = false
	if err := b.flush(); err != nil {
		if t.writeError == nil {
			t.writeError = err
			t.writeCond.Broadcast()
		}
		return err
	}
	return nil
}

// flushBeforeClose writes out a deferred packet before the connection
// closes: data a channel wrote just before Close is sent, as it was when
// every packet went out at once. It does not wait for mu: a writer stuck
// on a peer that reads nothing holds it, and Close is what frees it.
func (t *handshakeTransport) flushBeforeClose() {
	if !t.mu.TryLock() {
		return
	}
	defer t.mu.Unlock()
	if t.flushPending {
		t.flushLocked()
	}
}
