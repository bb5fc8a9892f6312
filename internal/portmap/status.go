package portmap

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// The states of a mapping Keep holds, as Status reports them.
const (
	StateMapped   = "mapped"   // the router holds it; renewed ahead of its lease
	StateRetrying = "retrying" // a renewal failed; retried while the lease lasts
	StateLost     = "lost"     // the lease ran out before a renewal worked
	StateRemoved  = "removed"  // Keep's context ended and it was taken off the router
)

// States are every state, in a fixed order.
var States = []string{StateMapped, StateRetrying, StateLost, StateRemoved}

// MappingState is one mapping Keep holds, at one moment.
type MappingState struct {
	Method   Method
	Proto    Proto
	Internal netip.AddrPort
	External netip.AddrPort
	// State is one of States.
	State string
	// GoodUntil is when the lease ends; zero for a permanent one.
	GoodUntil time.Time
}

// Status is where Keep reports the state of each mapping it holds
// (Config.Status), for metrics: one entry per protocol and internal port,
// changed at each state change (mapped, renewed, a renewal failed,
// removed), never polled. Its zero value is ready and it is safe for
// concurrent use.
type Status struct {
	mu sync.Mutex
	m  map[string]MappingState
}

// Mappings are the mappings Keep has held, sorted by protocol and port;
// a removed one stays, in StateRemoved.
func (s *Status) Mappings() []MappingState {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]MappingState, 0, len(s.m))
	for _, v := range s.m {
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b MappingState) int {
		if a.Proto != b.Proto {
			return int(a.Proto) - int(b.Proto)
		}
		return int(a.Internal.Port()) - int(b.Internal.Port())
	})
	return out
}

// set records m in state; s may be nil.
func (s *Status) set(m *mapping, state string) {
	if s == nil || m == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[string]MappingState)
	}
	s.m[fmt.Sprintf("%v/%d", m.proto, m.internal.Port())] = MappingState{
		Method: m.method, Proto: m.proto, Internal: m.internal, External: m.external,
		State: state, GoodUntil: m.goodUntil,
	}
}
