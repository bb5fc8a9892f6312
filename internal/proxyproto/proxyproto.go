// Package proxyproto writes the header of the PROXY protocol (haproxy's
// proxy-protocol.txt, versions 1 and 2), which a proxy sends as the first
// bytes of a TCP connection so that the server behind it learns the real
// client's address. pinhole's server writes it at the start of each
// stream of a remote forward that asked for it (proxy-protocol=v1|v2);
// it never reads one.
package proxyproto

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strconv"
)

// Version is a PROXY protocol version: V1 (a text line) or V2 (binary).
type Version int

const (
	V1 Version = 1
	V2 Version = 2
)

// ParseVersion reads "v1" or "v2" (also "1", "2").
func ParseVersion(s string) (Version, error) {
	switch s {
	case "v1", "1":
		return V1, nil
	case "v2", "2":
		return V2, nil
	}
	return 0, fmt.Errorf("proxyproto: unknown version %q; write v1 or v2", s)
}

func (v Version) String() string { return "v" + strconv.Itoa(int(v)) }

// signature starts every version 2 header.
var signature = [12]byte{0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a}

// Header is the header of version v for a TCP connection from src (the
// client) to dst (the address it connected to). Both IPv4 gives TCP4;
// otherwise, both valid, TCP6, an IPv4 address written as IPv4-mapped.
// A connection whose addresses are not both valid gets UNKNOWN (v1) or
// an unspecified family (v2): the receiver then uses the connection's own
// addresses.
func Header(v Version, src, dst netip.AddrPort) []byte {
	sa, da := src.Addr().Unmap().WithZone(""), dst.Addr().Unmap().WithZone("")
	known := src.IsValid() && dst.IsValid()
	v4 := known && sa.Is4() && da.Is4()
	if v == V1 {
		if !known {
			return []byte("PROXY UNKNOWN\r\n")
		}
		proto := "TCP4"
		if !v4 {
			proto = "TCP6"
			sa, da = netip.AddrFrom16(sa.As16()), netip.AddrFrom16(da.As16())
		}
		// A v4-mapped address prints as ::ffff:a.b.c.d, which the spec's
		// TCP6 form (and nginx) reads.
		return fmt.Appendf(nil, "PROXY %s %s %s %d %d\r\n", proto, sa, da, src.Port(), dst.Port())
	}
	b := make([]byte, 16, 16+36)
	copy(b, signature[:])
	b[12] = 0x21 // version 2, PROXY
	switch {
	case !known:
		b[13] = 0x00 // UNSPEC
	case v4:
		b[13] = 0x11 // TCP over IPv4
		s, d := sa.As4(), da.As4()
		b = append(append(b, s[:]...), d[:]...)
		b = binary.BigEndian.AppendUint16(b, src.Port())
		b = binary.BigEndian.AppendUint16(b, dst.Port())
	default:
		b[13] = 0x21 // TCP over IPv6
		s, d := sa.As16(), da.As16()
		b = append(append(b, s[:]...), d[:]...)
		b = binary.BigEndian.AppendUint16(b, src.Port())
		b = binary.BigEndian.AppendUint16(b, dst.Port())
	}
	binary.BigEndian.PutUint16(b[14:16], uint16(len(b)-16))
	return b
}

// AddrPort is a net.Addr's address and port, invalid when it has none
// (a pipe's): what Header takes.
func AddrPort(a net.Addr) netip.AddrPort {
	switch a := a.(type) {
	case *net.TCPAddr:
		return a.AddrPort()
	case *net.UDPAddr:
		return a.AddrPort()
	}
	if a == nil {
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}
