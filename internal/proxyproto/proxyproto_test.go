package proxyproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
)

// parse is a reader of both versions written from the spec, independent
// of Header's code, for the round trip: it returns the source and
// destination, invalid for UNKNOWN / UNSPEC, and the header's length.
func parse(b []byte) (src, dst netip.AddrPort, n int, err error) {
	if bytes.HasPrefix(b, signature[:]) {
		if len(b) < 16 {
			return src, dst, 0, errors.New("short v2 header")
		}
		if b[12]>>4 != 2 || b[12]&0xf > 1 {
			return src, dst, 0, fmt.Errorf("bad version/command %#x", b[12])
		}
		l := int(binary.BigEndian.Uint16(b[14:16]))
		if len(b) < 16+l {
			return src, dst, 0, errors.New("short v2 addresses")
		}
		a := b[16 : 16+l]
		switch b[13] {
		case 0x00:
		case 0x11:
			if l < 12 {
				return src, dst, 0, errors.New("short TCP4 block")
			}
			src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[0:4])), binary.BigEndian.Uint16(a[8:10]))
			dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(a[4:8])), binary.BigEndian.Uint16(a[10:12]))
		case 0x21:
			if l < 36 {
				return src, dst, 0, errors.New("short TCP6 block")
			}
			src = netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[0:16])), binary.BigEndian.Uint16(a[32:34]))
			dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(a[16:32])), binary.BigEndian.Uint16(a[34:36]))
		default:
			return src, dst, 0, fmt.Errorf("bad family %#x", b[13])
		}
		return src, dst, 16 + l, nil
	}
	i := bytes.Index(b, []byte("\r\n"))
	if i < 0 || i > 105 {
		return src, dst, 0, errors.New("no v1 line within 107 bytes")
	}
	f := strings.Split(string(b[:i]), " ")
	if f[0] != "PROXY" || len(f) < 2 {
		return src, dst, 0, errors.New("not PROXY")
	}
	if f[1] == "UNKNOWN" {
		return src, dst, i + 2, nil
	}
	if len(f) != 6 || (f[1] != "TCP4" && f[1] != "TCP6") {
		return src, dst, 0, fmt.Errorf("bad v1 line %q", b[:i])
	}
	sa, err1 := netip.ParseAddr(f[2])
	da, err2 := netip.ParseAddr(f[3])
	sp, err3 := strconv.ParseUint(f[4], 10, 16)
	dp, err4 := strconv.ParseUint(f[5], 10, 16)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return src, dst, 0, err
	}
	if (f[1] == "TCP4") != (sa.Is4() && da.Is4()) {
		return src, dst, 0, fmt.Errorf("family %s with %s %s", f[1], sa, da)
	}
	return netip.AddrPortFrom(sa, uint16(sp)), netip.AddrPortFrom(da, uint16(dp)), i + 2, nil
}

func TestHeader(t *testing.T) {
	ap := netip.MustParseAddrPort
	for _, tc := range []struct {
		v        Version
		src, dst netip.AddrPort
		want     string
	}{
		{V1, ap("127.0.0.1:40000"), ap("127.0.0.1:8080"), "PROXY TCP4 127.0.0.1 127.0.0.1 40000 8080\r\n"},
		{V1, ap("[2001:db8::1]:1"), ap("[::1]:443"), "PROXY TCP6 2001:db8::1 ::1 1 443\r\n"},
		{V1, ap("[::ffff:192.0.2.1]:5"), ap("192.0.2.2:6"), "PROXY TCP4 192.0.2.1 192.0.2.2 5 6\r\n"},
		{V1, ap("192.0.2.1:5"), ap("[::1]:6"), "PROXY TCP6 ::ffff:192.0.2.1 ::1 5 6\r\n"},
		{V1, netip.AddrPort{}, ap("[::1]:6"), "PROXY UNKNOWN\r\n"},
		{V2, ap("127.0.0.1:40000"), ap("127.0.0.2:8080"),
			"\r\n\r\n\x00\r\nQUIT\n\x21\x11\x00\x0c\x7f\x00\x00\x01\x7f\x00\x00\x02\x9c\x40\x1f\x90"},
		{V2, netip.AddrPort{}, netip.AddrPort{}, "\r\n\r\n\x00\r\nQUIT\n\x21\x00\x00\x00"},
	} {
		t.Run(fmt.Sprintf("%v %v %v", tc.v, tc.src, tc.dst), func(t *testing.T) {
			if got := string(Header(tc.v, tc.src, tc.dst)); got != tc.want {
				t.Errorf("got %q\nwant %q", got, tc.want)
			}
		})
	}
	h := Header(V2, ap("[2001:db8::1]:1"), ap("[::1]:443"))
	if len(h) != 16+36 || h[13] != 0x21 || binary.BigEndian.Uint16(h[14:]) != 36 {
		t.Errorf("v2 TCP6: % x", h)
	}
}

func TestParseVersion(t *testing.T) {
	for s, want := range map[string]Version{"v1": V1, "1": V1, "v2": V2, "2": V2} {
		if v, err := ParseVersion(s); err != nil || v != want {
			t.Errorf("%q: %v %v", s, v, err)
		}
	}
	if _, err := ParseVersion("v3"); err == nil || !strings.HasPrefix(err.Error(), "proxyproto: ") {
		t.Errorf("v3: %v", err)
	}
}

// FuzzHeader: every header parses back (with the spec reader above) to
// the addresses it was made of, within the spec's length bounds.
func FuzzHeader(f *testing.F) {
	f.Add(uint8(1), []byte{127, 0, 0, 1}, uint16(1), []byte{127, 0, 0, 1}, uint16(2))
	f.Add(uint8(2), bytes.Repeat([]byte{0x20}, 16), uint16(1), []byte{10, 0, 0, 1}, uint16(2))
	f.Add(uint8(2), []byte{}, uint16(0), []byte{1}, uint16(0))
	f.Fuzz(func(t *testing.T, v uint8, s []byte, sp uint16, d []byte, dp uint16) {
		ver := V1 + Version(v%2)
		addr := func(b []byte, p uint16) netip.AddrPort {
			a, _ := netip.AddrFromSlice(b)
			return netip.AddrPortFrom(a, p)
		}
		src, dst := addr(s, sp), addr(d, dp)
		h := Header(ver, src, dst)
		if ver == V1 && len(h) > 107 || ver == V2 && len(h) > 16+36 {
			t.Fatalf("header of %d bytes: %q", len(h), h)
		}
		gs, gd, n, err := parse(append(h, "GET / HTTP/1.1\r\n"...))
		if err != nil || n != len(h) {
			t.Fatalf("%q: %v (length %d of %d)", h, err, n, len(h))
		}
		if !src.IsValid() || !dst.IsValid() {
			if gs.IsValid() || gd.IsValid() {
				t.Fatalf("%q: addresses %v %v from invalid input", h, gs, gd)
			}
			return
		}
		norm := func(a netip.AddrPort) netip.AddrPort {
			return netip.AddrPortFrom(a.Addr().Unmap().WithZone(""), a.Port())
		}
		if norm(gs) != norm(src) || norm(gd) != norm(dst) {
			t.Fatalf("%q: %v %v, want %v %v", h, gs, gd, src, dst)
		}
	})
}
