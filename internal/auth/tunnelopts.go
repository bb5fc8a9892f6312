package auth

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/pinhole-dev/pinhole/internal/proxyproto"
)

// TunnelOptions are the per-tunnel options of a connection's remote
// forwards (docs/names.md, "Per-tunnel options"): from the key's
// pinhole-options="..." in authorized_keys, and from the words a client
// sends as its session's command (ssh -R ... host -- auth=u:p). The zero
// value sets nothing.
type TunnelOptions struct {
	// User and Password are auth=USER:PASSWORD: HTTP basic auth in front
	// of a name. User "" means none.
	User, Password string
	// Allow is allow=CIDR[,CIDR...]: the public clients admitted to the
	// forwards; nil admits every one.
	Allow []netip.Prefix
	// HostHeader is host-header=HOST: the Host a name's service gets in
	// place of the public name; "" keeps the name.
	HostHeader string
	// ProxyProtocol is proxy-protocol=v1|v2: the PROXY header a TCP
	// stream starts with toward the service; 0 means none.
	ProxyProtocol proxyproto.Version
}

// TunnelOptionWords is the syntax, for error messages.
const TunnelOptionWords = "auth=USER:PASSWORD, allow=CIDR[,CIDR...], host-header=HOST[:PORT], proxy-protocol=v1|v2"

// Limits of tunnel options, against a peer's unbounded input.
const (
	maxTunnelWords = 256
	maxAllow       = 64
	maxCredential  = 256
)

// ParseTunnelOptions reads option words, separated by spaces, tabs or
// commas: auth=USER:PASSWORD (USER without ':'; neither with a space or
// ','), allow=CIDR or a bare address, repeated or with more CIDRs after
// commas (allow=10.0.0.0/8,192.0.2.7), host-header=HOST[:PORT] and
// proxy-protocol=v1|v2. auth, host-header and proxy-protocol may appear
// once. Errors start "auth: " and name the word.
func ParseTunnelOptions(s string) (TunnelOptions, error) {
	var o TunnelOptions
	err := o.add(s)
	return o, err
}

// add parses s into o, on top of what o has.
func (o *TunnelOptions) add(s string) error {
	words := strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' || r == ',' || r == '\r' || r == '\n' })
	if len(words) > maxTunnelWords {
		return fmt.Errorf("auth: more than %d tunnel option words", maxTunnelWords)
	}
	inAllow := false // a word without '=' continues allow=
	for i, w := range words {
		key, value, ok := strings.Cut(w, "=")
		if !ok {
			if !inAllow {
				// Not echoed: it may be part of a password with a ','.
				return fmt.Errorf("auth: tunnel option word %d is not NAME=VALUE (a password may hold no space or ','); the options are %s", i+1, TunnelOptionWords)
			}
			key, value = "allow", w
		}
		inAllow = false
		switch strings.ToLower(key) {
		case "auth":
			if o.User != "" {
				return errors.New("auth: auth= given twice; give one USER:PASSWORD")
			}
			user, pass, ok := strings.Cut(value, ":")
			if !ok || user == "" || pass == "" {
				return errors.New("auth: want auth=USER:PASSWORD, both not empty")
			}
			if len(user) > maxCredential || len(pass) > maxCredential {
				return fmt.Errorf("auth: auth= user and password are at most %d bytes each", maxCredential)
			}
			for i := 0; i < len(value); i++ {
				if c := value[i]; c < 0x20 || c == 0x7f {
					return errors.New("auth: auth= may not hold control characters")
				}
			}
			o.User, o.Password = user, pass
		case "allow":
			p, err := parseAllow(value)
			if err != nil {
				return err
			}
			if len(o.Allow) >= maxAllow {
				return fmt.Errorf("auth: more than %d allow= networks; use wider ones", maxAllow)
			}
			o.Allow = append(o.Allow, p)
			inAllow = true
		case "host-header":
			if o.HostHeader != "" {
				return errors.New("auth: host-header= given twice; give one")
			}
			if err := checkHostHeader(value); err != nil {
				return err
			}
			o.HostHeader = value
		case "proxy-protocol":
			if o.ProxyProtocol != 0 {
				return errors.New("auth: proxy-protocol= given twice; give one")
			}
			v, err := proxyproto.ParseVersion(strings.ToLower(value))
			if err != nil {
				return fmt.Errorf("auth: proxy-protocol=%s: want v1 or v2", clip(value))
			}
			o.ProxyProtocol = v
		default:
			return fmt.Errorf("auth: unknown tunnel option %q; the options are %s", clip(key), TunnelOptionWords)
		}
	}
	return nil
}

