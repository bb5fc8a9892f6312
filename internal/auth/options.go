package auth

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Permit is one permitopen or permitlisten entry.
type Permit struct {
	// Host is the host as written, without brackets; "" when the entry
	// gave only a port (permitlisten="8080").
	Host string
	// Port is the port, or -1 for "*" (any port).
	Port int
}

// Options are the options of one authorized_keys line that matter to a
// server that only forwards. The zero value allows nothing; a line without
// options has PortForwarding set and everything else empty.
type Options struct {
	From           []string  // from= patterns, split on commas, as written
	PermitOpen     []Permit  // nil = any target allowed; empty and non-nil = none
	PermitListen   []Permit  // nil = any listen allowed; empty and non-nil = none
	PortForwarding bool      // false after no-port-forwarding, or restrict without a later port-forwarding
	ExpiryTime     time.Time // zero = none
	Command        string    // command= (kept for reporting; pinhole never runs commands)
	Limits         Limits    // pinhole-limits= (pinhole's own option): per-key limits in place of the server's
	// Tunnel is pinhole-options="...": per-tunnel options of the key's
	// remote forwards (tunnelopts.go).
	Tunnel TunnelOptions
	// Comment is the line's comment after the key, for status pages
	// only: nothing decides by it.
	Comment string
}

// seeManual ends option errors: the manual says what is valid.
const seeManual = "see sshd(8) AUTHORIZED_KEYS FILE FORMAT"

// maxOptions bounds how many options one line may carry.
const maxOptions = 1024

// errCertAuthority is returned for cert-authority, which pinhole does not
// support.
var errCertAuthority = errors.New("cert-authority is not supported by pinhole; list the user's public keys instead")

// optionKind says how an option is handled.
type optionKind int

const (
	optFlag  optionKind = iota // no value
	optValue                   // requires a quoted value
)

// optionKindOf reports how the option name (lower case) is handled, and
// whether it is an option at all: sshd(8) documents it, or it is
// pinhole's own (pinhole-limits, pinhole-options).
func optionKindOf(name string) (optionKind, bool) {
	switch name {
	case "agent-forwarding", "cert-authority", "no-agent-forwarding",
		"no-port-forwarding", "no-pty", "no-touch-required", "no-user-rc",
		"no-x11-forwarding", "port-forwarding", "pty", "restrict", "user-rc",
		"verify-required", "x11-forwarding":
		return optFlag, true
	case "command", "environment", "expiry-time", "from", "permitlisten",
		"permitopen", "principals", "tunnel":
		return optValue, true
	case "pinhole-limits", "pinhole-options": // pinhole's own (limits.go, tunnelopts.go)
		return optValue, true
	}
	return 0, false
}

// splitOptions splits the options at the start of line from the rest:
// the options end at the first space or tab outside double quotes.
func splitOptions(line string) (opts, rest string, err error) {
	quoted := false
	for i := 0; i < len(line); i++ {
		switch c := line[i]; {
		case c == '\\' && quoted && i+1 < len(line) && line[i+1] == '"':
			i++
		case c == '"':
			quoted = !quoted
		case (c == ' ' || c == '\t') && !quoted:
			return line[:i], strings.TrimLeft(line[i:], " \t"), nil
		}
	}
	if quoted {
		return "", "", fmt.Errorf("unterminated quote in options; %s", seeManual)
	}
	return line, "", nil
}

