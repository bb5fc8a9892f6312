package tunnel

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Startups is sshd's MaxStartups, start:rate:full, for the connections that
// have not authenticated yet: below Start every new one is let in; from
// Start on a new one is dropped with probability Rate percent, rising
// linearly to 100 % at Full; at Full every new one is dropped. An
// authenticated connection is never counted, so this limit never refuses
// one.
type Startups struct {
	Start, Rate, Full int
}

// DefaultMaxStartups is sshd's default, 10:30:100.
var DefaultMaxStartups = Startups{Start: 10, Rate: 30, Full: 100}

// DefaultPerSourceMaxStartups caps the unauthenticated connections of one
// source (an IPv4 address, an IPv6 /64) below DefaultMaxStartups' start,
// so that one address alone never makes the server drop anyone else's.
const DefaultPerSourceMaxStartups = 5

// ParseStartups reads sshd's MaxStartups syntax: "start:rate:full", or a
// single number N, which means N:100:N (every connection past N dropped).
func ParseStartups(s string) (Startups, error) {
	bad := func(why string) (Startups, error) {
		return Startups{}, fmt.Errorf("tunnel: max startups %q: %s; want start:rate:full, e.g. 10:30:100, or one number", s, why)
	}
	parts := strings.Split(s, ":")
	if len(parts) != 1 && len(parts) != 3 {
		return bad("wrong number of fields")
	}
	var n [3]int
	for i, p := range parts {
		v, err := strconv.Atoi(p)
		if err != nil || v < 0 {
			return bad(fmt.Sprintf("%q is not a number", p))
		}
		n[i] = v
	}
	if len(parts) == 1 {
		n = [3]int{n[0], 100, n[0]}
	}
	st := Startups{Start: n[0], Rate: n[1], Full: n[2]}
	switch {
	case st.Full == 0:
		return bad("full must be at least 1")
	case st.Start > st.Full:
		return bad("start is above full")
	case st.Rate > 100:
		return bad("rate is a percentage, at most 100")
	}
	return st, nil
}

func (s Startups) String() string { return fmt.Sprintf("%d:%d:%d", s.Start, s.Rate, s.Full) }

// dropChance is the percentage of new connections dropped while n others
// are unauthenticated, as sshd's drop_connection computes it.
func (s Startups) dropChance(n int) int {
	switch {
	case n >= s.Full:
		return 100
	case n < s.Start:
		return 0
	}
	return s.Rate + (100-s.Rate)*(n-s.Start)/(s.Full-s.Start)
}

// startupGate counts the unauthenticated connections, in all and per
// source, and decides whether a new one comes in. Its memory is one map
// entry per source that has one in progress: bounded by limit.Full.
type startupGate struct {
	limit     Startups
	perSource int          // <= 0: no cap
	roll      func() int   // uniform in [0, 100)
	log       *slog.Logger // drop lines, at most one a second
	now       func() time.Time

	mu       sync.Mutex
	total    int
	bySource map[netip.Prefix]int
	dropped  uint64 // since the start
	unlogged uint64 // drops not yet in a log line
	lastLog  time.Time
	lastWhy  string
	lastPeer net.Addr
	flushing bool // a flush is scheduled
}

func newStartupGate(limit Startups, perSource int, log *slog.Logger) *startupGate {
	return &startupGate{
		limit:     limit,
		perSource: perSource,
		roll:      func() int { return rand.IntN(100) },
		log:       log,
		now:       time.Now,
		bySource:  make(map[netip.Prefix]int),
	}
}

// sourceOf is the per-source cap's unit: the address for IPv4, the /64 for
// IPv6 (one subscriber's usual allocation; sshd's PerSourceNetBlockSize
// defaults to /128).
func sourceOf(addr net.Addr) netip.Prefix {
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return netip.Prefix{}
	}
	a := ap.Addr().Unmap()
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}

// admit decides about a new connection from peer. If it comes in, release
// must be called once it authenticates or ends (release is idempotent);
// if not, why says which limit dropped it.
func (g *startupGate) admit(peer net.Addr) (release func(), why string) {
	src := sourceOf(peer)
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.perSource > 0 && g.bySource[src] >= g.perSource:
		why = "per-source-max-startups"
	case g.roll() < g.limit.dropChance(g.total):
		why = "max-startups"
	}
	if why != "" {
		g.dropped++
		g.unlogged++
		g.logDrop(peer, why)
		return nil, why
	}
	g.total++
	g.bySource[src]++
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			defer g.mu.Unlock()
			g.total--
			if g.bySource[src]--; g.bySource[src] <= 0 {
				delete(g.bySource, src)
			}
		})
	}, ""
}

// logDrop writes the "startup dropped" line for the first drop, and then
// at most one a second, or when the reason changes, each with the number
// of drops it stands for (dropped=): drops held back are written a second
// after the last line, so the lines add up to every drop; g.mu is held.
func (g *startupGate) logDrop(peer net.Addr, why string) {
	now := g.now()
	g.lastPeer = peer
	if why == g.lastWhy && now.Sub(g.lastLog) < time.Second {
		if !g.flushing {
			g.flushing = true
			time.AfterFunc(time.Second-now.Sub(g.lastLog), g.flush)
		}
		return
	}
	g.writeDrop(peer, why, now)
}

func (g *startupGate) writeDrop(peer net.Addr, why string, now time.Time) {
	g.log.Warn("startup dropped", "peer", peer.String(), "reason", why,
		"unauthenticated", g.total, "from_source", g.bySource[sourceOf(peer)], "dropped", g.unlogged)
	g.lastLog, g.lastWhy, g.unlogged = now, why, 0
}

// flush writes the line for the drops logDrop held back.
func (g *startupGate) flush() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.flushing = false
	if g.unlogged > 0 {
		g.writeDrop(g.lastPeer, g.lastWhy, g.now())
	}
}

// StartupStats are the figures of the pre-authentication limits.
type StartupStats struct {
	// Unauthenticated are the connections that have not authenticated yet.
	Unauthenticated int
	// Dropped are the connections dropped by MaxStartups or
	// PerSourceMaxStartups since the server started.
	Dropped uint64
}

func (g *startupGate) stats() StartupStats {
	g.mu.Lock()
	defer g.mu.Unlock()
	return StartupStats{Unauthenticated: g.total, Dropped: g.dropped}
}
