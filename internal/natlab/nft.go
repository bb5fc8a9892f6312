package natlab

import (
	"net/netip"
	"strconv"
	"strings"
)

// Redirect is one port mapping as the router's nftables ruleset holds it:
// what arrives on the WAN side for ExternalPort goes to Internal.
type Redirect struct {
	Proto        string // "tcp" or "udp"
	ExternalPort uint16
	Internal     netip.AddrPort
}

// ParseRedirects finds the dnat rules in the output of `nft list ruleset`,
// such as miniupnpd 2.3.1's
//
//	iif "wan0" @nh,72,8 0x6 th dport 18080 dnat ip to 192.168.77.2:8080
//
// (0x6 being the IPv4 protocol number of TCP, 0x11 UDP's), or the same
// written with "meta l4proto tcp", "ip protocol udp" or "tcp dport N". Lines
// it cannot read whole are left out.
func ParseRedirects(ruleset string) []Redirect {
	var out []Redirect
	for line := range strings.Lines(ruleset) {
		f := strings.Fields(line)
		var r Redirect
		var to string
		for i, w := range f {
			next := ""
			if i+1 < len(f) {
				next = f[i+1]
			}
			switch {
			case w == "@nh,72,8" || w == "l4proto" || w == "protocol":
				r.Proto = protoName(next)
			case (w == "tcp" || w == "udp") && next == "dport":
				r.Proto = w
			case w == "dport" && r.ExternalPort == 0:
				if p, err := strconv.ParseUint(next, 10, 16); err == nil {
					r.ExternalPort = uint16(p)
				}
			case w == "dnat":
				// "dnat to A:P", "dnat ip to A:P"
				for _, v := range f[i+1:] {
					if v != "ip" && v != "to" {
						to = v
						break
					}
				}
			}
		}
		if to == "" || r.Proto == "" || r.ExternalPort == 0 {
			continue
		}
		ap, err := netip.ParseAddrPort(to)
		if err != nil {
			continue
		}
		r.Internal = ap
		out = append(out, r)
	}
	return out
}

func protoName(s string) string {
	switch s {
	case "0x6", "6", "tcp":
		return "tcp"
	case "0x11", "17", "udp":
		return "udp"
	}
	return ""
}