// parseOptions parses a comma-separated option list such as
// `restrict,port-forwarding,permitopen="db:5432"`.
func parseOptions(s string) (Options, error) {
	o := Options{PortForwarding: true}
	for n := 0; s != ""; n++ {
		if n >= maxOptions {
			return Options{}, fmt.Errorf("more than %d options", maxOptions)
		}
		i := 0
		for i < len(s) && s[i] != '=' && s[i] != ',' {
			i++
		}
		name := strings.ToLower(s[:i])
		s = s[i:]
		kind, ok := optionKindOf(name)
		if !ok {
			if name == "" {
				return Options{}, fmt.Errorf("empty option; %s", seeManual)
			}
			return Options{}, fmt.Errorf("unknown option %q; %s", name, seeManual)
		}
		var value string
		hasValue := strings.HasPrefix(s, "=")
		switch {
		case kind == optFlag && hasValue:
			return Options{}, fmt.Errorf("option %q takes no value; %s", name, seeManual)
		case kind == optValue && !hasValue:
			return Options{}, fmt.Errorf("option %q needs a value, e.g. %s=\"...\"; %s", name, name, seeManual)
		case hasValue:
			var err error
			if value, s, err = dequote(s[1:]); err != nil {
				return Options{}, fmt.Errorf("option %q: %w", name, err)
			}
		}
		if err := o.apply(name, value); err != nil {
			if kind == optFlag {
				return Options{}, err
			}
			if name == "pinhole-options" { // never the value: it may hold a password
				return Options{}, fmt.Errorf("option %s: %w", name, err)
			}
			return Options{}, fmt.Errorf("option %s=%q: %w", name, value, err)
		}
		if s == "" {
			break
		}
		if s[0] != ',' {
			return Options{}, fmt.Errorf("want ',' between options; %s", seeManual)
		}
		s = s[1:]
		if s == "" {
			return Options{}, fmt.Errorf("trailing ',' after options; %s", seeManual)
		}
	}
	return o, nil
}

// dequote reads a double-quoted value from the start of s, where \"
// stands for a quote, and returns it and what follows.
func dequote(s string) (value, rest string, err error) {
	if !strings.HasPrefix(s, "\"") {
		return "", "", fmt.Errorf("value must be in double quotes; %s", seeManual)
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && i+1 < len(s) && s[i+1] == '"':
			b.WriteByte('"')
			i++
		case c == '"':
			return b.String(), s[i+1:], nil
		default:
			b.WriteByte(c)
		}
	}
	return "", "", fmt.Errorf("missing closing quote; %s", seeManual)
}

// apply records one option in o.
func (o *Options) apply(name, value string) error {
	switch name {
	case "cert-authority":
		return errCertAuthority
	case "restrict":
		o.PortForwarding = false
	case "port-forwarding":
		o.PortForwarding = true
	case "no-port-forwarding":
		o.PortForwarding = false
	case "command":
		o.Command = value
	case "environment":
		if k, _, ok := strings.Cut(value, "="); !ok || k == "" {
			return errors.New(`want NAME=value`)
		}
	case "expiry-time":
		t, err := parseExpiry(value)
		if err != nil {
			return err
		}
		o.ExpiryTime = t
	case "from":
		pats, err := parseFrom(value)
		if err != nil {
			return err
		}
		o.From = append(o.From, pats...)
	case "permitopen":
		if o.PermitOpen == nil {
			o.PermitOpen = []Permit{}
		}
		if strings.EqualFold(value, "none") {
			return nil
		}
		p, err := parsePermit(value, false)
		if err != nil {
			return err
		}
		o.PermitOpen = append(o.PermitOpen, p)
	case "permitlisten":
		if o.PermitListen == nil {
			o.PermitListen = []Permit{}
		}
		if strings.EqualFold(value, "none") {
			return nil
		}
		p, err := parsePermit(value, true)
		if err != nil {
			return err
		}
		o.PermitListen = append(o.PermitListen, p)
	case "pinhole-limits":
		return parseLimits(value, &o.Limits)
	case "pinhole-options":
		return o.applyTunnelOptions(value)
	case "principals", "tunnel":
		if value == "" {
			return errors.New("empty value")
		}
	}
	// The remaining options (pty, X11, agent, user-rc, FIDO flags) govern
	// things pinhole never offers.
	return nil
}

