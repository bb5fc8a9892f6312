// Package spec parses and prints forwarding specifications in the form
// OpenSSH takes them on its command line: -L [bind:]port:host:hostport,
// -R [bind:]port:host:hostport and -D [bind:]port, with IPv6 literals in
// brackets and an optional /tcp or /udp suffix.
//
// Parse and Forward.String round-trip: for every Forward f that Parse
// returns, Parse(f.Kind, f.String()) returns f again.
package spec

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Kind is the kind of forwarding, named after the ssh flag that asks for it.
type Kind uint8

const (
	Local   Kind = iota + 1 // -L: listen here, the peer dials the target
	Remote                  // -R: the peer listens, we dial the target
	Dynamic                 // -D: listen here as a SOCKS/HTTP CONNECT proxy
)

// String returns the flag that asks for k: "-L", "-R" or "-D".
func (k Kind) String() string {
	switch k {
	case Local:
		return "-L"
	case Remote:
		return "-R"
	case Dynamic:
		return "-D"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Proto is the transport protocol that a forward carries.
type Proto uint8

const (
	TCP Proto = iota // the default
	UDP              // written with a /udp suffix
)

// String returns "tcp" or "udp".
func (p Proto) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return "Proto(" + strconv.Itoa(int(p)) + ")"
}

// Forward is one parsed -L, -R or -D argument.
type Forward struct {
	Kind  Kind
	Proto Proto
	// BindHost is "" when omitted; "*" for all addresses (written "*" or
	// left empty as in ":8080"); else a host name or an IP literal without
	// brackets.
	BindHost string
	// BindPort may be 0: with -R the server picks a port, with -L and -D
	// a free local port is picked.
	BindPort uint16
	// Host is the target host, a name or an IP literal without brackets;
	// "" for Dynamic.
	Host string
	// HostPort is the target port, 1-65535; 0 for Dynamic.
	HostPort uint16
}

// Usage strings, each with an example, used in error messages.
const (
	usageForward = "want [bind:]port:host:hostport, e.g. 8080:localhost:80"
	usageDynamic = "want [bind:]port, e.g. 1080 or 127.0.0.1:1080"
	hintBrackets = "put IPv6 addresses in brackets, e.g. [::1]:8080:[fe80::1]:80"
)

// maxSpecLen bounds the input; no valid spec comes near it.
const maxSpecLen = 1024

// Parse parses the argument s of the flag that k names, for example
// Parse(Local, "8080:db:5432") or Parse(Dynamic, "[::1]:1080").
func Parse(k Kind, s string) (Forward, error) {
	if k < Local || k > Dynamic {
		return Forward{}, fmt.Errorf("spec: invalid kind %d", uint8(k))
	}
	p := parser{kind: k, spec: s}
	return p.parse()
}

type parser struct {
	kind Kind
	spec string
}

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("spec: %s %q: "+format, append([]any{p.kind, p.spec}, args...)...)
}

func (p *parser) usage() string {
	if p.kind == Dynamic {
		return usageDynamic
	}
	return usageForward
}

// field is one colon-separated part of a spec.
type field struct {
	text      string
	bracketed bool
}

