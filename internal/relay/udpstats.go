package relay

import "sync/atomic"

// UDPStats are a UDPForwarder's datagrams and drops since it started.
type UDPStats struct {
	// Datagrams are those read from the listener (toward the flows'
	// targets), Replies those written back to their sources.
	Datagrams, Replies uint64
	// Flows are the flows opened (one per new source address).
	Flows uint64
	// The datagrams dropped, by why:
	//   - NoFlow: from a new source while MaxFlows flows were open;
	//   - QueueFull: their flow's queue held QueueBytes already, or
	//     queueSlots datagrams (the tunnel slower than the sender);
	//   - TooBig: larger than MaxDatagram;
	//   - Failed: their flow could not be opened (Dial failed), or the
	//     flow's connection refused the write;
	//   - Refused: from a new source that Admit turned away.
	NoFlow, QueueFull, TooBig, Failed, Refused uint64
}

// Dropped is every drop, whatever the reason.
func (s UDPStats) Dropped() uint64 {
	return s.NoFlow + s.QueueFull + s.TooBig + s.Failed + s.Refused
}

// Add is s and o summed, field by field.
func (s UDPStats) Add(o UDPStats) UDPStats {
	return UDPStats{
		Datagrams: s.Datagrams + o.Datagrams,
		Replies:   s.Replies + o.Replies,
		Flows:     s.Flows + o.Flows,
		NoFlow:    s.NoFlow + o.NoFlow,
		QueueFull: s.QueueFull + o.QueueFull,
		TooBig:    s.TooBig + o.TooBig,
		Failed:    s.Failed + o.Failed,
		Refused:   s.Refused + o.Refused,
	}
}

// udpCounts is where a UDPForwarder counts UDPStats, once, where each
// datagram passes. Its zero value is ready.
type udpCounts struct {
	datagrams, replies, flows         atomic.Uint64
	noFlow, queueFull, tooBig, failed atomic.Uint64
	refused                           atomic.Uint64
}

func (c *udpCounts) stats() UDPStats {
	return UDPStats{
		Datagrams: c.datagrams.Load(),
		Replies:   c.replies.Load(),
		Flows:     c.flows.Load(),
		NoFlow:    c.noFlow.Load(),
		QueueFull: c.queueFull.Load(),
		TooBig:    c.tooBig.Load(),
		Failed:    c.failed.Load(),
		Refused:   c.refused.Load(),
	}
}

// Stats are f's datagrams and drops so far.
func (f *UDPForwarder) Stats() UDPStats { return f.n.stats() }
