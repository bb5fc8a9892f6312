package observe

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Reason is why a connection, a stream, a forward or a key was refused:
// one of the constants below, a fixed set, so that a count per reason is
// a bounded label. Its text is stable (docs/watching.md).
type Reason string

// Why an authentication failed: the reasons of the server's "auth
// failed" log line (docs/logging.md).
const (
	AuthUnknownKey Reason = "unknown-key" // not in authorized_keys
	AuthFrom       Reason = "from"        // listed, but from= does not match the address
	AuthExpired    Reason = "expired"     // listed, but expiry-time= has passed
	AuthNoKeys     Reason = "no-keys"     // the server has no authorized keys at all
	AuthKeysError  Reason = "keys-error"  // authorized_keys could not be read
	AuthMethod     Reason = "method"      // password, keyboard-interactive: pinhole takes keys only
	AuthBadRequest Reason = "bad-request" // a publickey request the server could not use
)

// Why a stream or a forward was refused.
const (
	// On a server.
	RefusedPermitOpen    Reason = "permitopen"      // direct-tcpip to a target the key may not open
	RefusedPermitListen  Reason = "permitlisten"    // tcpip-forward the key may not listen on
	RefusedPortTaken     Reason = "port-taken"      // tcpip-forward of a port or name another connection holds
	RefusedListenFailed  Reason = "listen-failed"   // tcpip-forward the server could not listen for
	RefusedConnectFailed Reason = "connect-failed"  // the target did not answer
	RefusedMalformed     Reason = "malformed"       // a request the server could not parse
	RefusedShuttingDown  Reason = "shutting-down"   // the server is draining
	RefusedStreams       Reason = "limit-streams"   // the key's open-streams limit
	RefusedStreamRate    Reason = "limit-rate"      // the key's new-streams-a-second limit
	RefusedPorts         Reason = "limit-ports"     // the key's remote-forward ports limit
	RefusedTunnelOptions Reason = "tunnel-options"  // allow=, auth= or the PROXY header turned it away
	RefusedByClient      Reason = "client-refused"  // the client did not take a forwarded connection
	RefusedTunnelDown    Reason = "tunnel-down"     // client: no connection within StreamWait
	RefusedByServer      Reason = "server-refused"  // client: the server refused or could not open the stream
	RefusedRemote        Reason = "forward-refused" // client: the server refused a -R
)

// reasons are every Reason, in the order Counts lists them.
var reasons = [...]Reason{
	AuthUnknownKey, AuthFrom, AuthExpired, AuthNoKeys, AuthKeysError, AuthMethod, AuthBadRequest,
	RefusedPermitOpen, RefusedPermitListen, RefusedPortTaken, RefusedListenFailed, RefusedConnectFailed,
	RefusedMalformed, RefusedShuttingDown, RefusedStreams, RefusedStreamRate, RefusedPorts,
	RefusedTunnelOptions, RefusedByClient, RefusedTunnelDown, RefusedByServer, RefusedRemote,
}

// Reasons are every Reason there is.
func Reasons() []Reason { return append([]Reason(nil), reasons[:]...) }

// Auth reports whether r is an authentication failure's reason rather
// than a refusal's.
func (r Reason) Auth() bool { return r.index() >= 0 && r.index() <= 6 }

func (r Reason) index() int {
	for i, x := range reasons {
		if x == r {
			return i
		}
	}
	return -1
}

// Event is one refusal or authentication failure.
type Event struct {
	// Seq numbers a Ring's events from 1, so a reader can tell which it
	// has seen.
	Seq uint64 `json:"seq"`
	// Time is when it happened.
	Time time.Time `json:"time"`
	// Kind is "auth" for an authentication failure, "refused" for a
	// refusal.
	Kind string `json:"kind"`
	// Reason is why, one of the Reasons.
	Reason Reason `json:"reason"`
	// Tunnel is the tunnel's name on a client, the key's fingerprint on
	// a server ("" before a key is known).
	Tunnel string `json:"tunnel,omitempty"`
	// Forward is what was refused: a forward ("-L 8080:db:5432"), a
	// listener's address or a target (host:port); for a failed login
	// the method the client named. At most 200 bytes, as Tunnel and
	// Peer are: a peer may choose them.
	Forward string `json:"forward,omitempty"`
	// Peer is the address the refused connection came from.
	Peer string `json:"peer,omitempty"`
	// Detail is the error in words, at most 200 bytes. Any of these
	// texts may hold what a peer sent, control characters included:
	// escape them before they reach a terminal.
	Detail string `json:"detail,omitempty"`
	// Repeats is how many times more the same refusal (reason, tunnel
	// and forward) came right after it, from any peer: a -R the server
	// refuses each time the client asks again, a burst of connections
	// over a limit. Time is the last one's; Peer and Detail the first's.
	Repeats uint64 `json:"repeats,omitempty"`
}

