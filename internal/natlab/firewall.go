package natlab

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// FirewallConfig is what a test chooses about the router of a firewall lab
// (NewFirewall). The zero value is a router that lets nothing out of the
// LAN.
type FirewallConfig struct {
	// AllowTCP lists the destination ports to which the LAN may open new
	// TCP connections through the router, e.g. {443} for "only HTTPS
	// leaves" or {3128} for "only the office proxy's port". Nothing else
	// from the LAN is forwarded: no other TCP port, no UDP, no ICMP.
	// Packets of a connection already allowed, and ICMP errors about it,
	// pass both ways.
	AllowTCP []uint16

	// Reject makes the router turn away what it does not forward with a
	// TCP reset (ICMP "administratively prohibited" for everything but
	// TCP), so that a connect fails at once with "connection refused"
	// (for UDP, a later read on a connected socket fails). The default,
	// false, drops it silently, as most firewalls do: a connect then
	// times out.
	Reject bool
}

// NewFirewall builds a lab whose router is a firewall instead of a home
// router: the same three namespaces, addresses and interfaces as New's
// (LAN host, router, internet host; see the package comment), with no
// miniupnpd, and a router that forwards from the LAN to the WAN side only
// new TCP connections to cfg.AllowTCP's ports (a SYN with no other flag),
// and return traffic of connections it let through; it masquerades what
// leaves by the WAN side, as New's router does. Nothing from the WAN side
// may open a connection to the LAN.
//
// Programs run in the lab's namespaces with Start, Command and Output; Go
// code listens and dials there with Listen, ListenUDP, Dial and InNamespace.
// NewFirewall needs root, ip and nft (not miniupnpd); without them it skips
// the test. Everything is torn down when the test ends.
func NewFirewall(t testing.TB, cfg FirewallConfig) *Lab {
	t.Helper()
	ip, nft := need(t)
	return newLab(t, ip, nft, firewallRules(cfg))
}

// firewallRules is the ruleset of a firewall lab's router.
func firewallRules(cfg FirewallConfig) string {
	allow := ""
	if len(cfg.AllowTCP) > 0 {
		ports := slices.Clone(cfg.AllowTCP)
		slices.Sort(ports)
		ports = slices.Compact(ports)
		s := make([]string, len(ports))
		for i, p := range ports {
			s[i] = strconv.Itoa(int(p))
		}
		// The SYN check keeps a stray mid-stream packet, which
		// conntrack would otherwise pick up as a new connection (its
		// nf_conntrack_tcp_loose), from opening a way out.
		allow = fmt.Sprintf("iifname %q oifname %q tcp dport { %s } tcp flags & (fin|syn|rst|ack) == syn ct state new accept\n\t\t",
			RouterLANIf, RouterWANIf, strings.Join(s, ", "))
	}
	refuse := "drop"
	if cfg.Reject {
		refuse = "meta l4proto tcp reject with tcp reset\n\t\treject with icmpx admin-prohibited"
	}
	return fmt.Sprintf(`table inet filter {
	chain forward {
		type filter hook forward priority 0; policy drop;
		ct state established,related accept
		%s%s
	}
	chain postrouting {
		type nat hook postrouting priority 100; policy accept;
		oifname %q masquerade
	}
}
`, allow, refuse, RouterWANIf)
}
