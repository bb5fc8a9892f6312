// Package observe describes what a pinhole server or client is doing now,
// as plain values: a Snapshot of its sessions or tunnels, their forwards
// and figures, and a bounded Ring of recent refusals and authentication
// failures with a count per Reason.
//
// A Snapshot is what `pinhole status --json` prints and what the
// dashboard's event stream sends, so its JSON shape is stable
// (docs/watching.md documents it): fields are added, never renamed or
// removed. The counts of a Ring are what the metrics export: their keys
// are the fixed set of Reasons, never a peer's address, so the labels
// they become stay bounded.
package observe

import (
	"sync"
	"time"
)

// Snapshot is one process's state at one moment.
type Snapshot struct {
	// Role is "server" (pinhole server) or "client" (connect, up).
	Role string `json:"role"`
	// Version is pinhole's version.
	Version string `json:"version"`
	// PID is the process's id, 0 when unknown.
	PID int `json:"pid,omitempty"`
	// Started is when the server or the first client started.
	Started time.Time `json:"started"`
	// Time is when the snapshot was taken.
	Time time.Time `json:"time"`
	// RateSeconds is the interval the rates are over: since the
	// snapshot before, which the same reader took; 0 when there was
	// none, and every rate is 0.
	RateSeconds float64 `json:"rate_seconds"`
	// Totals are the figures of everything the process has carried,
	// ended sessions and closed forwards included.
	Totals Counters `json:"totals"`
	// Sessions are a server's authenticated SSH connections, oldest
	// first; empty on a client.
	Sessions []Session `json:"sessions"`
	// Tunnels are a client's tunnels, in the order given; empty on a
	// server.
	Tunnels []Tunnel `json:"tunnels"`
	// Events are the recent refusals and authentication failures,
	// oldest first (at most the Ring's size).
	Events []Event `json:"events"`
	// Counts are how many events of each reason there were since the
	// start, the ones that fell out of Events included. Every Reason is
	// a key, zero or not.
	Counts map[Reason]uint64 `json:"counts"`
}

// Counters are the figures of a forward, a tunnel, a session or a whole
// process. Rates are over the interval since the snapshot before (Rates),
// 0 when there was none.
type Counters struct {
	// BytesToTarget and BytesFromTarget are the bytes carried toward
	// the forwards' targets and back.
	BytesToTarget   int64 `json:"bytes_to_target"`
	BytesFromTarget int64 `json:"bytes_from_target"`
	// StreamsOpen are the streams (TCP connections, UDP flows) open now.
	StreamsOpen int64 `json:"streams_open"`
	// StreamsTotal are the streams opened so far.
	StreamsTotal uint64 `json:"streams_total"`
	// StreamsRefused are the connections that did not become a stream.
	StreamsRefused uint64 `json:"streams_refused"`
	// RateToTarget and RateFromTarget are bytes a second.
	RateToTarget   float64 `json:"rate_to_target"`
	RateFromTarget float64 `json:"rate_from_target"`
}

// Add is c and o together: counts and rates summed.
func (c Counters) Add(o Counters) Counters {
	return Counters{
		BytesToTarget:   c.BytesToTarget + o.BytesToTarget,
		BytesFromTarget: c.BytesFromTarget + o.BytesFromTarget,
		StreamsOpen:     c.StreamsOpen + o.StreamsOpen,
		StreamsTotal:    c.StreamsTotal + o.StreamsTotal,
		StreamsRefused:  c.StreamsRefused + o.StreamsRefused,
		RateToTarget:    c.RateToTarget + o.RateToTarget,
		RateFromTarget:  c.RateFromTarget + o.RateFromTarget,
	}
}

// Session is one authenticated SSH connection to a server.
type Session struct {
	// Key is the SHA256 fingerprint of the key it logged in with, and
	// Comment that key's comment in authorized_keys.
	Key     string `json:"key"`
	Comment string `json:"comment,omitempty"`
	// User is the user name the client gave.
	User string `json:"user"`
	// Source is the client's address, host:port: the session's
	// identity while it lasts.
	Source string `json:"source"`
	// ClientVersion is the client's SSH version string.
	ClientVersion string `json:"client_version"`
	// Since is when it authenticated.
	Since time.Time `json:"since"`
	// State is "up", or "draining" while the server shuts down.
	State string `json:"state"`
	// Listeners are its remote forwards (ssh -R) the server listens for.
	Listeners []Listener `json:"listeners"`
	Counters
}

