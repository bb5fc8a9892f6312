package accept

import (
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"
)

// SourceOf is the unit of a per-source limit: the address for IPv4, the
// /64 for IPv6 (one subscriber's usual allocation; sshd's
// PerSourceNetBlockSize defaults to /128). An address that does not parse
// is the zero Prefix, one source for all such.
func SourceOf(addr net.Addr) netip.Prefix {
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

// Counts counts open connections, in all and by source (SourceOf), for a
// limit on each: the SSH server's pre-authentication limits, the HTTP
// limits of the shared port. Its memory is one map entry per source with a
// connection counted. The zero value is ready; it is safe for concurrent
// use.
type Counts struct {
	mu       sync.Mutex
	total    int
	bySource map[netip.Prefix]int
}

// Add counts one connection from src; release uncounts it, once however
// often it is called.
func (c *Counts) Add(src netip.Prefix) (release func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.bySource == nil {
		c.bySource = map[netip.Prefix]int{}
	}
	c.total++
	c.bySource[src]++
	var once sync.Once
	return func() {
		once.Do(func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.total--
			if c.bySource[src]--; c.bySource[src] <= 0 {
				delete(c.bySource, src)
			}
		})
	}
}

// Total is how many connections are counted.
func (c *Counts) Total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

// From is how many connections from src are counted.
func (c *Counts) From(src netip.Prefix) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bySource[src]
}

// Drops logs the connections a limit drops: a line for the first, then
// at most one a second, or when the reason changes, each with the number
// of drops it stands for (dropped=); drops held back are written a second
// after the last line, so that the lines add up to every drop. Set the
// fields before the first Drop.
type Drops struct {
	Log    *slog.Logger
	Msg    string  // the line's message: "startup dropped"
	Open   string  // the key of Counts' total in the line: "unauthenticated"
	Counts *Counts // the connections the limit counts
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	mu       sync.Mutex
	total    uint64 // since the start
	unlogged uint64 // drops not yet in a line
	lastLog  time.Time
	lastWhy  string
	lastPeer net.Addr
	flushing bool // a flush is scheduled
}

// Drop notes that a connection from peer was dropped, why naming the
// limit (its flag).
func (d *Drops) Drop(peer net.Addr, why string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.total++
	d.unlogged++
	now := d.now()
	d.lastPeer = peer
	if why == d.lastWhy && now.Sub(d.lastLog) < time.Second {
		if !d.flushing {
			d.flushing = true
			time.AfterFunc(time.Second-now.Sub(d.lastLog), d.flush)
		}
		return
	}
	d.write(peer, why, now)
}

// Total is how many drops there have been.
func (d *Drops) Total() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.total
}

func (d *Drops) now() time.Time {
	if d.Now == nil {
		return time.Now()
	}
	return d.Now()
}

// write logs the line; d.mu is held.
func (d *Drops) write(peer net.Addr, why string, now time.Time) {
	d.Log.Warn(d.Msg, "peer", peer.String(), "reason", why,
		d.Open, d.Counts.Total(), "from_source", d.Counts.From(SourceOf(peer)), "dropped", d.unlogged)
	d.lastLog, d.lastWhy, d.unlogged = now, why, 0
}

// flush writes the line for the drops Drop held back.
func (d *Drops) flush() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.flushing = false
	if d.unlogged > 0 {
		d.write(d.lastPeer, d.lastWhy, d.now())
	}
}