func (p *parser) parse() (Forward, error) {
	s := p.spec
	f := Forward{Kind: p.kind}
	if s == "" {
		return Forward{}, p.errorf("empty; %s", p.usage())
	}
	if len(s) > maxSpecLen {
		return Forward{}, p.errorf("longer than %d bytes", maxSpecLen)
	}
	if strings.HasPrefix(s, "/") || strings.Contains(s, ":/") {
		return Forward{}, p.errorf("unix-socket forwarding is not supported; use host:port")
	}
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		switch suffix := s[i+1:]; {
		case strings.EqualFold(suffix, "tcp"):
			f.Proto = TCP
		case strings.EqualFold(suffix, "udp"):
			f.Proto = UDP
		default:
			return Forward{}, p.errorf("unknown protocol suffix %q; use /tcp or /udp", "/"+suffix)
		}
		s = s[:i]
		if strings.ContainsRune(s, '/') {
			return Forward{}, p.errorf("unexpected '/'; only one /tcp or /udp suffix is allowed")
		}
	}
	if p.kind == Dynamic && f.Proto == UDP {
		return Forward{}, p.errorf("-D does not carry UDP; use -L or -R with /udp")
	}

	fields, err := p.split(s)
	if err != nil {
		return Forward{}, err
	}
	minFields, maxFields := 3, 4
	if p.kind == Dynamic {
		minFields, maxFields = 1, 2
	}
	if len(fields) > maxFields {
		if !strings.Contains(s, "[") && strings.Count(s, ":") > maxFields-1 {
			return Forward{}, p.errorf("too many ':'; %s; %s", hintBrackets, p.usage())
		}
		return Forward{}, p.errorf("too many ':'-separated fields; %s", p.usage())
	}
	if len(fields) < minFields {
		if p.kind == Remote && len(fields) <= 2 {
			return Forward{}, p.errorf("remote dynamic forwarding (-R [bind:]port) is not supported; %s", p.usage())
		}
		return Forward{}, p.errorf("%s", p.usage())
	}

	if len(fields) == maxFields {
		bind := fields[0]
		fields = fields[1:]
		switch {
		case !bind.bracketed && (bind.text == "" || bind.text == "*"):
			f.BindHost = "*"
		default:
			if f.BindHost, err = p.host("bind address", bind); err != nil {
				return Forward{}, err
			}
		}
	}
	if f.BindPort, err = p.port("port", fields[0], true); err != nil {
		return Forward{}, err
	}
	if p.kind == Dynamic {
		return f, nil
	}
	if f.Host, err = p.host("host", fields[1]); err != nil {
		return Forward{}, err
	}
	if f.HostPort, err = p.port("hostport", fields[2], false); err != nil {
		return Forward{}, err
	}
	return f, nil
}

// split splits s at colons outside brackets.
func (p *parser) split(s string) ([]field, error) {
	var fields []field
	for {
		var fl field
		if strings.HasPrefix(s, "[") {
			end := strings.IndexByte(s, ']')
			if end < 0 {
				return nil, p.errorf("missing ']' after '['; %s", p.usage())
			}
			fl = field{text: s[1:end], bracketed: true}
			s = s[end+1:]
			if s != "" && s[0] != ':' {
				return nil, p.errorf("want ':' after ']'; %s", p.usage())
			}
		} else {
			end := strings.IndexByte(s, ':')
			if end < 0 {
				end = len(s)
			}
			fl = field{text: s[:end]}
			s = s[end:]
			if strings.ContainsAny(fl.text, "[]") {
				return nil, p.errorf("misplaced bracket in %q; brackets go around a whole IPv6 address, e.g. [::1]", fl.text)
			}
		}
		fields = append(fields, fl)
		if s == "" {
			return fields, nil
		}
		s = s[1:] // the ':'
	}
}

// hint returns what to tell the user after a field did not parse: the
// usage, or how to write IPv6 addresses when an unbracketed one is likely
// the cause.
func (p *parser) hint() string {
	if strings.Contains(p.spec, "::") && !strings.Contains(p.spec, "[") {
		return hintBrackets
	}
	return p.usage()
}

// port parses a decimal port; zero is allowed only when zeroOK.
func (p *parser) port(what string, fl field, zeroOK bool) (uint16, error) {
	if fl.bracketed {
		return 0, p.errorf("%s %q: a port is not written in brackets", what, "["+fl.text+"]")
	}
	if fl.text == "" {
		return 0, p.errorf("empty %s; %s", what, p.hint())
	}
	n, err := strconv.ParseUint(fl.text, 10, 16)
	if err != nil {
		return 0, p.errorf("%s %q is not a port number 1-65535; %s", what, fl.text, p.hint())
	}
	if n == 0 && !zeroOK {
		return 0, p.errorf("%s 0 is not allowed; use a port 1-65535", what)
	}
	return uint16(n), nil
}