// parseExpiry parses YYYYMMDD[HHMM[SS]] in local time, or in UTC with a
// trailing Z.
func parseExpiry(s string) (time.Time, error) {
	loc := time.Local
	if t, ok := strings.CutSuffix(s, "Z"); ok {
		s, loc = t, time.UTC
	}
	var layout string
	switch len(s) {
	case 8:
		layout = "20060102"
	case 12:
		layout = "200601021504"
	case 14:
		layout = "20060102150405"
	default:
		return time.Time{}, errors.New("want YYYYMMDD[HHMM[SS]], e.g. 20301231 or 203012312359Z")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return time.Time{}, errors.New("want YYYYMMDD[HHMM[SS]], e.g. 20301231 or 203012312359Z")
		}
	}
	t, err := time.ParseInLocation(layout, s, loc)
	if err != nil {
		return time.Time{}, fmt.Errorf("bad date: %w", err)
	}
	return t, nil
}

// parseFrom splits and checks a from= pattern list. Entries with a '/'
// must be valid CIDR networks without host bits, as sshd requires.
func parseFrom(s string) ([]string, error) {
	pats := strings.Split(s, ",")
	for _, p := range pats {
		p = strings.TrimPrefix(p, "!")
		if p == "" {
			return nil, errors.New("empty pattern in list")
		}
		if strings.ContainsRune(p, '/') {
			pfx, err := netip.ParsePrefix(p)
			if err != nil {
				return nil, fmt.Errorf("bad network %q; write address/length, e.g. 192.0.2.0/24", p)
			}
			if pfx != pfx.Masked() {
				return nil, fmt.Errorf("network %q has host bits set; did you mean %s?", p, pfx.Masked())
			}
		}
	}
	return pats, nil
}

// parsePermit parses host:port or [v6]:port; port may be "*". With
// portOnly a lone port is allowed too (permitlisten="8080").
func parsePermit(s string, portOnly bool) (Permit, error) {
	want := `want host:port, e.g. "localhost:8080" or "[::1]:*"`
	if portOnly {
		want = `want [host:]port, e.g. "8080" or "localhost:8080"`
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		if !portOnly || strings.ContainsAny(s, ":[]") {
			return Permit{}, errors.New(want)
		}
		host, port = "", s
	} else if host == "" {
		return Permit{}, errors.New(want)
	}
	p := Permit{Host: host, Port: -1}
	if port != "*" {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return Permit{}, fmt.Errorf("bad port %q: %s", port, want)
		}
		p.Port = int(n)
	}
	for i := 0; i < len(host); i++ {
		if c := host[i]; c <= ' ' || c == ',' || c == '"' || c == '/' || c >= 0x7f {
			return Permit{}, fmt.Errorf("bad character %q in host", c)
		}
	}
	return p, nil
}

// AllowFrom reports whether a client connecting from addr passes the
// from= restriction, with sshd's semantics: a comma list of patterns with
// * and ? wildcards, ! negation and CIDR networks (addr/len), matched
// against the client's IP address in text form (pinhole does no DNS). A
// matching negated pattern refuses; otherwise some positive pattern must
// match. An empty From allows every address.
func (o *Options) AllowFrom(addr netip.Addr) bool {
	if len(o.From) == 0 {
		return true
	}
	if !addr.IsValid() {
		return false
	}
	addr = addr.Unmap().WithZone("")
	text := strings.ToLower(addr.String())
	allowed := false
	for _, p := range o.From {
		neg := strings.HasPrefix(p, "!")
		p = strings.ToLower(strings.TrimPrefix(p, "!"))
		var hit bool
		if strings.ContainsRune(p, '/') {
			pfx, err := netip.ParsePrefix(p)
			if err != nil || pfx != pfx.Masked() {
				return false // sshd treats a bad network as an error: refuse
			}
			hit = pfx.Contains(addr)
		} else {
			hit = wildcardMatch(p, text)
		}
		if hit && neg {
			return false
		}
		allowed = allowed || hit
	}
	return allowed
}

// AllowOpen reports whether the key may open a connection to host:port
// (ssh -L, -D): port forwarding must be allowed and, when permitopen was
// given, some entry must name the host literally (case-insensitive) and
// the port or "*".
func (o *Options) AllowOpen(host string, port int) bool {
	if !o.PortForwarding {
		return false
	}
	if o.PermitOpen == nil {
		return true
	}
	for _, p := range o.PermitOpen {
		if (p.Port == -1 || p.Port == port) && strings.EqualFold(p.Host, host) {
			return true
		}
	}
	return false
}

