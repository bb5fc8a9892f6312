// This file is pinhole's, not upstream's: see FORK.md.

package ssh

import "sync"

// Packet buffers for the AEAD ciphers' reads. A data packet that a sink
// wrote out in full is given back (recyclePacket) and the next read takes
// it (packetBuffer), which saves allocating and zeroing a buffer of up to
// 256 KiB per packet. Nothing else is given back: any packet whose bytes
// may still be held (queued data, other messages) is left to the garbage
// collector.
//
// A buffer comes back as the data slice of its packet, which starts a few
// bytes in (length, padding length, message header); its capacity still
// runs to the buffer's end, so each round trip loses those few bytes, and a
// buffer too small for the next packet is dropped.

var packetPool sync.Pool // of *[]byte

// packetRounding is the granularity of new buffers, so that a buffer serves
// packets a little larger than the one it was made for.
const packetRounding = 4 << 10

// packetBuffer returns a buffer of n bytes whose contents are undefined: the
// caller must overwrite all of them. A packet under packetRounding gets a
// buffer of its own size, not from the pool: most are control messages
// (channel open, EOF, close), which are never given back, and a 4 KiB
// buffer for each cost new connections through a forward 32 kB of
// allocation apiece (BenchmarkNewConn).
func packetBuffer(n int) []byte {
	if n < packetRounding {
		return make([]byte, n)
	}
	if p, ok := packetPool.Get().(*[]byte); ok && cap(*p) >= n {
		return (*p)[:n]
	}
	return make([]byte, n, (n+packetRounding)/packetRounding*packetRounding)
}

// recyclePacket gives back a data slice that no one holds any more.
func recyclePacket(data []byte) {
	if cap(data) < packetRounding {
		return
	}
	data = data[:0]
	packetPool.Put(&data)
}
