package transport

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Proxy schemes that ParseProxy accepts.
const (
	proxyHTTP    = "http"    // HTTP/1.1 CONNECT
	proxyHTTPS   = "https"   // HTTP/1.1 CONNECT inside TLS to the proxy
	proxySOCKS5  = "socks5"  // SOCKS5, the name resolved here
	proxySOCKS5H = "socks5h" // SOCKS5, the name resolved by the proxy
)

// Default proxy ports, as curl's: 443 for an https:// proxy, 1080 for all
// others (CURLOPT_PROXYPORT, curl --proxy).
const (
	defaultProxyPort      = "1080"
	defaultHTTPSProxyPort = "443"
)

// maxProxyHeader caps the status line and header an HTTP proxy may send
// in answer to CONNECT.
const maxProxyHeader = 64 << 10

// maxSOCKS5Field is the longest host name, user name or password SOCKS5
// can carry (RFC 1928, RFC 1929).
const maxSOCKS5Field = 255

const proxyWant = "want http://, https://, socks5:// or socks5h:// then [user:password@]host[:port] " +
	"(no scheme means http://; no port means 1080, or 443 for https://)"

// ParseProxy reads a --proxy value or a proxy environment variable as curl
// does:
//
//	[scheme://][user[:password]@]host[:port][/]
//
// The scheme is http (CONNECT), https (CONNECT inside TLS to the proxy),
// socks5 (SOCKS5, the server's name resolved here) or socks5h (SOCKS5,
// the name resolved by the proxy), in any case; none means http. No port
// means 1080, or 443 for https, as curl's --proxy. The user and password
// may be percent-encoded, and must be for a ':' in the user or an '@' or
// '/' in either. IPv6 addresses go in brackets.
//
// The URL returned has the scheme in lower case, Host always with a port,
// the decoded user and password in User, and nothing else. Its String
// form reads back to the same URL. An error never shows the password.
func ParseProxy(s string) (*url.URL, error) {
	bad := func(why string) (*url.URL, error) {
		return nil, fmt.Errorf("transport: proxy %q: %s; %s", redactProxy(s), why, proxyWant)
	}
	if strings.TrimSpace(s) == "" {
		return bad("empty")
	}
	raw := s
	if !strings.Contains(s, "://") {
		raw = "http://" + s
	}
	u, err := url.Parse(raw)
	if err != nil {
		if strings.Contains(raw, "@") {
			// url.Parse's detail may quote part of a password.
			return bad("not a URL")
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return bad(err.Error())
	}
	scheme := strings.ToLower(u.Scheme)
	switch scheme {
	case proxyHTTP, proxyHTTPS, proxySOCKS5, proxySOCKS5H:
	case "socks4", "socks4a":
		return bad(scheme + ":// is not supported: use socks5:// or socks5h://")
	case "":
		return bad("no scheme before ://")
	default:
		return bad("unknown scheme " + strconv.Quote(u.Scheme))
	}
	if u.Opaque != "" {
		return bad("no // after the scheme")
	}
	host := u.Hostname()
	switch {
	case host == "":
		return bad("no host")
	case strings.ContainsAny(host, " \t\r\n'\"\\/@%,;"):
		return bad("spaces, quotes, slashes, %, @, commas and semicolons cannot be in a host")
	case strings.Contains(host, ":") && !strings.HasPrefix(u.Host, "["):
		return bad("an IPv6 address needs brackets")
	}
	port := defaultProxyPort
	if scheme == proxyHTTPS {
		port = defaultHTTPSProxyPort
	}
	if p := u.Port(); p != "" || strings.HasSuffix(u.Host, ":") {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 || strconv.FormatUint(n, 10) != p {
			return bad(fmt.Sprintf("port %q is not a number from 1 to 65535", p))
		}
		port = p
	}
	if u.Path != "" && u.Path != "/" {
		return bad("a path (such as a Unix socket's) is not supported")
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return bad("a query or fragment has no meaning here")
	}
	out := &url.URL{Scheme: scheme, Host: net.JoinHostPort(host, port)}
	if u.User != nil {
		user := u.User.Username()
		password, hasPassword := u.User.Password()
		switch {
		case user == "":
			return bad("empty user name before @")
		case (scheme == proxySOCKS5 || scheme == proxySOCKS5H) &&
			(len(user) > maxSOCKS5Field || len(password) > maxSOCKS5Field):
			return bad(fmt.Sprintf("a SOCKS5 user name and password are at most %d bytes each", maxSOCKS5Field))
		}
		if hasPassword {
			out.User = url.UserPassword(user, password)
		} else {
			out.User = url.User(user)
		}
	}
	return out, nil
}

// redactProxy is s with any password replaced by "xxxxx", for errors.
func redactProxy(s string) string {
	rest := s
	prefix := ""
	if i := strings.Index(s, "://"); i >= 0 {
		prefix, rest = s[:i+3], s[i+3:]
	}
	// The last @ ends the user info, whatever comes before it: a
	// password may hold / ? # and @ too.
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return s
	}
	user, _, hasPassword := strings.Cut(rest[:at], ":")
	if !hasPassword {
		return s
	}
	return prefix + user + ":xxxxx" + rest[at:]
}

