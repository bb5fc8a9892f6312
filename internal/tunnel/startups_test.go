package tunnel

import (
	"log/slog"
	"net"
	"testing"
)

func TestParseStartups(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Startups
		bad  bool
	}{
		{in: "10:30:100", want: Startups{10, 30, 100}},
		{in: "10", want: Startups{10, 100, 10}},
		{in: "0:0:1", want: Startups{0, 0, 1}},
		{in: "10:30", bad: true},
		{in: "10:30:5", bad: true},
		{in: "1:101:5", bad: true},
		{in: "0", bad: true},
		{in: "a:b:c", bad: true},
		{in: "-1:30:100", bad: true},
		{in: "", bad: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseStartups(tc.in)
			if tc.bad {
				if err == nil {
					t.Fatalf("ParseStartups(%q) = %v, want an error", tc.in, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseStartups(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
			}
			if again, err := ParseStartups(got.String()); err != nil || again != got {
				t.Fatalf("String %q does not parse back: %v, %v", got, again, err)
			}
		})
	}
}

func TestDropChance(t *testing.T) {
	s := DefaultMaxStartups
	for _, tc := range []struct{ n, want int }{
		{0, 0}, {9, 0}, {10, 30}, {55, 65}, {99, 99}, {100, 100}, {5000, 100},
	} {
		if got := s.dropChance(tc.n); got != tc.want {
			t.Errorf("dropChance(%d) = %d, want %d", tc.n, got, tc.want)
		}
	}
}

func tcpAddr(s string) net.Addr {
	a, err := net.ResolveTCPAddr("tcp", s)
	if err != nil {
		panic(err)
	}
	return a
}

// TestStartupGate: the per-source cap, the random drop between start and
// full (with the dice fixed), and release, which is idempotent and frees
// the slot of its source.
func TestStartupGate(t *testing.T) {
	g := newStartupGate(Startups{Start: 2, Rate: 50, Full: 4}, 2, slog.New(slog.DiscardHandler))
	dice := 0
	g.roll = func() int { return dice }

	var held []func()
	admit := func(peer string, want string) {
		t.Helper()
		release, why := g.admit(tcpAddr(peer))
		if why != want {
			t.Fatalf("admit(%s) with %d unauthenticated: dropped for %q, want %q", peer, g.stats().Unauthenticated, why, want)
		}
		if release != nil {
			held = append(held, release)
		}
	}
	admit("192.0.2.1:1", "")
	admit("192.0.2.1:2", "")
	admit("192.0.2.1:3", "per-source-max-startups")
	admit("[::ffff:192.0.2.1]:4", "per-source-max-startups") // the same address, mapped
	dice = 49                                                // below 50 %: dropped at 2 of start 2
	admit("192.0.2.2:1", "max-startups")
	dice = 50
	admit("192.0.2.2:1", "")
	dice = 74 // at 3: 75 %
	admit("[2001:db8::1]:1", "max-startups")
	dice = 75
	admit("[2001:db8::1]:1", "")
	dice = 99
	admit("[2001:db8::2]:1", "max-startups") // full: 100 %
	if st := g.stats(); st.Unauthenticated != 4 || st.Dropped != 5 {
		t.Fatalf("stats %+v, want 4 unauthenticated, 5 dropped", st)
	}
	held[0]()
	held[0]()
	if st := g.stats(); st.Unauthenticated != 3 {
		t.Fatalf("after releasing one slot twice: %d unauthenticated, want 3", st.Unauthenticated)
	}
	dice = 99 // at 3: 75 %, so let in
	admit("[2001:db8::3]:1", "")
	admit("[2001:db8::4]:1", "per-source-max-startups") // a third in 2001:db8::/64
	admit("192.0.2.1:5", "max-startups")                // its source has room, the server does not
}
