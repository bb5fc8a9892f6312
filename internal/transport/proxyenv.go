package transport

import (
	"fmt"
	"net/netip"
	"net/url"
	"strings"
)

// ProxyFromEnv returns the proxy that curl would use, from the environment
// read through getenv (os.Getenv), for a connection of scheme to
// host:port: nil for none, or the URL as ParseProxy reads it. A variable
// that is set but empty counts as unset (getenv cannot tell them apart).
//
// First no_proxy, or NO_PROXY if that is empty, is checked against host
// (see below); if host is in it, there is no proxy. Otherwise the first of
// these variables that is set names the proxy:
//
//	ssh: all_proxy, ALL_PROXY
//	tls: https_proxy, HTTPS_PROXY, all_proxy, ALL_PROXY
//	ws:  ws_proxy, WS_PROXY, http_proxy, all_proxy, ALL_PROXY
//	wss: wss_proxy, WSS_PROXY, https_proxy, HTTPS_PROXY, all_proxy, ALL_PROXY
//
// This is curl's detect_proxy (lib/url.c): the scheme's own variable in
// lower case then upper case, for ws and wss curl's fallback to the
// http and https variables, then all_proxy and ALL_PROXY. HTTP_PROXY in
// upper case is never read, as in curl, because a CGI program gets the
// client's "Proxy:" request header in it. curl has no tls:// scheme; TLS
// is what https is, so tls reads https's variables. ssh has no variable
// of its own (pinhole's ssh:// is not curl's scp:// or sftp://).
//
// The NO_PROXY rules are curl's Curl_check_noproxy (lib/noproxy.c, curl
// 7.86 and later; documented in CURLOPT_NOPROXY(3) and curl(1) --noproxy):
//
//   - The value "*" alone matches every host. A "*" within a list matches
//     nothing (but a host named "*").
//   - Otherwise it is a list of entries separated by commas; spaces and
//     tabs around an entry are skipped, and a space or tab followed by
//     anything but a comma ends the list, as in curl's current source
//     (curl 7.88 took "a.com b.com" as two entries; write commas).
//   - A host that is an IPv4 or IPv6 address (the host comes without
//     brackets) matches an entry that is the same address, compared as
//     addresses ("::1" matches "0::1"), or a CIDR block with the address
//     in it ("10.0.0.0/8", "fe80::/10"). A prefix length of 0 means the
//     whole address, as in curl ("10.0.0.0/0" matches 10.0.0.0 only); one
//     past 32 (IPv4) or 128 (IPv6) matches nothing; the length is read as
//     C's atoi does ("/8x" is /8). An IPv4 address never matches an IPv6
//     entry or the other way round (::ffff:10.0.0.1 is not in
//     10.0.0.0/8). Such a host is never matched as a name: "0.0.1" does
//     not match 10.0.0.1. For IPv6 this follows curl's documentation
//     rather than every curl: 7.88 compares IPv6 hosts as strings, and
//     the current Curl_cidr6_match inverts the test of a prefix's last
//     partial byte.
//   - Any other host (a name, "host.10.0.0.1" too) matches an entry equal
//     to it or to one of its parent domains, ignoring ASCII case, one
//     leading dot of the entry and one trailing dot of each:
//     "example.com" and ".example.com" both match example.com and
//     a.example.com, and not badexample.com.
//   - An entry with a port ("example.com:22") is compared whole, port
//     included, as curl does, and so matches no host: write the host
//     alone. The port of the connection plays no part.
//   - Loopback addresses and localhost are not special: they go through
//     the proxy unless NO_PROXY names them, as in curl.
//
// TestNoProxyLikeCurl checks these rules against the curl binary where
// one is installed.
func ProxyFromEnv(getenv func(string) string, scheme Scheme, host string, port uint16) (*url.URL, error) {
	var names []string
	switch scheme {
	case SSH:
	case TLS:
		names = []string{"https_proxy", "HTTPS_PROXY"}
	case WS:
		names = []string{"ws_proxy", "WS_PROXY", "http_proxy"}
	case WSS:
		names = []string{"wss_proxy", "WSS_PROXY", "https_proxy", "HTTPS_PROXY"}
	default:
		return nil, fmt.Errorf("transport: unknown scheme %q; want ssh, tls, ws or wss", scheme)
	}
	names = append(names, "all_proxy", "ALL_PROXY")

	noProxy := getenv("no_proxy")
	if noProxy == "" {
		noProxy = getenv("NO_PROXY")
	}
	if noProxyMatch(noProxy, host) {
		return nil, nil
	}
	for _, name := range names {
		v := getenv(name)
		if v == "" {
			continue
		}
		u, err := ParseProxy(v)
		if err != nil {
			return nil, fmt.Errorf("transport: environment variable %s: %w; fix or unset it", name, err)
		}
		return u, nil
	}
	return nil, nil
}