// ProxyDialer returns a DialFunc that reaches addr ("host:port") through
// the proxy u, a URL as ParseProxy reads it (u is checked the same way):
//
//   - http:// sends an HTTP/1.1 CONNECT, with Proxy-Authorization Basic
//     when u has a user; any answer but 2xx is an error that quotes the
//     proxy's status line. https:// does the same inside TLS to the proxy,
//     its certificate checked against the system roots for u's host name.
//   - socks5:// resolves the name in addr here and asks a SOCKS5 proxy
//     (RFC 1928) to CONNECT to the address; socks5h:// sends the name for
//     the proxy to resolve. With a user in u, username/password
//     authentication (RFC 1929) is offered as well as none.
//
// dial reaches the proxy itself; nil means a net.Dialer. The proxy's
// handshake is bounded by ctx: ctx's deadline is set on the connection
// while the proxy answers and cleared after, and canceling ctx ends the
// handshake. Only TCP networks ("tcp", "tcp4", "tcp6") can be dialed.
func ProxyDialer(u *url.URL, dial DialFunc) (DialFunc, error) {
	return proxyDialer(u, dial, nil)
}

// proxyDialer is ProxyDialer with the TLS configuration for an https://
// proxy: nil means the system roots and u's host name.
func proxyDialer(u *url.URL, dial DialFunc, tlsConf *tls.Config) (DialFunc, error) {
	if u == nil {
		return nil, errors.New("transport: no proxy URL; " + proxyWant)
	}
	p, err := ParseProxy(u.String())
	if err != nil {
		return nil, err
	}
	dial = dialOrDefault(dial)
	proxyAddr := p.Host
	switch p.Scheme {
	case proxyHTTP, proxyHTTPS:
		if p.Scheme == proxyHTTPS {
			if tlsConf == nil {
				tlsConf = &tls.Config{}
			} else {
				tlsConf = tlsConf.Clone()
			}
			if tlsConf.ServerName == "" {
				tlsConf.ServerName = p.Hostname()
			}
		}
		return func(ctx context.Context, network, addr string) (net.Conn, error) {
			if err := checkProxyTarget(network, addr); err != nil {
				return nil, err
			}
			c, err := dial(ctx, "tcp", proxyAddr)
			if err != nil {
				return nil, fmt.Errorf("transport: reaching proxy %s: %w; is the proxy running there? Check the proxy URL", proxyAddr, err)
			}
			if p.Scheme == proxyHTTPS {
				tc := tls.Client(c, tlsConf)
				if err := tc.HandshakeContext(ctx); err != nil {
					c.Close()
					return nil, fmt.Errorf("transport: TLS to proxy %s: %w", proxyAddr, err)
				}
				c = tc
			}
			pc, err := httpConnect(ctx, c, proxyAddr, addr, p.User)
			if err != nil {
				c.Close()
				return nil, err
			}
			return pc, nil
		}, nil
	default: // socks5, socks5h
		local := p.Scheme == proxySOCKS5
		return func(ctx context.Context, network, addr string) (net.Conn, error) {
			if err := checkProxyTarget(network, addr); err != nil {
				return nil, err
			}
			req, err := socks5Request(ctx, network, addr, local)
			if err != nil {
				return nil, err
			}
			c, err := dial(ctx, "tcp", proxyAddr)
			if err != nil {
				return nil, fmt.Errorf("transport: reaching SOCKS5 proxy %s: %w; is the proxy running there? Check the proxy URL", proxyAddr, err)
			}
			if err := socks5Connect(ctx, c, proxyAddr, addr, p.User, req); err != nil {
				c.Close()
				return nil, err
			}
			return c, nil
		}, nil
	}
}

