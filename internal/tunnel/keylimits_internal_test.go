package tunnel

import (
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/pinhole-dev/pinhole/internal/auth"
)

// BenchmarkKeyOpenStream is the per-key accounting of one stream, open
// and end, under the default limits but for a rate never reached: goroutines on one key (its atomics
// and its bucket's mutex shared) and each on a key of its own (nothing
// shared).
func BenchmarkKeyOpenStream(b *testing.B) {
	for _, shared := range []bool{true, false} {
		name := "own-key"
		if shared {
			name = "one-key"
		}
		b.Run(name, func(b *testing.B) {
			// A rate so high that the bucket is taken from, never empty.
			s := &Server{cfg: ServerConfig{KeyLimits: resolveKeyLimits(KeyLimits{StreamRate: 1 << 30})}, keys: map[string]*keyState{}}
			var n atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				key := "SHA256:shared"
				if !shared {
					key = "SHA256:" + strconv.FormatInt(n.Add(1), 10)
				}
				ks := s.attachKey(key, nil)
				for pb.Next() {
					if err := ks.openStream(); err != nil {
						b.Error(err)
						return
					}
					ks.endStream()
				}
			})
		})
	}
}

// TestKeyStateDetach: a key's state lives while it has a connection.
func TestKeyStateDetach(t *testing.T) {
	s := &Server{cfg: ServerConfig{KeyLimits: resolveKeyLimits(KeyLimits{})}, keys: map[string]*keyState{}}
	a := s.attachKey("k", nil)
	b := s.attachKey("k", &auth.Options{Limits: auth.Limits{Streams: 5}})
	if a != b || s.KeyUsage("k").Connections != 2 {
		t.Fatalf("two connections of one key: %p %p, %+v", a, b, s.KeyUsage("k"))
	}
	if l := a.lim.Load(); l.streams.max != 5 || !l.streams.own || l.ports.max != DefaultKeyLimits.Ports || l.ports.own {
		t.Errorf("limits after the second login: %+v, want its line's streams and the server's ports", *l)
	}
	s.detachKey(a)
	s.detachKey(b)
	if len(s.keys) != 0 {
		t.Errorf("%d keys left after their connections ended", len(s.keys))
	}
}
