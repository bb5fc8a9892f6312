package tunnel

import (
	"errors"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pinhole-dev/pinhole/internal/relay"
)

// Counters are what a Client or a Server counts besides its Stats (bytes
// and streams, which the meters count as they move): reconnects,
// keepalives, UDP datagrams and drops, and a server's SSH sessions. Each
// is counted once, where the event happens, at a state change or a
// datagram, never per byte; the metrics read them at scrape time. Counts
// only grow, except the session gauges.
type Counters struct {
	// Reconnects are a Client's lost connections, by cause (the
	// ReconnectCause words), each followed by reconnecting.
	Reconnects map[string]uint64
	// ReconnectsFailed are the reconnect attempts that failed (each
	// retried with backoff).
	ReconnectsFailed uint64
	// KeepaliveRTT are the round trips of the keepalives the peer
	// answered, in seconds.
	KeepaliveRTT Histogram
	// KeepaliveTimeouts are the connections closed because the peer
	// stopped answering keepalives.
	KeepaliveTimeouts uint64
	// UDP are the datagrams and drops of the flow tables: a Client's
	// -L /udp forwards, a Server's -R /udp ones, live and ended.
	UDP relay.UDPStats
	// SessionsUnauthenticated and SessionsAuthenticated are a Server's
	// SSH connections now, before and after login.
	SessionsUnauthenticated, SessionsAuthenticated int
}

// Add is c and o together, as for two servers that one process ran one
// after the other (pinhole server -c, when a reload restarts it): counts
// and histograms summed, Reconnects by cause.
func (c Counters) Add(o Counters) Counters {
	out := c
	if len(c.Reconnects)+len(o.Reconnects) > 0 { // a map of its own, never c's
		out.Reconnects = make(map[string]uint64, len(c.Reconnects)+len(o.Reconnects))
		for k, v := range c.Reconnects {
			out.Reconnects[k] += v
		}
		for k, v := range o.Reconnects {
			out.Reconnects[k] += v
		}
	}
	out.ReconnectsFailed += o.ReconnectsFailed
	out.KeepaliveRTT = c.KeepaliveRTT.add(o.KeepaliveRTT)
	out.KeepaliveTimeouts += o.KeepaliveTimeouts
	out.UDP = c.UDP.Add(o.UDP)
	out.SessionsUnauthenticated += o.SessionsUnauthenticated
	out.SessionsAuthenticated += o.SessionsAuthenticated
	return out
}

// The causes of a lost connection, as Counters.Reconnects counts them.
const (
	CauseKeepalive = "keepalive" // the peer stopped answering keepalives
	CauseClosed    = "closed"    // the server closed the connection (EOF)
	CauseError     = "error"     // a network error (reset, timeout)
)

// ReconnectCauses are every cause, in a fixed order.
var ReconnectCauses = []string{CauseKeepalive, CauseClosed, CauseError}

// add is h and o together; the two have the same Bounds (rttBounds), or
// one of them is empty.
func (h Histogram) add(o Histogram) Histogram {
	switch {
	case o.Count == 0 && len(o.Counts) == 0:
		return h
	case h.Count == 0 && len(h.Counts) == 0:
		return o
	}
	out := Histogram{Bounds: h.Bounds, Counts: slices.Clone(h.Counts), Count: h.Count + o.Count, Sum: h.Sum + o.Sum}
	for i := range min(len(out.Counts), len(o.Counts)) {
		out.Counts[i] += o.Counts[i]
	}
	return out
}

// Histogram is a distribution of observations in buckets: Counts[i] are
// the observations at most Bounds[i] (not cumulative), and the last
// element of Counts those above every bound. Sum is their total.
type Histogram struct {
	Bounds []float64
	Counts []uint64
	Count  uint64
	Sum    float64
}

