package portmap

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// DefaultGateway returns the IPv4 default gateway from the routing table.
// It returns an error wrapping ErrNoGateway where there is none, and on
// systems where reading the table is not implemented.
func DefaultGateway() (netip.Addr, error) {
	return defaultGateway()
}

// parseProcNetRoute returns the gateway of the default route with the
// lowest metric in the text of Linux's /proc/net/route, whose addresses
// are hexadecimal in the machine's byte order (little-endian on every
// machine pinhole runs on).
func parseProcNetRoute(b []byte) (netip.Addr, error) {
	const (
		rtfUp      = 0x1
		rtfGateway = 0x2
	)
	sc := bufio.NewScanner(bytes.NewReader(b))
	var best netip.Addr
	bestMetric := -1
	first := true
	for sc.Scan() {
		if first { // the header line
			first = false
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) < 8 {
			continue
		}
		dest, err1 := parseRouteHex(f[1])
		gw, err2 := parseRouteHex(f[2])
		flags, err3 := strconv.ParseUint(f[3], 16, 32)
		metric, err4 := strconv.Atoi(f[6])
		mask, err5 := parseRouteHex(f[7])
		if err1 != nil || err2 != nil || err3 != nil || err4 != nil || err5 != nil {
			continue
		}
		if !dest.IsUnspecified() || !mask.IsUnspecified() || flags&(rtfUp|rtfGateway) != rtfUp|rtfGateway || gw.IsUnspecified() {
			continue
		}
		if bestMetric < 0 || metric < bestMetric {
			best, bestMetric = gw, metric
		}
	}
	if err := sc.Err(); err != nil {
		return netip.Addr{}, fmt.Errorf("portmap: reading the routing table: %w", err)
	}
	if !best.IsValid() {
		return netip.Addr{}, ErrNoGateway
	}
	return best, nil
}

// parseRouteHex parses an address of /proc/net/route ("0101A8C0" is
// 192.168.1.1).
func parseRouteHex(s string) (netip.Addr, error) {
	if len(s) != 8 {
		return netip.Addr{}, fmt.Errorf("portmap: route address %q is not 8 hex digits", s)
	}
	var b [4]byte
	if _, err := hex.Decode(b[:], []byte(s)); err != nil {
		return netip.Addr{}, err
	}
	var out [4]byte
	binary.BigEndian.PutUint32(out[:], binary.LittleEndian.Uint32(b[:]))
	return netip.AddrFrom4(out), nil
}

// localAddrTo returns this machine's address on the route to gw. A
// connected UDP socket makes the kernel choose it; no packet is sent.
func localAddrTo(gw netip.Addr, port uint16) (netip.Addr, error) {
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(gw, port)))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("portmap: no route to gateway %s: %w", gw, err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap(), nil
}
