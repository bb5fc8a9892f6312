package tunnel

import "sync/atomic"

// Stats are a forward's, a client's or a server's figures since it started.
// A UDP flow (one source address of a /udp forward, or one SOCKS5 UDP
// destination) counts as a stream.
type Stats struct {
	// ToTarget and FromTarget are the bytes carried toward the forward's
	// target and back, counted as they move.
	ToTarget, FromTarget int64
	// StreamsOpen are the streams carrying data now.
	StreamsOpen int64
	// StreamsTotal are all the streams opened so far, open or ended.
	StreamsTotal uint64
	// StreamsRefused are the connections that did not become a stream:
	// the far end refused the open or could not reach the target, the
	// tunnel stayed down for longer than StreamWait, or permitopen
	// forbade it.
	StreamsRefused uint64
}

// Add is s and o together, field by field.
func (s Stats) Add(o Stats) Stats {
	return Stats{
		ToTarget:       s.ToTarget + o.ToTarget,
		FromTarget:     s.FromTarget + o.FromTarget,
		StreamsOpen:    s.StreamsOpen + o.StreamsOpen,
		StreamsTotal:   s.StreamsTotal + o.StreamsTotal,
		StreamsRefused: s.StreamsRefused + o.StreamsRefused,
	}
}

// meter is where Stats are counted, once, where the bytes move: the relay
// adds to toTarget and fromTarget as it copies. Its zero value is ready.
type meter struct {
	toTarget, fromTarget atomic.Int64
	streams              atomic.Int64 // open TCP streams: what a drain waits for
	flows                atomic.Int64 // open UDP flows: a drain does not wait for these
	total, refused       atomic.Uint64
}

func (m *meter) stats() Stats {
	return Stats{
		ToTarget:       m.toTarget.Load(),
		FromTarget:     m.fromTarget.Load(),
		StreamsOpen:    m.streams.Load() + m.flows.Load(),
		StreamsTotal:   m.total.Load(),
		StreamsRefused: m.refused.Load(),
	}
}

// open counts a new stream, or flow for udp, until the returned func is
// called.
func (m *meter) open(udp bool) (end func()) {
	n := &m.streams
	if udp {
		n = &m.flows
	}
	n.Add(1)
	m.total.Add(1)
	return func() { n.Add(-1) }
}

func (m *meter) refuse() { m.refused.Add(1) }
