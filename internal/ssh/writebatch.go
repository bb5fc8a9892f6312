// This file is pinhole's, not upstream's: see FORK.md.

package ssh

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
// writersWaiting > 0, that is while some writePacket has not yet taken mu.
// Each one that takes it ends by flushing unless yet another is waiting;
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
// mu and will flush it. t.mu is held.
func (t *handshakeTransport) pushOrBuffer(p []byte) error {
	if b, ok := t.conn.(bufferingTransport); ok && t.writersWaiting.Load() > 0 {
		if debugHandshake {
			t.printPacket(p, true)
		}
		return b.bufferPacket(p)
	}
	return t.pushPacket(p)
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
	if err := b.flush(); err != nil {
		if t.writeError == nil {
			t.writeError = err
			t.writeCond.Broadcast()
		}
		return err
	}
	return nil
}