// clip shortens what a peer sent for an error message.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// parseAllow reads one allow= network, or a bare address (one host).
func parseAllow(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("auth: allow=%s: want an address or a network, e.g. 203.0.113.0/24 or 2001:db8::/32", clip(s))
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("auth: allow=%s: want address/length, e.g. 203.0.113.0/24", clip(s))
	}
	if p != p.Masked() {
		return netip.Prefix{}, fmt.Errorf("auth: allow=%s has host bits set; did you mean %s?", s, p.Masked())
	}
	if p.Addr().Is4In6() {
		p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0)).Masked()
	}
	return p, nil
}

// checkHostHeader admits a host name or address, with an optional port:
// what a Host header holds, nothing that could split it.
func checkHostHeader(s string) error {
	if s == "" || len(s) > 255 {
		return errors.New("auth: want host-header=HOST[:PORT], at most 255 bytes")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte(".-_:[]", c) >= 0) {
			return fmt.Errorf("auth: host-header=%s: %q is not allowed in a host name; want HOST[:PORT]", clip(s), c)
		}
	}
	return nil
}

// IsZero reports whether o sets nothing.
func (o TunnelOptions) IsZero() bool {
	return o.User == "" && o.Allow == nil && o.HostHeader == "" && o.ProxyProtocol == 0
}

// With is o with the options of more added: the session's words on top of
// authorized_keys. An option o sets (the server's owner chose it) cannot
// be set again by more: that is an error, and o is returned unchanged.
// allow= networks of more narrow nothing o allows; more may add allow=
// only when o has none.
func (o TunnelOptions) With(more TunnelOptions) (TunnelOptions, error) {
	var clash []string
	if o.User != "" && more.User != "" {
		clash = append(clash, "auth=")
	}
	if o.Allow != nil && more.Allow != nil {
		clash = append(clash, "allow=")
	}
	if o.HostHeader != "" && more.HostHeader != "" {
		clash = append(clash, "host-header=")
	}
	if o.ProxyProtocol != 0 && more.ProxyProtocol != 0 {
		clash = append(clash, "proxy-protocol=")
	}
	if clash != nil {
		return o, fmt.Errorf("auth: %s set for this key in authorized_keys (pinhole-options) and cannot be changed from the session; leave it out", strings.Join(clash, ", "))
	}
	if more.User != "" {
		o.User, o.Password = more.User, more.Password
	}
	if more.Allow != nil {
		o.Allow = more.Allow
	}
	if more.HostHeader != "" {
		o.HostHeader = more.HostHeader
	}
	if more.ProxyProtocol != 0 {
		o.ProxyProtocol = more.ProxyProtocol
	}
	return o, nil
}

// Allows reports whether a public client from a passes allow=.
func (o TunnelOptions) Allows(a netip.Addr) bool {
	if o.Allow == nil {
		return true
	}
	a = a.Unmap().WithZone("")
	for _, p := range o.Allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// String is o in option words, with the password left out: safe to log.
func (o TunnelOptions) String() string {
	var w []string
	if o.User != "" {
		w = append(w, "auth="+o.User+":***")
	}
	if o.Allow != nil {
		a := make([]string, len(o.Allow))
		for i, p := range o.Allow {
			a[i] = p.String()
		}
		w = append(w, "allow="+strings.Join(a, ","))
	}
	if o.HostHeader != "" {
		w = append(w, "host-header="+o.HostHeader)
	}
	if o.ProxyProtocol != 0 {
		w = append(w, "proxy-protocol="+o.ProxyProtocol.String())
	}
	return strings.Join(w, " ")
}