// checkProxyTarget checks what a proxy DialFunc is asked for.
func checkProxyTarget(network, addr string) error {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return fmt.Errorf("transport: a proxy carries TCP only, not %q", network)
	}
	if strings.ContainsFunc(addr, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return fmt.Errorf("transport: proxy target %q: a host:port cannot have spaces or control characters", addr)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("transport: proxy target %q: %w; want host:port", addr, err)
	}
	if host == "" {
		return fmt.Errorf("transport: proxy target %q: no host; want host:port", addr)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("transport: proxy target %q: port %q is not a number from 1 to 65535", addr, port)
	}
	return nil
}

// aLongTimeAgo is a deadline in the past, which makes blocked I/O return.
var aLongTimeAgo = time.Unix(1, 0)

// handshakeDeadline bounds the I/O on c by ctx until the returned end is
// called. end clears the deadline and returns err, or, if ctx ended
// meanwhile, an error wrapping ctx's.
func handshakeDeadline(ctx context.Context, c net.Conn) (end func(err error) error) {
	if d, ok := ctx.Deadline(); ok {
		c.SetDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(aLongTimeAgo) })
	return func(err error) error {
		stopped := stop()
		if err != nil {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return fmt.Errorf("%w (%w)", err, ctxErr)
			}
			if d, ok := ctx.Deadline(); ok && errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(d) {
				// c's deadline passed a moment before ctx's.
				return fmt.Errorf("%w (%w)", err, context.DeadlineExceeded)
			}
			return err
		}
		if !stopped {
			// ctx ended as the handshake did: c's deadline is (or is
			// about to be) in the past, so c is no good.
			return fmt.Errorf("transport: proxy handshake: %w", context.Cause(ctx))
		}
		c.SetDeadline(time.Time{})
		return nil
	}
}

// httpConnect asks the HTTP proxy at the other end of c to connect to
// addr, and returns the connection to addr. proxyAddr is for errors.
func httpConnect(ctx context.Context, c net.Conn, proxyAddr, addr string, user *url.Userinfo) (net.Conn, error) {
	end := handshakeDeadline(ctx, c)
	var b strings.Builder
	b.WriteString("CONNECT " + addr + " HTTP/1.1\r\nHost: " + addr + "\r\n")
	if user != nil {
		password, _ := user.Password()
		cred := base64.StdEncoding.EncodeToString([]byte(user.Username() + ":" + password))
		b.WriteString("Proxy-Authorization: Basic " + cred + "\r\n")
	}
	b.WriteString("\r\n")
	if _, err := io.WriteString(c, b.String()); err != nil {
		return nil, end(fmt.Errorf("transport: sending CONNECT to proxy %s: %w", proxyAddr, err))
	}
	br := bufio.NewReader(c)
	code, status, err := readProxyResponse(br)
	if err != nil {
		if errors.Is(err, errNotHTTP) {
			err = fmt.Errorf("transport: proxy %s answered CONNECT with something that is not HTTP: "+
				"is it an HTTP proxy? For a SOCKS proxy write socks5://%s", proxyAddr, proxyAddr)
		} else {
			err = fmt.Errorf("transport: reading proxy %s's answer to CONNECT to %s: %w", proxyAddr, addr, err)
		}
		return nil, end(err)
	}
	if err := end(nil); err != nil {
		return nil, err
	}
	if code/100 != 2 {
		return nil, fmt.Errorf("transport: proxy %s refused CONNECT to %s: %s%s", proxyAddr, addr, status, connectHint(code, addr, user != nil))
	}
	if n := br.Buffered(); n > 0 {
		// The proxy sent the first bytes from addr along with its header.
		buf, _ := br.Peek(n)
		return &bufferedConn{Conn: c, buf: buf}, nil
	}
	return c, nil
}

