package transport

import (
	"log/slog"
	"net"
	"sync"

	"github.com/pinhole-dev/pinhole/internal/accept"
)

// HTTP's own limits. With Sort, a connection counts toward the SSH
// server's pre-authentication limits (MaxStartups, PerSourceMaxStartups)
// only once it has shown it may be SSH: its first byte 'S', a ClientHello
// offering ssh or not HTTP's, or silence for SilentSSH. Until its first
// bytes have come, and from then on if it is HTTP (a plain HTTP method, a
// ClientHello offering h2 or http/1.1 and not ssh, or naming a public
// name, or one a passthrough takes), these count it instead, until it
// closes or is upgraded (a WebSocket): browsers open many connections at
// once, SSH clients one.

// DefaultMaxHTTPConns and DefaultMaxHTTPConnsPerSource are the
// Dispatcher's limits on HTTP connections at once, in all and from one
// source address (IPv6: one /64). A browser opens six or so per host
// name; a page of several names, or an office behind one address, many
// more.
const (
	DefaultMaxHTTPConns          = 4096
	DefaultMaxHTTPConnsPerSource = 256
)

// httpGate counts the HTTP connections open, in all and by source.
type httpGate struct {
	max, perSource int // <= 0: no cap

	mu     sync.Mutex    // a decision and its count at once
	counts accept.Counts // its own lock, taken inside mu
	drops  accept.Drops  // drop lines, at most one a second
}

func newHTTPGate(max, perSource int, log *slog.Logger) *httpGate {
	g := &httpGate{max: max, perSource: perSource}
	g.drops = accept.Drops{Log: log, Msg: "HTTP connection dropped", Open: "open", Counts: &g.counts}
	return g
}

// admit counts a new HTTP connection from peer: release (idempotent)
// uncounts it. A connection past a cap gets a nil release and the
// reason, the flag to raise.
func (g *httpGate) admit(peer net.Addr) (release func(), reason string) {
	src := accept.SourceOf(peer)
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case g.max > 0 && g.counts.Total() >= g.max:
		reason = "max-http-conns"
	case g.perSource > 0 && g.counts.From(src) >= g.perSource:
		reason = "per-source-max-http-conns"
	}
	if reason != "" {
		g.drops.Drop(peer, reason)
		return nil, reason
	}
	return g.counts.Add(src), ""
}

// httpOpen is how many connections the HTTP limits count now.
func (d *Dispatcher) httpOpen() int {
	d.init()
	return d.gate.counts.Total()
}

// gatedConn is a passthrough's connection: closing it uncounts it.
type gatedConn struct {
	passConn
	release func()
}

func (c *gatedConn) Close() error {
	c.release()
	return c.passConn.Close()
}
