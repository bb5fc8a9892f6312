// Copyright 2012 The Go Authors. All rights reserved.
// Use of this source code is governed by a BSD-style
// license that can be found in the LICENSE file.

package ssh

import (
	"io"
	"sync"
)

// buffer provides a linked list buffer for data exchange
// between producer and consumer. Theoretically the buffer is
// of unlimited capacity as it does no allocation of its own.
type buffer struct {
	// protects concurrent access to head, tail and closed
	*sync.Cond

	head *element // the buffer that will be read first
	tail *element // the buffer that will be read last

	closed bool

	// draining is set while a sink's drainer runs, sinkOn from the
	// sink's start to its end (pinhole's, for sink.go).
	draining bool
	sinkOn   bool
}

// An element represents a single link in a linked list.
type element struct {
	buf  []byte
	next *element
}

// newBuffer returns an empty buffer that is not closed.
func newBuffer() *buffer {
	e := new(element)
	b := &buffer{
		Cond: newCond(),
		head: e,
		tail: e,
	}
	return b
}

// write makes buf available for Read to receive.
// buf must not be modified after the call to write.
func (b *buffer) write(buf []byte) {
	b.Cond.L.Lock()
	b.append(buf)
	b.Cond.L.Unlock()
}

// eof closes the buffer. Reads from the buffer once all
// the data has been consumed will receive io.EOF.
func (b *buffer) eof() {
	b.Cond.L.Lock()
	b.closed = true
	b.Cond.Signal()
	b.Cond.L.Unlock()
}

// Read reads data from the internal buffer in buf.  Reads will block
// if no data is available, or until the buffer is closed.
func (b *buffer) Read(buf []byte) (n int, err error) {
	b.Cond.L.Lock()
	defer b.Cond.L.Unlock()

	for len(buf) > 0 {
		// if there is data in b.head, copy it
		if len(b.head.buf) > 0 {
			r := copy(buf, b.head.buf)
			buf, b.head.buf = buf[r:], b.head.buf[r:]
			n += r
			continue
		}
		// if there is a next buffer, make it the head
		if len(b.head.buf) == 0 && b.head != b.tail {
			b.head = b.head.next
			continue
		}

		// if at least one byte has been copied, return
		if n > 0 {
			break
		}

		// if nothing was read, and there is nothing outstanding
		// check to see if the buffer is closed.
		if b.closed {
			err = io.EOF
			break
		}
		// out of buffers, wait for producer
		b.Cond.Wait()
	}
	return
}

// The methods below are pinhole's, for sink.go: they keep the queue and
// whether a drainer runs under one lock. Invariant: data waits in the
// buffer only while draining is set.

// claim reports whether the read loop may write data to the sink itself:
// nothing waits and no drainer runs. Otherwise it queues data.
func (b *buffer) claim(data []byte) bool {
	b.Cond.L.Lock()
	defer b.Cond.L.Unlock()
	if !b.draining && !b.queued() {
		return true
	}
	b.append(data)
	return false
}

// queueAndDrain queues what the socket did not take; the caller starts the
// drainer.
func (b *buffer) queueAndDrain(data []byte) {
	b.Cond.L.Lock()
	defer b.Cond.L.Unlock()
	b.append(data)
	b.draining = true
}

// queued reports whether data waits; b's lock is held.
func (b *buffer) queued() bool {
	return len(b.head.buf) > 0 || b.head != b.tail
}

// append adds buf at the tail; b's lock is held.
func (b *buffer) append(buf []byte) {
	e := &element{buf: buf}
	b.tail.next = e
	b.tail = e
	b.Cond.Signal()
}

// takeOrStop takes everything that waits, in order; when nothing does, the
// drainer stops (nil) and learns whether the buffer is closed.
func (b *buffer) takeOrStop() (bufs [][]byte, closed bool) {
	b.Cond.L.Lock()
	defer b.Cond.L.Unlock()
	for e := b.head; e != nil; e = e.next {
		if len(e.buf) > 0 {
			bufs = append(bufs, e.buf)
		}
	}
	if bufs == nil {
		b.draining = false
		return nil, b.closed
	}
	e := new(element)
	b.head, b.tail = e, e
	return bufs, false
}

// stopDraining is for a drainer that gives up on an error.
func (b *buffer) stopDraining() {
	b.Cond.L.Lock()
	b.draining = false
	b.Cond.L.Unlock()
}

// startSink reports whether data already waits (then a drainer must start,
// and draining is set) or, if not, whether the buffer is closed. From now
// on writeIfNoSink refuses data, until endSink.
func (b *buffer) startSink() (queued, closed bool) {
	b.Cond.L.Lock()
	defer b.Cond.L.Unlock()
	b.sinkOn = true
	if b.queued() {
		b.draining = true
		return true, false
	}
	return false, b.closed
}

// writeIfNoSink queues data as write does, unless a sink has started.
func (b *buffer) writeIfNoSink(data []byte) bool {
	b.Cond.L.Lock()
	defer b.Cond.L.Unlock()
	if b.sinkOn {
		return false
	}
	b.append(data)
	return true
}

// endSink is called when a sink finishes: data is queued as usual again.
func (b *buffer) endSink() {
	b.Cond.L.Lock()
	b.sinkOn = false
	b.Cond.L.Unlock()
}

// idle reports whether the buffer is closed with no drainer running and no
// data waiting (data queued before the sink started waits for the drainer
// that startSink starts).
func (b *buffer) idle() bool {
	b.Cond.L.Lock()
	defer b.Cond.L.Unlock()
	return b.closed && !b.draining && !b.queued()
}

// isClosed reports whether eof was called (for tests).
func (b *buffer) isClosed() bool {
	b.Cond.L.Lock()
	defer b.Cond.L.Unlock()
	return b.closed
}

// empty reports whether nothing is queued (for tests).
func (b *buffer) empty() bool {
	b.Cond.L.Lock()
	defer b.Cond.L.Unlock()
	return !b.queued()
}