// connectHint says what to do about a proxy's refusal with code.
func connectHint(code int, addr string, hasUser bool) string {
	switch {
	case code == 407 && hasUser:
		return " (the proxy did not accept the user name and password in the proxy URL: check them)"
	case code == 407:
		return " (the proxy wants a user name and password: write them in the proxy URL, http://user:password@host:port)"
	}
	if _, port, _ := net.SplitHostPort(addr); port != "443" {
		return " (the proxy may allow CONNECT only to port 443: reach the server with tls:// or wss:// on port 443)"
	}
	return ""
}

// errNotHTTP is what readProxyResponse returns for an answer that does
// not start with an HTTP status line.
var errNotHTTP = errors.New("not an HTTP response")

// readProxyResponse reads an HTTP proxy's answer to CONNECT from br: the
// status line and the header up to and including the blank line, at most
// maxProxyHeader bytes in all, and nothing after. It returns the status
// code and the status line without the HTTP version ("403 Forbidden"),
// cleaned of control characters. The header fields are not kept: a
// tunnel needs none of them. Lines may end in CRLF or LF.
func readProxyResponse(br *bufio.Reader) (code int, status string, err error) {
	n := 0
	readLine := func() ([]byte, error) {
		var line []byte
		for {
			frag, err := br.ReadSlice('\n')
			n += len(frag)
			if n > maxProxyHeader {
				return nil, fmt.Errorf("header longer than %d bytes", maxProxyHeader)
			}
			line = append(line, frag...)
			if err == nil {
				break
			}
			if err == bufio.ErrBufferFull {
				continue
			}
			if err == io.EOF {
				if n == 0 {
					return nil, errors.New("the proxy closed the connection without an answer")
				}
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		line = line[:len(line)-1]
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		return line, nil
	}

	line, err := readLine()
	if err != nil {
		return 0, "", err
	}
	code, status, ok := parseStatusLine(string(line))
	if !ok {
		return 0, "", errNotHTTP
	}
	for {
		line, err := readLine()
		if err != nil {
			return 0, "", err
		}
		if len(line) == 0 {
			return code, status, nil
		}
	}
}

// parseStatusLine reads "HTTP/1.1 200 Connection established" and returns
// 200 and "200 Connection established".
func parseStatusLine(line string) (code int, status string, ok bool) {
	version, status, _ := strings.Cut(line, " ")
	if len(version) != len("HTTP/1.1") || !strings.HasPrefix(version, "HTTP/") ||
		!isDigit(version[5]) || version[6] != '.' || !isDigit(version[7]) {
		return 0, "", false
	}
	status = strings.TrimLeft(status, " ")
	if len(status) < 3 || !isDigit(status[0]) || !isDigit(status[1]) || !isDigit(status[2]) ||
		len(status) > 3 && status[3] != ' ' {
		return 0, "", false
	}
	code, _ = strconv.Atoi(status[:3])
	if code < 100 {
		return 0, "", false
	}
	return code, cleanStatus(status), true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// cleanStatus makes a status line from a proxy fit to show: no control
// characters, no trailing spaces, at most 200 bytes.
func cleanStatus(s string) string {
	const maxStatus = 200
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return '?'
		}
		return r
	}, s)
	s = strings.ToValidUTF8(s, "?")
	if len(s) > maxStatus {
		s = strings.ToValidUTF8(s[:maxStatus], "") + "..."
	}
	return strings.TrimRight(s, " ")
}

// bufferedConn is a net.Conn whose Read returns buf before what comes
// from Conn: the bytes a proxy sent right after its header.
type bufferedConn struct {
	net.Conn
	buf []byte
}