// DefaultRingSize is how many events a zero Ring keeps.
const DefaultRingSize = 64

// Ring keeps the latest events and counts every event by reason. Its
// zero value keeps DefaultRingSize events; it is safe for concurrent use.
// Add costs a lock and a copy, paid only on a refusal.
type Ring struct {
	// Size is how many events it keeps; 0 means DefaultRingSize. Set it
	// before the first Add.
	Size int

	counts [len(reasons)]atomic.Uint64

	mu     sync.Mutex
	events []Event // a circle of up to Size, next is where the next goes
	next   int
	seq    uint64
}

// Add records e, with its Seq and, when zero, Time set; Kind follows from
// its Reason. The same refusal as the latest (reason, tunnel, forward)
// adds to its Repeats instead. A Reason outside the set is not recorded:
// it would be an unbounded label. A nil Ring records nothing.
func (r *Ring) Add(e Event) { r.AddText(e, nil, nil) }

// AddText is Add with the event's Peer and Detail given as peer and err,
// turned into text only when the event takes a slot of its own: a burst
// of the same refusal costs a count and a lock each, no allocation.
func (r *Ring) AddText(e Event, peer fmt.Stringer, err error) {
	i := e.Reason.index()
	if r == nil || i < 0 {
		return
	}
	r.counts[i].Add(1)
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	size := r.Size
	if size <= 0 {
		size = DefaultRingSize
	}
	// Clipped before they are compared: slicing a string copies
	// nothing, so the repeats cost no more.
	e.Tunnel, e.Forward = clipText(e.Tunnel), clipText(e.Forward)
	r.mu.Lock()
	defer r.mu.Unlock()
	if n := len(r.events); n > 0 {
		last := &r.events[(r.next+n-1)%n]
		if last.Reason == e.Reason && last.Tunnel == e.Tunnel && last.Forward == e.Forward {
			last.Repeats++
			last.Time = e.Time
			return
		}
	}
	if peer != nil {
		e.Peer = peer.String()
	}
	if err != nil {
		e.Detail = err.Error()
	}
	e.Kind = "refused"
	if e.Reason.Auth() {
		e.Kind = "auth"
	}
	e.Peer, e.Detail = clipText(e.Peer), clipText(e.Detail)
	r.seq++
	e.Seq = r.seq
	if len(r.events) < size {
		r.events = append(r.events, e)
		return
	}
	r.events[r.next] = e
	r.next = (r.next + 1) % len(r.events)
}

// maxText is how many bytes an Event keeps of each text.
const maxText = 200

// clipText is s cut to maxText bytes, at a character's boundary.
func clipText(s string) string {
	if len(s) <= maxText {
		return s
	}
	d := s[:maxText]
	for len(d) > 0 && !utf8.ValidString(d) {
		d = d[:len(d)-1]
	}
	return d
}

// Events are the events kept, oldest first.
func (r *Ring) Events() []Event {
	if r == nil {
		return []Event{}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Event, 0, len(r.events))
	out = append(out, r.events[r.next:]...)
	return append(out, r.events[:r.next]...)
}

// Count is how many events of reason r there were.
func (r *Ring) Count(reason Reason) uint64 {
	i := reason.index()
	if r == nil || i < 0 {
		return 0
	}
	return r.counts[i].Load()
}

// Counts are how many events of each Reason there were, every Reason a
// key.
func (r *Ring) Counts() map[Reason]uint64 {
	m := make(map[Reason]uint64, len(reasons))
	for _, x := range reasons {
		m[x] = r.Count(x)
	}
	return m
}