// noProxyMatch reports whether host is in the NO_PROXY list, by the rules
// in ProxyFromEnv's comment.
func noProxyMatch(list, host string) bool {
	if host == "" || list == "" {
		return false
	}
	if list == "*" {
		return true
	}
	if len(host) > 2 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	ip, err := netip.ParseAddr(host)
	isIP := err == nil
	if !isIP && strings.HasSuffix(host, ".") {
		host = host[:len(host)-1]
	}

	p := list
	for p != "" {
		p = strings.TrimLeft(p, " \t")
		end := strings.IndexAny(p, " \t,")
		if end < 0 {
			end = len(p)
		}
		token := p[:end]
		p = p[end:]
		if token != "" {
			if isIP {
				if ipEntryMatch(ip, token) {
					return true
				}
			} else if hostEntryMatch(host, token) {
				return true
			}
		}
		p = strings.TrimLeft(p, " \t")
		if !strings.HasPrefix(p, ",") {
			break
		}
		p = strings.TrimLeft(p, ",")
	}
	return false
}

// hostEntryMatch reports whether the entry token names host or one of its
// parent domains. host has lost its trailing dot.
func hostEntryMatch(host, token string) bool {
	token = strings.TrimSuffix(token, ".")
	token = strings.TrimPrefix(token, ".")
	switch {
	case len(token) == len(host):
		return asciiEqualFold(token, host)
	case len(token) < len(host):
		return host[len(host)-len(token)-1] == '.' && asciiEqualFold(token, host[len(host)-len(token):])
	}
	return false
}

// ipEntryMatch reports whether the entry token, an address or a CIDR
// block, holds ip.
func ipEntryMatch(ip netip.Addr, token string) bool {
	addr, bits, hasBits := strings.Cut(token, "/")
	a, err := netip.ParseAddr(addr)
	if err != nil || a.Zone() != "" || a.Is4() != ip.Is4() {
		return false
	}
	n := a.BitLen()
	if hasBits {
		b, ok := leadingInt(bits)
		if !ok || b > n {
			return false
		}
		if b > 0 {
			n = b
		}
	}
	pfx, err := a.Prefix(n)
	return err == nil && pfx.Contains(ip)
}

// leadingInt reads the number at the start of s as C's atoi does (the
// digits up to the first non-digit, 0 for none), which is how curl reads
// a prefix length. ok is false for a negative or absurdly long number.
func leadingInt(s string) (n int, ok bool) {
	if s != "" && (s[0] == '+' || s[0] == '-') {
		neg := s[0] == '-'
		s = s[1:]
		if neg {
			m, ok := leadingInt(s)
			return 0, ok && m == 0
		}
	}
	for i := 0; i < len(s) && isDigit(s[i]); i++ {
		if n > 1<<20 {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, true
}

// asciiEqualFold is strings.EqualFold for ASCII letters only, as curl's
// strncasecompare.
func asciiEqualFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