func (c *bufferedConn) Read(p []byte) (int, error) {
	if len(c.buf) > 0 {
		n := copy(p, c.buf)
		c.buf = c.buf[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// SOCKS5, RFC 1928, and its username/password authentication, RFC 1929.
const (
	socks5Version      = 0x05
	socks5NoAuth       = 0x00
	socks5UserPass     = 0x02
	socks5NoAcceptable = 0xff
	socks5CmdConnect   = 0x01
	socks5IPv4         = 0x01
	socks5Domain       = 0x03
	socks5IPv6         = 0x04
	userPassVersion    = 0x01
)

// socks5Request builds the CONNECT request for addr, resolving its name
// here when local is set (socks5://) and leaving it to the proxy when not
// (socks5h://). An IP address is sent as one in both cases.
func socks5Request(ctx context.Context, network, addr string, local bool) ([]byte, error) {
	host, portStr, _ := net.SplitHostPort(addr) // checked by checkProxyTarget
	port, _ := strconv.ParseUint(portStr, 10, 16)
	req := []byte{socks5Version, socks5CmdConnect, 0}
	ip, err := netip.ParseAddr(host)
	if err != nil && local {
		family := map[string]string{"tcp": "ip", "tcp4": "ip4", "tcp6": "ip6"}[network]
		ips, err := net.DefaultResolver.LookupNetIP(ctx, family, host)
		if err != nil {
			return nil, fmt.Errorf("transport: resolving %s for the SOCKS5 proxy: %w "+
				"(to have the proxy resolve it, write socks5h:// instead of socks5://)", host, err)
		}
		if len(ips) == 0 {
			return nil, fmt.Errorf("transport: resolving %s for the SOCKS5 proxy: no address "+
				"(to have the proxy resolve it, write socks5h:// instead of socks5://)", host)
		}
		ip = ips[0]
	} else if err != nil {
		if len(host) > maxSOCKS5Field {
			return nil, fmt.Errorf("transport: host name of %d bytes is too long for SOCKS5 (at most %d)", len(host), maxSOCKS5Field)
		}
		req = append(req, socks5Domain, byte(len(host)))
		req = append(req, host...)
		return binary.BigEndian.AppendUint16(req, uint16(port)), nil
	}
	if ip.Zone() != "" {
		return nil, fmt.Errorf("transport: %s: SOCKS5 cannot carry an IPv6 zone", addr)
	}
	if ip = ip.Unmap(); ip.Is4() {
		req = append(req, socks5IPv4)
	} else {
		req = append(req, socks5IPv6)
	}
	req = append(req, ip.AsSlice()...)
	return binary.BigEndian.AppendUint16(req, uint16(port)), nil
}

// socks5Connect does the SOCKS5 handshake on c: method negotiation,
// authentication when the proxy asks for it, and req (from socks5Request).
// It reads exactly the proxy's replies, so what follows on c is addr's.
func socks5Connect(ctx context.Context, c net.Conn, proxyAddr, addr string, user *url.Userinfo, req []byte) error {
	end := handshakeDeadline(ctx, c)
	fail := func(format string, args ...any) error {
		return end(fmt.Errorf("transport: SOCKS5 proxy %s: "+format, append([]any{proxyAddr}, args...)...))
	}
	greeting := []byte{socks5Version, 1, socks5NoAuth}
	if user != nil {
		greeting = []byte{socks5Version, 2, socks5NoAuth, socks5UserPass}
	}
	if _, err := c.Write(greeting); err != nil {
		return fail("sending greeting: %w", err)
	}
	method, err := readSOCKS5Method(c)
	if err != nil {
		return fail("%w", err)
	}
	switch {
	case method == socks5NoAuth:
	case method == socks5UserPass && user != nil:
		password, _ := user.Password()
		auth := []byte{userPassVersion, byte(len(user.Username()))}
		auth = append(auth, user.Username()...)
		auth = append(auth, byte(len(password)))
		auth = append(auth, password...)
		if _, err := c.Write(auth); err != nil {
			return fail("sending user name and password: %w", err)
		}
		ok, err := readSOCKS5AuthReply(c)
		if err != nil {
			return fail("%w", err)
		}
		if !ok {
			return fail("rejected the user name and password in the proxy URL: check them")
		}
	case method == socks5NoAcceptable && user == nil:
		return fail("it wants authentication: write a user name and password in the proxy URL, socks5://user:password@host:port")
	case method == socks5NoAcceptable:
		return fail("it accepts neither no authentication nor a user name and password")
	default:
		return fail("it chose authentication method %#02x, which was not offered", method)
	}
	if _, err := c.Write(req); err != nil {
		return fail("sending CONNECT: %w", err)
	}
	rep, err := readSOCKS5Reply(c)
	if err != nil {
		return fail("%w", err)
	}
	if rep != 0 {
		return fail("could not connect to %s: %s", addr, socks5ReplyText(rep, req[3] == socks5Domain))
	}
	return end(nil)
}

// readSOCKS5Method reads the proxy's choice of authentication method.
func readSOCKS5Method(r io.Reader) (byte, error) {
	var b [2]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return 0, fmt.Errorf("reading its choice of method: %w (is it a SOCKS5 proxy?)", eofUnexpected(err))
	}
	if b[0] != socks5Version {
		return 0, fmt.Errorf("it answered with version %d, not 5: is it a SOCKS5 proxy?", b[0])
	}
	return b[1], nil
}

// readSOCKS5AuthReply reads the RFC 1929 answer, and reports whether it
// is success. Like curl, it looks at the status only: some proxies send
// version 5 where RFC 1929 says 1.
func readSOCKS5AuthReply(r io.Reader) (bool, error) {
	var b [2]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return false, fmt.Errorf("reading its answer to the user name and password: %w", eofUnexpected(err))
	}
	return b[1] == 0, nil
}

// readSOCKS5Reply reads a reply to a request, and nothing after it, and
// returns its reply code. The bound address is read and dropped: a
// CONNECT has no use for it.
func readSOCKS5Reply(r io.Reader) (rep byte, err error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, fmt.Errorf("reading its reply: %w", eofUnexpected(err))
	}
	if hdr[0] != socks5Version {
		return 0, fmt.Errorf("its reply has version %d, not 5", hdr[0])
	}
	var n int
	switch hdr[3] {
	case socks5IPv4:
		n = 4
	case socks5IPv6:
		n = 16
	case socks5Domain:
		var l [1]byte
		if _, err := io.ReadFull(r, l[:]); err != nil {
			return 0, fmt.Errorf("reading the address in its reply: %w", eofUnexpected(err))
		}
		n = int(l[0])
	default:
		return 0, fmt.Errorf("its reply has address type %d, which SOCKS5 does not have", hdr[3])
	}
	var bound [maxSOCKS5Field + 2]byte // address and port
	if _, err := io.ReadFull(r, bound[:n+2]); err != nil {
		return 0, fmt.Errorf("reading the address in its reply: %w", eofUnexpected(err))
	}
	return hdr[1], nil
}

func eofUnexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// socks5ReplyText says what a SOCKS5 reply code means, and what to do.
// byName is whether the request carried a name for the proxy to resolve.
func socks5ReplyText(rep byte, byName bool) string {
	switch rep {
	case 0x01:
		return "general SOCKS server failure (reply 1)"
	case 0x02:
		return "connection not allowed by the proxy's rules (reply 2)"
	case 0x03:
		return "network unreachable from the proxy (reply 3)"
	case 0x04:
		if byName {
			return "host unreachable from the proxy, or its name unknown there (reply 4): check the host name"
		}
		return "host unreachable from the proxy (reply 4)"
	case 0x05:
		return "connection refused (reply 5): check that the server runs and listens on that port"
	case 0x06:
		return "TTL expired (reply 6)"
	case 0x07:
		return "the proxy does not support CONNECT (reply 7)"
	case 0x08:
		if byName {
			return "the proxy does not take host names (reply 8): write socks5:// instead of socks5h:// to resolve the name here"
		}
		return "address type not supported by the proxy (reply 8)"
	}
	return fmt.Sprintf("unknown SOCKS5 reply %d", rep)
}