// host validates a host name or an IP literal.
func (p *parser) host(what string, fl field) (string, error) {
	if fl.bracketed {
		if _, err := parseAddr(fl.text); err != nil {
			return "", p.errorf("%s %q: only IP addresses go in brackets", what, "["+fl.text+"]")
		}
		return fl.text, nil
	}
	if err := checkHostname(fl.text); err != nil {
		return "", p.errorf("%s %q: %w", what, fl.text, err)
	}
	return fl.text, nil
}

// maxHostnameLen is the longest DNS name (RFC 1035, without the root dot
// it may carry).
const maxHostnameLen = 254

func checkHostname(h string) error {
	if h == "" {
		return errors.New("empty; give a host name or IP address")
	}
	if len(h) > maxHostnameLen {
		return fmt.Errorf("longer than %d bytes", maxHostnameLen)
	}
	if h[0] == '-' {
		return errors.New("a host name cannot start with '-'")
	}
	numeric := true
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case c >= '0' && c <= '9', c == '.':
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '-', c == '_':
			numeric = false
		default:
			return fmt.Errorf("invalid character %q in host name; use letters, digits, '-', '.', '_' or an IP address", c)
		}
	}
	if numeric && strings.Contains(h, ".") {
		if _, err := netip.ParseAddr(h); err != nil {
			return errors.New("not a valid IPv4 address")
		}
	}
	return nil
}

// parseAddr parses an IP literal, allowing an IPv6 zone only of host name
// characters so that the literal prints back unchanged.
func parseAddr(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, err
	}
	if z := a.Zone(); z != "" {
		for i := 0; i < len(z); i++ {
			c := z[i]
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '.' || c == '_') {
				return netip.Addr{}, fmt.Errorf("invalid character %q in zone", c)
			}
		}
	}
	return a, nil
}

// String returns f in the canonical form Parse takes, without the flag:
// "8080:db:5432", "127.0.0.1:8080:db:5432/udp", "*:8080:[::1]:80",
// "[::1]:1080". The /tcp suffix is omitted.
func (f Forward) String() string {
	var b strings.Builder
	if f.BindHost != "" {
		b.WriteString(bracket(f.BindHost))
		b.WriteByte(':')
	}
	b.WriteString(strconv.Itoa(int(f.BindPort)))
	if f.Kind != Dynamic {
		b.WriteByte(':')
		b.WriteString(bracket(f.Host))
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(int(f.HostPort)))
	}
	if f.Proto == UDP {
		b.WriteString("/udp")
	}
	return b.String()
}

func bracket(h string) string {
	if strings.ContainsRune(h, ':') {
		return "[" + h + "]"
	}
	return h
}

// BindAddr returns net.JoinHostPort of BindHost, as is ("" stays "", "*"
// stays "*"), and BindPort.
func (f Forward) BindAddr() string {
	return net.JoinHostPort(f.BindHost, strconv.Itoa(int(f.BindPort)))
}

// ListenAddr is the address a -L or -D forward listens on here, as ssh
// does without GatewayPorts: 127.0.0.1 when no bind address was given, all
// addresses for "*", else the bind address.
func (f Forward) ListenAddr() string {
	host := f.BindHost
	switch host {
	case "":
		host = "127.0.0.1"
	case "*":
		host = ""
	}
	return net.JoinHostPort(host, strconv.Itoa(int(f.BindPort)))
}

// Target returns net.JoinHostPort of Host and HostPort.
func (f Forward) Target() string {
	return net.JoinHostPort(f.Host, strconv.Itoa(int(f.HostPort)))
}

// LoopbackHost reports whether host, a name or address alone or with a
// port (host:port, [v6]:port), is localhost or a loopback address; ""
// (every address) is not.
func LoopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}
