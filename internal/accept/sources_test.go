package accept

import (
	"net"
	"testing"
)

func TestCountsBySource(t *testing.T) {
	a := SourceOf(&net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 1})
	b := SourceOf(&net.TCPAddr{IP: net.ParseIP("2001:db8::ffff:2"), Port: 2})
	v4 := SourceOf(&net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 3})
	if a != b || a.Bits() != 64 || v4.Bits() != 32 || a == v4 {
		t.Fatalf("sources: %v %v %v; want one /64 for both IPv6 addresses, a /32 for IPv4", a, b, v4)
	}
	var c Counts
	r1, r2, r3 := c.Add(a), c.Add(b), c.Add(v4)
	if c.Total() != 3 || c.From(a) != 2 || c.From(v4) != 1 {
		t.Fatalf("total %d, from a %d, from v4 %d", c.Total(), c.From(a), c.From(v4))
	}
	r1()
	r1() // once only
	if c.Total() != 2 || c.From(a) != 1 {
		t.Fatalf("after one release, twice: total %d, from a %d", c.Total(), c.From(a))
	}
	r2()
	r3()
	if c.Total() != 0 || len(c.bySource) != 0 {
		t.Fatalf("all released: total %d, %d sources kept", c.Total(), len(c.bySource))
	}
}