// Listener is a remote forward a server listens for.
type Listener struct {
	// Proto is "tcp" or "udp".
	Proto string `json:"proto"`
	// Requested is what the client asked for, host:port as sent.
	Requested string `json:"requested"`
	// Addr is what the server listens on: host:port, or "name NAME"
	// for a public name.
	Addr string `json:"addr"`
	// Name and URL are a public name's (docs/names.md), "" otherwise.
	Name string `json:"name,omitempty"`
	URL  string `json:"url,omitempty"`
	// Since is when the server started listening for it.
	Since time.Time `json:"since"`
}

// Tunnel is one client: a connection to a server that reconnects, and
// its forwards.
type Tunnel struct {
	// Name is the tunnel's name ([tunnel.NAME] of pinhole up), or its
	// server's address.
	Name string `json:"name"`
	// Server is the server's host:port as SSH names it.
	Server string `json:"server"`
	// State is "connecting", "up", "reconnecting", "draining" or
	// "closed".
	State string `json:"state"`
	// Since is when it entered State.
	Since time.Time `json:"since"`
	// LastError is the last reason it could not connect, or lost its
	// connection, or closed; "" when none.
	LastError string `json:"last_error,omitempty"`
	// Forwards are its forwards in the order added.
	Forwards []Forward `json:"forwards"`
	Counters
}

// Forward is one forward of a tunnel.
type Forward struct {
	// Forward is as a command line gives it: "-L 8080:db:5432".
	Forward string `json:"forward"`
	// Kind is "local", "remote" or "dynamic"; Proto "tcp" or "udp".
	Kind  string `json:"kind"`
	Proto string `json:"proto"`
	// Addr is the address bound: the local one for -L and -D, the
	// server's for -R; "" while not in place.
	Addr string `json:"addr"`
	// URL is a -R's public URL when the server gave it a name.
	URL string `json:"url,omitempty"`
	// State is the forward's, as a Tunnel's.
	State string `json:"state"`
	// Since is when it entered State.
	Since time.Time `json:"since"`
	// LastError is why it is closed, or why the server last refused a
	// -R; "" when none.
	LastError string `json:"last_error,omitempty"`
	Counters
}

// Rates fills the rates of s (its totals, sessions, tunnels and
// forwards) from the bytes moved since prev, matching sessions by Source
// and forwards by tunnel Name and Forward. Entries without a match in
// prev, and all of them when prev is nil or not older than s, keep
// rate 0.
func (s *Snapshot) Rates(prev *Snapshot) {
	if prev == nil {
		return
	}
	dt := s.Time.Sub(prev.Time).Seconds()
	if dt <= 0 {
		return
	}
	s.RateSeconds = dt
	s.Totals.rate(&prev.Totals, dt)
	old := make(map[string]*Counters, len(prev.Sessions)+len(prev.Tunnels))
	for i := range prev.Sessions {
		old["s "+prev.Sessions[i].Source] = &prev.Sessions[i].Counters
	}
	for i := range prev.Tunnels {
		t := &prev.Tunnels[i]
		old["t "+t.Name] = &t.Counters
		for j := range t.Forwards {
			old["f "+t.Name+" "+t.Forwards[j].Forward] = &t.Forwards[j].Counters
		}
	}
	for i := range s.Sessions {
		s.Sessions[i].rate(old["s "+s.Sessions[i].Source], dt)
	}
	for i := range s.Tunnels {
		t := &s.Tunnels[i]
		t.rate(old["t "+t.Name], dt)
		for j := range t.Forwards {
			t.Forwards[j].rate(old["f "+t.Name+" "+t.Forwards[j].Forward], dt)
		}
	}
}

func (c *Counters) rate(prev *Counters, dt float64) {
	if prev == nil {
		return
	}
	c.RateToTarget = max(0, float64(c.BytesToTarget-prev.BytesToTarget)/dt)
	c.RateFromTarget = max(0, float64(c.BytesFromTarget-prev.BytesFromTarget)/dt)
}

// Sampler takes snapshots with Take and fills their rates from the one
// before (Snapshot.Rates). A Sampler with Keep set serves many readers: it
// keeps its baseline until it is Keep old, so readers that come close
// together still get rates over at least Keep. Safe for concurrent use.
type Sampler struct {
	Take func() Snapshot
	Keep time.Duration

	mu   sync.Mutex
	prev *Snapshot
}

// Sample is a new snapshot with its rates since the baseline.
func (s *Sampler) Sample() Snapshot {
	cur := s.Take()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.prev != nil {
		cur.Rates(s.prev)
	}
	if s.prev == nil || cur.Time.Sub(s.prev.Time) >= s.Keep {
		keep := cur
		s.prev = &keep
	}
	return cur
}