// rttBounds are the keepalive round-trip buckets, in seconds: a LAN's
// milliseconds to a congested path's seconds.
var rttBounds = [...]float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// histogram counts observations in rttBounds' buckets; its zero value is
// ready. An observation is a few atomic adds, once per keepalive.
type histogram struct {
	counts [len(rttBounds) + 1]atomic.Uint64
	sum    atomic.Int64 // nanoseconds
	n      atomic.Uint64
}

func (h *histogram) observe(d time.Duration) {
	s := d.Seconds()
	i := 0
	for i < len(rttBounds) && s > rttBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
	h.n.Add(1)
}

func (h *histogram) read() Histogram {
	out := Histogram{Bounds: rttBounds[:], Counts: make([]uint64, len(h.counts))}
	for i := range h.counts {
		out.Counts[i] = h.counts[i].Load()
	}
	out.Count = h.n.Load()
	out.Sum = time.Duration(h.sum.Load()).Seconds()
	return out
}

// keepaliveStats are what keepalive counts; nil counts nothing.
type keepaliveStats struct {
	rtt      histogram
	timeouts atomic.Uint64
}

func (k *keepaliveStats) answered(d time.Duration) {
	if k != nil {
		k.rtt.observe(d)
	}
}

func (k *keepaliveStats) timedOut() {
	if k != nil {
		k.timeouts.Add(1)
	}
}

// udpTotals sums the UDPStats of a Client's or Server's flow tables:
// those still serving, read when asked, and those ended.
type udpTotals struct {
	mu      sync.Mutex
	live    map[*relay.UDPForwarder]struct{}
	retired relay.UDPStats
}

// track counts f from now until the returned func, called when f's Serve
// has returned, adds its figures to the ended ones.
func (u *udpTotals) track(f *relay.UDPForwarder) (untrack func()) {
	u.mu.Lock()
	if u.live == nil {
		u.live = make(map[*relay.UDPForwarder]struct{})
	}
	u.live[f] = struct{}{}
	u.mu.Unlock()
	return func() {
		u.mu.Lock()
		delete(u.live, f)
		u.retired = u.retired.Add(f.Stats())
		u.mu.Unlock()
	}
}

func (u *udpTotals) stats() relay.UDPStats {
	u.mu.Lock()
	defer u.mu.Unlock()
	s := u.retired
	for f := range u.live {
		s = s.Add(f.Stats())
	}
	return s
}

// events are the Counters a Client or Server keeps; the zero value is
// ready.
type events struct {
	reconnects       [3]atomic.Uint64 // by ReconnectCauses' index
	reconnectsFailed atomic.Uint64
	keepalive        keepaliveStats
	udp              udpTotals
}

func (e *events) read() Counters {
	c := Counters{
		Reconnects:        make(map[string]uint64, len(ReconnectCauses)),
		ReconnectsFailed:  e.reconnectsFailed.Load(),
		KeepaliveRTT:      e.keepalive.rtt.read(),
		KeepaliveTimeouts: e.keepalive.timeouts.Load(),
		UDP:               e.udp.stats(),
	}
	for i, cause := range ReconnectCauses {
		c.Reconnects[cause] = e.reconnects[i].Load()
	}
	return c
}

// lost counts a lost connection, and returns its cause: keepalive when
// timeouts moved past before while it lasted, else by err.
func (e *events) lost(before uint64, err error) (cause string) {
	i := 2
	switch {
	case e.keepalive.timeouts.Load() != before:
		i = 0
	case err == nil || errors.Is(err, io.EOF):
		i = 1
	}
	e.reconnects[i].Add(1)
	return ReconnectCauses[i]
}

// Counters are the client's counts of reconnects, keepalives and UDP
// datagrams so far.
func (c *Client) Counters() Counters { return c.ev.read() }

// Counters are the server's counts of keepalives and UDP datagrams so far,
// and its SSH sessions now.
func (s *Server) Counters() Counters {
	out := s.ev.read()
	out.SessionsUnauthenticated = s.Startups().Unauthenticated
	s.mu.Lock()
	out.SessionsAuthenticated = len(s.conns)
	s.mu.Unlock()
	return out
}
