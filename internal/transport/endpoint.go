package transport

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Scheme is how the SSH stream travels to the server.
type Scheme string

const (
	SSH Scheme = "ssh" // raw SSH over TCP, default port 22
	TLS Scheme = "tls" // SSH inside TLS (ALPN "ssh"), default port 443
	WS  Scheme = "ws"  // SSH in WebSocket binary messages over plain HTTP, default port 80
	WSS Scheme = "wss" // SSH in WebSocket binary messages over HTTPS, default port 443
)

// DefaultPath is the WebSocket path of pinhole server.
const DefaultPath = "/ssh"

// ALPN is the TLS application protocol that selects SSH at a pinhole
// server's TLS port.
const ALPN = "ssh"

// Endpoint is a server as a URL names it: scheme://[user@]host[:port][/path].
type Endpoint struct {
	Scheme Scheme
	User   string // "" when the URL names none
	Host   string // a name or an IP address, without brackets
	Port   uint16 // never 0 after ParseURL: the scheme's default when the URL has none
	Path   string // ws and wss only: the request path, DefaultPath when the URL has none
}

// DefaultPort is the port of a scheme when a URL names none.
func DefaultPort(s Scheme) uint16 {
	switch s {
	case SSH:
		return 22
	case WS:
		return 80
	}
	return 443
}

// IsURL reports whether s is written as a URL (has a scheme://), and so
// is for ParseURL rather than a plain [user@]host.
func IsURL(s string) bool {
	return strings.Contains(s, "://")
}

// ParseURL reads ssh://[user@]host[:port], tls://[user@]host[:port] and
// ws[s]://[user@]host[:port][/path]. IPv6 addresses go in brackets.
func ParseURL(s string) (Endpoint, error) {
	var e Endpoint
	bad := func(why string) (Endpoint, error) {
		return Endpoint{}, fmt.Errorf("transport: %q: %s; want ssh://, tls://, ws:// or wss:// then [user@]host[:port] (ws and wss: then /path)", s, why)
	}
	u, err := url.Parse(s)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return bad(err.Error())
	}
	e.Scheme = Scheme(strings.ToLower(u.Scheme))
	switch e.Scheme {
	case SSH, TLS, WS, WSS:
	case "":
		return bad("no scheme")
	default:
		return bad("unknown scheme " + strconv.Quote(u.Scheme))
	}
	if u.Opaque != "" {
		return bad("no // after the scheme")
	}
	if _, set := u.User.Password(); set {
		return bad("a password cannot be in the URL: pinhole logs in with keys")
	}
	e.User = u.User.Username()
	if u.User != nil && e.User == "" {
		return bad("empty user before @")
	}
	if strings.ContainsAny(e.User, " \t\r\n'\"\\/:@") {
		return bad("spaces, quotes, slashes, colons and @ cannot be in a user")
	}
	e.Host = u.Hostname()
	switch {
	case e.Host == "":
		return bad("no host")
	case strings.HasPrefix(e.Host, "-"):
		return bad("a host cannot start with -")
	case strings.ContainsAny(e.Host, " \t\r\n'\"\\/@%"):
		return bad("spaces, quotes, slashes, % and @ cannot be in a host")
	}
	if strings.Contains(e.Host, ":") && !strings.HasPrefix(u.Host, "[") {
		return bad("an IPv6 address needs brackets")
	}
	e.Port = DefaultPort(e.Scheme)
	if p := u.Port(); p != "" || strings.HasSuffix(u.Host, ":") {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 || strconv.FormatUint(n, 10) != p {
			return bad(fmt.Sprintf("port %q is not a number from 1 to 65535", p))
		}
		e.Port = uint16(n)
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return bad("a query or fragment has no meaning here")
	}
	switch e.Scheme {
	case WS, WSS:
		e.Path = u.EscapedPath()
		if e.Path == "" {
			e.Path = DefaultPath
		}
	default:
		if u.Path != "" && u.Path != "/" {
			return bad("only ws:// and wss:// take a path")
		}
	}
	return e, nil
}

// Addr is the host:port to connect to.
func (e Endpoint) Addr() string {
	return net.JoinHostPort(e.Host, strconv.Itoa(int(e.Port)))
}

// String is the URL again, with the port always written; ParseURL reads
// it back to e.
func (e Endpoint) String() string {
	var b strings.Builder
	b.WriteString(string(e.Scheme))
	b.WriteString("://")
	if e.User != "" {
		b.WriteString(url.PathEscape(e.User))
		b.WriteByte('@')
	}
	b.WriteString(e.Addr())
	if e.Scheme == WS || e.Scheme == WSS {
		b.WriteString(e.Path)
	}
	return b.String()
}
