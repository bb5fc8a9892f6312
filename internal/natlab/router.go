package natlab

import "testing"

// NewRouter builds a lab whose router only routes: the same three
// namespaces, addresses and interfaces as New's (see the package comment),
// forwarding on in the router, and an nftables ruleset with no rule in it.
// The LAN host reaches the internet host through the router untouched;
// the internet host has no route to the LAN, so it reaches the LAN host
// only through what the router's own rules translate to it, as pinhole
// forward --kernel's DNAT to the router's WAN address does. Ruleset shows
// those rules. It needs root, ip and nft; without
// them it skips the test. Everything is torn down when the test ends.
func NewRouter(t testing.TB) *Lab {
	t.Helper()
	ip, nft := need(t)
	return newLab(t, ip, nft, "table inet filter {\n}\n")
}
