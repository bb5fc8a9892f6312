package tunnel

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"

	"github.com/pinhole-dev/pinhole/internal/accept"
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
	perSource int        // <= 0: no cap
	roll      func() int // uniform in [0, 100)

	mu     sync.Mutex    // a decision and its count at once
	counts accept.Counts // its own lock, taken inside mu
	drops  accept.Drops  // drop lines, at most one a second
}

func newStartupGate(limit Startups, perSource int, log *slog.Logger) *startupGate {
	g := &startupGate{
		limit:     limit,
		perSource: perSource,
		roll:      func() int { return rand.IntN(100) },
	}
	g.drops = accept.Drops{Log: log, Msg: "startup dropped", Open: "unauthenticated", Counts: &g.counts}
	return g
}

// admit decides about a new connection from peer. If it comes in, release
// must be called once it authenticates or ends (release is idempotent);
// if not, why says which limit dropped it.
func (g *startupGate) admit(peer net.Addr) (release func(), why string) {
	src := accept.SourceOf(peer)
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.perSource > 0 && g.counts.From(src) >= g.perSource:
		why = "per-source-max-startups"
	case g.roll() < g.limit.dropChance(g.counts.Total()):
		why = "max-startups"
	}
	if why != "" {
		g.drops.Drop(peer, why)
		return nil, why
	}
	return g.counts.Add(src), ""
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
	return StartupStats{Unauthenticated: g.counts.Total(), Dropped: g.drops.Total()}
}