// AllowListen reports whether the key may ask the server to listen on
// host:port (ssh -R). Port forwarding must be allowed and, when
// permitlisten was given, some entry must match, with sshd's semantics: an
// entry without a host matches only the bind host "localhost" (what
// ssh -R 8080:... sends) or a loopback address; host "*" matches any
// requested host, "" included; any other host is a pattern with * and ?
// wildcards. Port -1 ("*") matches any port.
func (o *Options) AllowListen(host string, port int) bool {
	if !o.PortForwarding {
		return false
	}
	if o.PermitListen == nil {
		return true
	}
	for _, p := range o.PermitListen {
		if p.Port != -1 && p.Port != port {
			continue
		}
		switch p.Host {
		case "":
			if isLoopback(host) {
				return true
			}
		case "*":
			return true
		default:
			if wildcardMatch(strings.ToLower(p.Host), strings.ToLower(host)) {
				return true
			}
		}
	}
	return false
}

// AllowDomain reports whether the key may take host, a custom domain of
// its own (ssh -R shop.example.org:80:...), on port: only a permitlisten
// entry that names it does, by itself or by a pattern with a dot in it
// (permitlisten="*.example.org:80"). A key without permitlisten, or with
// only "*:80", may not: a domain is someone's, and a server admits it
// key by key.
func (o *Options) AllowDomain(host string, port int) bool {
	if !o.PortForwarding {
		return false
	}
	for _, p := range o.PermitListen {
		if p.Port != -1 && p.Port != port || !strings.Contains(p.Host, ".") {
			continue
		}
		if wildcardMatch(strings.ToLower(p.Host), strings.ToLower(host)) {
			return true
		}
	}
	return false
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// ErrNotFrom and ErrExpired are why a key that is in authorized_keys is
// refused all the same: Check wraps them, so a server can tell the client
// (and its log) which option it was.
var (
	ErrNotFrom = errors.New("auth: key not allowed from this address (from= in authorized_keys)")
	ErrExpired = errors.New("auth: key expired (expiry-time= in authorized_keys)")
)

// Check applies the options that refuse a listed key outright: from=
// against the client's address and expiry-time= against now. It returns
// nil, or an error wrapping ErrNotFrom or ErrExpired.
func (o *Options) Check(addr netip.Addr, now time.Time) error {
	if !o.AllowFrom(addr) {
		return fmt.Errorf("%w: %s", ErrNotFrom, addr.Unmap())
	}
	if o.Expired(now) {
		return fmt.Errorf("%w: at %s", ErrExpired, o.ExpiryTime.UTC().Format(time.RFC3339))
	}
	return nil
}

// Expired reports whether the expiry-time option has passed at now.
func (o *Options) Expired(now time.Time) bool {
	return !o.ExpiryTime.IsZero() && now.After(o.ExpiryTime)
}

// wildcardMatch reports whether s matches pattern, where '*' matches any
// run of bytes and '?' any one byte, as in ssh_config(5) PATTERNS. It runs
// in O(len(pattern)*len(s)) time.
func wildcardMatch(pattern, s string) bool {
	px, sx := 0, 0
	starP, starS := -1, 0
	for sx < len(s) {
		switch {
		case px < len(pattern) && (pattern[px] == '?' || pattern[px] == s[sx]):
			px++
			sx++
		case px < len(pattern) && pattern[px] == '*':
			starP, starS = px, sx
			px++
		case starP >= 0:
			starS++
			px, sx = starP+1, starS
		default:
			return false
		}
	}
	for px < len(pattern) && pattern[px] == '*' {
		px++
	}
	return px == len(pattern)
}

// applyTunnelOptions records pinhole-options="WORDS" (ParseTunnelOptions'
// words, commas between them); a second pinhole-options adds to the
// first.
func (o *Options) applyTunnelOptions(value string) error {
	err := o.Tunnel.add(value)
	if err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), "auth: "))
	}
	return nil
}
