package dnat

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/pinhole-dev/pinhole/internal/spec"
)

func TestRuleset(t *testing.T) {
	got, err := Ruleset("pinhole-forward-7", []Rule{
		{Proto: spec.TCP, Listen: netip.AddrPortFrom(netip.Addr{}, 8080), Target: netip.MustParseAddrPort("10.0.0.5:80")},
		{Proto: spec.UDP, Listen: netip.MustParseAddrPort("11.22.33.1:53"), Target: netip.MustParseAddrPort("192.168.77.2:5353")},
		{Proto: spec.TCP, Listen: netip.MustParseAddrPort("[::1]:443"), Target: netip.MustParseAddrPort("[fd00::2]:8443")},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `table inet pinhole-forward-7 {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		fib daddr type local meta nfproto ipv4 tcp dport 8080 dnat ip to 10.0.0.5:80
		ip daddr 11.22.33.1 udp dport 53 dnat ip to 192.168.77.2:5353
		ip6 daddr ::1 tcp dport 443 dnat ip6 to [fd00::2]:8443
	}
	chain output {
		type nat hook output priority -100; policy accept;
		fib daddr type local meta nfproto ipv4 tcp dport 8080 dnat ip to 10.0.0.5:80
		ip daddr 11.22.33.1 udp dport 53 dnat ip to 192.168.77.2:5353
		ip6 daddr ::1 tcp dport 443 dnat ip6 to [fd00::2]:8443
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip daddr 10.0.0.5 tcp dport 80 ct status dnat ct original proto-dst 8080 masquerade
		ip daddr 192.168.77.2 udp dport 5353 ct status dnat ct original proto-dst 53 masquerade
		ip6 daddr fd00::2 tcp dport 8443 ct status dnat ct original proto-dst 443 masquerade
	}
}
`
	if got != want {
		t.Errorf("Ruleset:\n%s\nwant:\n%s", got, want)
	}
}

func TestRulesetErrors(t *testing.T) {
	for _, tc := range []struct {
		name  string
		table string
		rule  Rule
		want  string
	}{
		{"port 0", "t", Rule{Proto: spec.TCP, Listen: netip.AddrPortFrom(netip.Addr{}, 0), Target: netip.MustParseAddrPort("10.0.0.5:80")}, "tcp://:0: --kernel needs a listening port 1-65535, not 0"},
		{"families", "t", Rule{Proto: spec.TCP, Listen: netip.MustParseAddrPort("[::1]:1"), Target: netip.MustParseAddrPort("10.0.0.5:80")}, "between IPv4 and IPv6"},
		{"no target", "t", Rule{Proto: spec.TCP, Listen: netip.AddrPortFrom(netip.Addr{}, 1)}, "want an IP address"},
		{"table name", "a b", Rule{Proto: spec.TCP, Listen: netip.AddrPortFrom(netip.Addr{}, 1), Target: netip.MustParseAddrPort("10.0.0.5:80")}, "table name"},
	} {
		_, err := Ruleset(tc.table, []Rule{tc.rule})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "dnat: ") {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
	}
}
