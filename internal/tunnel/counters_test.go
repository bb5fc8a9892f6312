package tunnel_test

import (
	"reflect"
	"testing"

	"github.com/pinhole-dev/pinhole/internal/relay"
	"github.com/pinhole-dev/pinhole/internal/tunnel"
)

// TestCountersAdd: two servers' counters summed field by field, the
// histograms bucket by bucket, the reconnects by cause; an empty side
// leaves the other as it is.
func TestCountersAdd(t *testing.T) {
	a := tunnel.Counters{
		Reconnects:            map[string]uint64{tunnel.CauseClosed: 2},
		KeepaliveRTT:          tunnel.Histogram{Bounds: []float64{0.001, 0.01}, Counts: []uint64{1, 2, 3}, Count: 6, Sum: 0.5},
		KeepaliveTimeouts:     1,
		UDP:                   relay.UDPStats{Datagrams: 10, Failed: 1},
		SessionsAuthenticated: 1,
	}
	b := tunnel.Counters{
		Reconnects:              map[string]uint64{tunnel.CauseClosed: 1, tunnel.CauseError: 4},
		ReconnectsFailed:        3,
		KeepaliveRTT:            tunnel.Histogram{Bounds: []float64{0.001, 0.01}, Counts: []uint64{4, 0, 1}, Count: 5, Sum: 0.25},
		UDP:                     relay.UDPStats{Datagrams: 5, Replies: 7},
		SessionsUnauthenticated: 2,
		SessionsAuthenticated:   3,
	}
	want := tunnel.Counters{
		Reconnects:              map[string]uint64{tunnel.CauseClosed: 3, tunnel.CauseError: 4},
		ReconnectsFailed:        3,
		KeepaliveRTT:            tunnel.Histogram{Bounds: []float64{0.001, 0.01}, Counts: []uint64{5, 2, 4}, Count: 11, Sum: 0.75},
		KeepaliveTimeouts:       1,
		UDP:                     relay.UDPStats{Datagrams: 15, Replies: 7, Failed: 1},
		SessionsUnauthenticated: 2,
		SessionsAuthenticated:   4,
	}
	if got := a.Add(b); !reflect.DeepEqual(got, want) {
		t.Errorf("a.Add(b) = %+v\nwant %+v", got, want)
	}
	if a.KeepaliveRTT.Counts[0] != 1 || a.Reconnects[tunnel.CauseClosed] != 2 {
		t.Error("Add changed its receiver")
	}
	if got := (tunnel.Counters{}).Add(a); !reflect.DeepEqual(got, a) {
		t.Errorf("the zero Counters plus a = %+v, want a", got)
	}
}
