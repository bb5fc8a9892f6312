package config

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"

	"github.com/pinhole-dev/pinhole/internal/spec"
	"github.com/pinhole-dev/pinhole/internal/transport"
	"github.com/pinhole-dev/pinhole/internal/tunnel"
)

// MaxSize bounds the file Parse takes; no real config comes near it.
const MaxSize = 1 << 20

// Keys of the file's top level and of a [tunnel.NAME] table.
var (
	topKeys    = []string{"drain", "debug-addr", "tunnel"}
	tunnelKeys = []string{
		"host", "port", "user", "identity", "known-hosts", "host-key-check",
		"keepalive", "keepalive-count", "local", "remote", "dynamic",
		"proxy-auth", "proxy-auth-file", "allow-open-proxy", "udp-idle", "udp-max-flows",
		"jump", "bind", "address-family", "tls-ca", "tls-fingerprint", "proxy",
	}
)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// pos is a place in the file.
type pos struct{ line, col int }

// leaf is one key = value, its key the full dotted path from the top.
// value is nil for an inline table (whose keys are leaves of their own).
type leaf struct {
	path  []string
	key   pos // of the key's last part
	value *value
	vpos  pos
}

// value is a copy of a value node: the parser's nodes last only until
// its next expression.
type value struct {
	kind  unstable.Kind
	data  string
	at    pos
	items []*value // of an array, comments left out
}

func (ps *parser) copyValue(n *unstable.Node, fallback pos) *value {
	v := &value{kind: n.Kind, data: string(n.Data), at: ps.at(n, fallback)}
	if n.Kind == unstable.Array {
		it := n.Children()
		for it.Next() {
			if c := it.Node(); c.Kind != unstable.Comment {
				v.items = append(v.items, ps.copyValue(c, v.at))
			}
		}
	}
	return v
}

type parser struct {
	file string
	p    unstable.Parser
	errs Errors
}

func (ps *parser) errorf(at pos, format string, args ...any) {
	ps.errs = append(ps.errs, &Error{File: ps.file, Line: at.line, Col: at.col, Msg: fmt.Sprintf(format, args...)})
}

// at is where n starts, or else where fallback does.
func (ps *parser) at(n *unstable.Node, fallback pos) pos {
	if n == nil || n.Raw.Length == 0 {
		return fallback
	}
	s := ps.p.Shape(n.Raw)
	return pos{s.Start.Line, s.Start.Column}
}

// decode checks the file's size and its TOML with go-toml's decoder first:
// it checks what its parser alone does not (a key or a table given
// twice). It reports false, with the errors in ps.errs, for a file that
// goes no further.
func (ps *parser) decode(data []byte) bool {
	if len(data) > MaxSize {
		ps.errorf(pos{1, 1}, "the file is %d bytes, more than the %d a config may have", len(data), MaxSize)
		return false
	}
	var generic map[string]any
	if err := toml.Unmarshal(data, &generic); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			line, col := de.Position()
			ps.errorf(pos{line, col}, "%s (this is TOML: see docs/config.md)", strings.TrimPrefix(de.Error(), "toml: "))
		} else {
			ps.errorf(pos{1, 1}, "%s", strings.TrimPrefix(err.Error(), "toml: "))
		}
		return false
	}
	return true
}

// Parse reads a config file's bytes; file names it in errors and is the
// base of relative paths. A file with mistakes returns Errors, every one
// of them.
func Parse(file string, data []byte) (*Config, error) {
	ps := &parser{file: file}
	if !ps.decode(data) {
		return nil, ps.errs
	}
	leaves, tables := ps.walk(data)
	if ps.p.Error() != nil { // the decoder above let it through; be safe
		ps.errorf(pos{1, 1}, "%v", ps.p.Error())
		return nil, ps.errs
	}
	cfg := ps.build(leaves, tables)
	if len(ps.errs) > 0 {
		return nil, ps.errs
	}
	return cfg, nil
}

// table is a [header] and where it is.
type table struct {
	kind unstable.Kind
	path []string
	ats  []pos // of each part of the path
}

// walk flattens the document into leaves (inline tables become dotted
// keys) and the table headers it has.
func (ps *parser) walk(data []byte) ([]leaf, []table) {
	ps.p.Reset(data)
	var leaves []leaf
	var tables []table
	var current []string
	for ps.p.NextExpression() {
		e := ps.p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			path, ats := ps.keyParts(e.Key(), pos{1, 1})
			at := ats[len(ats)-1]
			if e.Kind == unstable.ArrayTable {
				ps.errorf(at, "[[%s]] is an array of tables, which this file has no use for: write [tunnel.NAME] for each tunnel", strings.Join(path, "."))
			}
			current = path
			tables = append(tables, table{e.Kind, path, ats})
		case unstable.KeyValue:
			leaves = ps.keyValue(leaves, current, e)
		}
	}
	return leaves, tables
}

// key is the parts of a dotted key and where its last part is.
func (ps *parser) key(it unstable.Iterator, fallback pos) ([]string, pos) {
	parts, ats := ps.keyParts(it, fallback)
	return parts, ats[len(ats)-1]
}

// keyParts is the parts of a dotted key and where each is.
func (ps *parser) keyParts(it unstable.Iterator, fallback pos) ([]string, []pos) {
	var parts []string
	ats := []pos{fallback}
	for it.Next() {
		n := it.Node()
		parts = append(parts, string(n.Data))
		ats = append(ats, ps.at(n, ats[len(ats)-1]))
	}
	return parts, ats[1:]
}

func (ps *parser) keyValue(leaves []leaf, prefix []string, kv *unstable.Node) []leaf {
	parts, at := ps.key(kv.Key(), pos{1, 1})
	path := slices.Concat(prefix, parts)
	v := kv.Value()
	if v.Kind == unstable.InlineTable {
		it := v.Children()
		for it.Next() {
			if c := it.Node(); c.Kind == unstable.KeyValue {
				leaves = ps.keyValue(leaves, path, c)
			}
		}
		// an empty inline table still names its table
		return append(leaves, leaf{path: path, key: at, value: nil, vpos: at})
	}
	cv := ps.copyValue(v, at)
	return append(leaves, leaf{path: path, key: at, value: cv, vpos: cv.at})
}

// tunnelDraft is a tunnel while its keys are read.
type tunnelDraft struct {
	t              *Tunnel
	at             pos
	user, hostUser string // of user = and of host = "user@..."
	userAt, hostAt pos
	url            *transport.Endpoint // of host = "scheme://...", its user taken out
	port           int64               // of port =, 0 when not given
	portAt         pos
	fwdPos         map[spec.Forward]pos
	hasHost        bool
	hasFwd         bool // a local, remote or dynamic key, good or not
}

func (ps *parser) build(leaves []leaf, tables []table) *Config {
	cfg := &Config{File: ps.file, Drain: DefaultDrain}
	drafts := map[string]*tunnelDraft{}
	var order []string
	draft := func(name string, at pos) *tunnelDraft {
		if d, ok := drafts[name]; ok {
			return d
		}
		if !nameRE.MatchString(name) {
			ps.errorf(at, "tunnel name %q: use letters, digits, - and _ (at most 64), e.g. [tunnel.db-prod]", name)
		}
		d := &tunnelDraft{
			t: &Tunnel{Name: name, Conn: Conn{
				Port: DefaultPort, HostKeyCheck: DefaultHostKeyCheck, Keepalive: DefaultKeepalive,
				KeepaliveCount: DefaultKeepaliveCount, UDPIdle: DefaultUDPIdle, UDPMaxFlows: DefaultUDPMaxFlows,
			}},
			at:     at,
			fwdPos: map[spec.Forward]pos{},
		}
		drafts[name] = d
		order = append(order, name)
		return d
	}
	// bad are the tables already reported: their keys are not reported
	// again.
	var bad [][]string
	under := func(path []string) bool {
		for _, b := range bad {
			if len(path) >= len(b) && slices.Equal(path[:len(b)], b) {
				return true
			}
		}
		return false
	}
	for _, tb := range tables {
		switch {
		case tb.kind == unstable.ArrayTable:
			bad = append(bad, tb.path)
		case tb.path[0] != "tunnel":
			ps.unknown(tb.ats[0], tb.path[0], topKeys, "the top level")
			bad = append(bad, tb.path)
		case len(tb.path) == 1:
			// [tunnel] alone, its tunnels as dotted keys: fine
		case len(tb.path) == 2:
			draft(tb.path[1], tb.ats[1])
		default:
			ps.unknown(tb.ats[2], tb.path[2], tunnelKeys, "[tunnel."+tb.path[1]+"]")
			bad = append(bad, tb.path)
		}
	}
	for _, l := range leaves {
		switch {
		case under(l.path):
		case l.path[0] == "drain" && len(l.path) == 1:
			cfg.Drain = ps.duration(l, "drain", false)
		case l.path[0] == "drain":
			ps.errorf(l.vpos, "drain is a duration, not a table: write drain = \"10s\"")
		case l.path[0] == "debug-addr" && len(l.path) == 1:
			if v, ok := ps.str(l, `debug-addr = "127.0.0.1:6060"`); ok {
				cfg.DebugAddr = v
			}
		case l.path[0] != "tunnel":
			ps.unknown(l.key, l.path[0], topKeys, "the top level")
		case len(l.path) == 1:
			ps.errorf(l.vpos, "tunnel is a table of tunnels: write [tunnel.NAME] with host = ... and forwards under it")
		case len(l.path) == 2:
			if l.value != nil {
				ps.errorf(l.vpos, "tunnel.%s is a table: write [tunnel.%s] and its keys (host, local, ...) under it", l.path[1], l.path[1])
				continue
			}
			draft(l.path[1], l.key)
		case len(l.path) > 3:
			ps.errorf(l.key, "tunnel.%s.%s is not a table: write %s = value under [tunnel.%s]", l.path[1], l.path[2], l.path[2], l.path[1])
		default:
			ps.tunnelKey(draft(l.path[1], l.key), l)
		}
	}
	slices.Sort(order)
	binds := map[string]string{} // a local listening address -> the tunnel holding it
	for _, name := range order {
		d := drafts[name]
		if !d.hasHost {
			ps.errorf(d.at, "tunnel %s has no host: add host = \"[user@]server\" under [tunnel.%s]", name, name)
		}
		switch {
		case d.user != "" && d.hostUser != "" && d.user != d.hostUser:
			ps.errorf(d.userAt, "user = %q but host says %q@: keep one of them", d.user, d.hostUser)
		case d.user != "":
			d.t.Conn.User = d.user
		default:
			d.t.Conn.User = d.hostUser
		}
		if d.url != nil && d.port != 0 {
			in := *d.url
			in.User, in.Port = d.hostUser, uint16(d.port)
			ps.errorf(d.portAt, "port = %d and host is a URL: put the port in the URL, as host = %q, and drop port", d.port, in.String())
		}
		if !d.hasFwd {
			ps.errorf(d.at, "tunnel %s has nothing to forward: add local = [\"8080:localhost:80\"], remote = [...] or dynamic = [\"1080\"]", name)
		}
		for _, f := range d.t.Forwards {
			if f.Kind == spec.Remote || f.BindPort == 0 {
				continue
			}
			k := fmt.Sprintf("%s/%s:%d", f.Proto, f.BindHost, f.BindPort)
			if other, ok := binds[k]; ok {
				ps.errorf(d.fwdPos[f], "%s %s listens where tunnel %s already does: pick another port", f.Kind, f, other)
				continue
			}
			binds[k] = name
		}
		cfg.Tunnels = append(cfg.Tunnels, d.t)
	}
	slices.SortStableFunc(ps.errs, func(a, b *Error) int {
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return a.Col - b.Col
	})
	return cfg
}

func (ps *parser) tunnelKey(d *tunnelDraft, l leaf) {
	c := &d.t.Conn
	name := l.path[2]
	if l.value == nil {
		ps.errorf(l.vpos, "%s is not a table: write %s = value", name, name)
		return
	}
	switch name {
	case "host":
		d.hasHost = true
		s, ok := ps.str(l, "host = \"user@server.example.com\"")
		if !ok {
			return
		}
		if transport.IsURL(s) {
			ep, err := transport.ParseURL(s)
			if err != nil {
				ps.errorf(l.vpos, "host: %s", strings.TrimPrefix(err.Error(), "transport: "))
				return
			}
			d.hostUser, d.hostAt = ep.User, l.vpos
			ep.User = ""
			d.url = &ep
			c.Host, c.URL = ep.Host, ep.String()
			if d.port == 0 {
				c.Port = ep.Port
			}
			return
		}
		u, h := s, ""
		if i := strings.LastIndex(s, "@"); i >= 0 {
			u, h = s[:i], s[i+1:]
		} else {
			u, h = "", s
		}
		h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
		switch {
		case h == "":
			ps.errorf(l.vpos, "host %q has no server name: write host = \"server.example.com\" or \"user@server.example.com\"", s)
		case strings.ContainsAny(h, " \t/"):
			ps.errorf(l.vpos, "host %q is not a host name or address: write host = \"server.example.com\"; the port goes in port = 22", s)
		case strings.Contains(h, ":"):
			if _, err := netip.ParseAddr(h); err != nil {
				ps.errorf(l.vpos, "host %q: put the port in port = %s, not after a colon", s, h[strings.LastIndex(h, ":")+1:])
			}
		}
		c.Host, d.hostUser, d.hostAt = h, u, l.vpos
	case "port":
		n, ok := ps.integer(l, "port = 22")
		if ok && (n < 1 || n > 65535) {
			ps.errorf(l.vpos, "port %d: want a port from 1 to 65535, e.g. port = 22", n)
			return
		}
		if ok {
			c.Port, d.port, d.portAt = uint16(n), n, l.vpos
		}
	case "user":
		s, ok := ps.str(l, "user = \"deploy\"")
		if !ok {
			return
		}
		if s == "" || strings.ContainsAny(s, "@ \t") {
			ps.errorf(l.vpos, "user %q: want a login name such as user = \"deploy\"", s)
			return
		}
		d.user, d.userAt = s, l.vpos
	case "identity":
		for _, s := range ps.strs(l, "identity = [\"~/.ssh/id_ed25519\"]") {
			if s.s == "" {
				ps.errorf(s.at, "an empty identity: give a key file, e.g. \"~/.ssh/id_ed25519\"")
				continue
			}
			c.Identity = append(c.Identity, resolve(ps.file, s.s))
			d.t.Files = append(d.t.Files, FileRef{"identity", resolve(ps.file, s.s), s.at.line, s.at.col})
		}
	case "known-hosts":
		if s, ok := ps.str(l, "known-hosts = \"~/.ssh/known_hosts\""); ok {
			c.KnownHosts = resolve(ps.file, s)
			d.t.Files = append(d.t.Files, FileRef{"known-hosts", c.KnownHosts, l.vpos.line, l.vpos.col})
		}
	case "host-key-check":
		s, ok := ps.str(l, "host-key-check = \"accept-new\"")
		if !ok {
			return
		}
		switch s {
		case "yes", "accept-new", "no":
			c.HostKeyCheck = s
		default:
			ps.errorf(l.vpos, "host-key-check %q: want \"yes\" (only known keys), \"accept-new\" (remember a new host's key) or \"no\" (insecure)", s)
		}
	case "keepalive":
		c.Keepalive = ps.duration(l, "keepalive", true)
	case "keepalive-count":
		n, ok := ps.integer(l, "keepalive-count = 3")
		if ok && (n < 1 || n > 1000) {
			ps.errorf(l.vpos, "keepalive-count %d: want from 1 to 1000, e.g. keepalive-count = 3", n)
			return
		}
		c.KeepaliveCount = int(n)
	case "local", "remote", "dynamic":
		d.hasFwd = true
		kind := map[string]spec.Kind{"local": spec.Local, "remote": spec.Remote, "dynamic": spec.Dynamic}[name]
		example := map[string]string{"local": `local = ["8080:localhost:80"]`, "remote": `remote = ["8080:localhost:3000"]`, "dynamic": `dynamic = ["1080"]`}[name]
		for _, s := range ps.strs(l, example) {
			f, err := spec.Parse(kind, s.s)
			if err != nil {
				ps.errorf(s.at, "%s", strings.TrimPrefix(err.Error(), "spec: "))
				continue
			}
			if kind == spec.Dynamic && f.Proto == spec.UDP {
				ps.errorf(s.at, "dynamic %q: a dynamic forward is TCP (SOCKS5 UDP rides on it): drop the /udp", s.s)
				continue
			}
			if _, dup := d.fwdPos[f]; dup {
				ps.errorf(s.at, "%s %s is given twice in tunnel %s: drop one", f.Kind, f, d.t.Name)
				continue
			}
			d.fwdPos[f] = s.at
			d.t.Forwards = append(d.t.Forwards, f)
		}
		slices.SortStableFunc(d.t.Forwards, func(a, b spec.Forward) int { return int(a.Kind) - int(b.Kind) })
	case "proxy-auth":
		s, ok := ps.str(l, "proxy-auth = \"user:pass\"")
		if ok && !strings.Contains(s, ":") {
			ps.errorf(l.vpos, "proxy-auth: want user:pass, e.g. proxy-auth = \"alice:secret\"")
			return
		}
		c.ProxyAuth = s
	case "proxy-auth-file":
		if s, ok := ps.str(l, "proxy-auth-file = \"proxy-users\""); ok {
			c.ProxyAuthFile = resolve(ps.file, s)
			d.t.Files = append(d.t.Files, FileRef{"proxy-auth-file", c.ProxyAuthFile, l.vpos.line, l.vpos.col})
		}
	case "allow-open-proxy":
		if v, ok := ps.boolean(l); ok {
			c.AllowOpenProxy = v
		}
	case "udp-idle":
		c.UDPIdle = ps.duration(l, "udp-idle", false)
		if c.UDPIdle == 0 {
			c.UDPIdle = DefaultUDPIdle
		}
	case "udp-max-flows":
		n, ok := ps.integer(l, "udp-max-flows = 1024")
		if ok && (n < 1 || n > 1<<20) {
			ps.errorf(l.vpos, "udp-max-flows %d: want from 1 to %d, e.g. udp-max-flows = 1024", n, 1<<20)
			return
		}
		c.UDPMaxFlows = int(n)
	case "jump":
		if s, ok := ps.str(l, "jump = \"me@bastion:22\""); ok {
			if _, err := tunnel.ParseJump(s); err != nil {
				ps.errorf(l.vpos, "jump: %s", strings.TrimPrefix(err.Error(), "tunnel: "))
				return
			}
			c.Jump = s
		}
	case "address-family":
		if v, ok := ps.str(l, `address-family = "inet"`); ok {
			switch v {
			case "any":
			case "inet", "inet6":
				c.AddressFamily = v
			default:
				ps.errorf(l.vpos, "address-family %q: want \"any\", \"inet\" (IPv4 only, -4) or \"inet6\" (IPv6 only, -6)", v)
			}
		}
	case "bind":
		if s, ok := ps.str(l, "bind = \"192.0.2.10\""); ok {
			if _, err := netip.ParseAddr(s); err != nil {
				ps.errorf(l.vpos, "bind %q: want an IP address of this machine, e.g. bind = \"192.0.2.10\"", s)
				return
			}
			c.Bind = s
		}
	case "tls-ca":
		if s, ok := ps.str(l, `tls-ca = "ca.pem"`); ok {
			if s == "" {
				ps.errorf(l.vpos, "tls-ca is empty: name a PEM file of CA certificates, or leave the key out for the system's")
				return
			}
			c.TLSCA = resolve(ps.file, s)
			d.t.Files = append(d.t.Files, FileRef{"tls-ca", c.TLSCA, l.vpos.line, l.vpos.col})
		}
	case "tls-fingerprint":
		if s, ok := ps.str(l, `tls-fingerprint = "SHA256:..."`); ok {
			if _, err := transport.ParseFingerprint(s); err != nil {
				ps.errorf(l.vpos, "tls-fingerprint: %s", strings.TrimPrefix(err.Error(), "transport: "))
				return
			}
			c.TLSFingerprint = s
		}
	case "proxy":
		s, ok := ps.str(l, `proxy = "http://proxy.example.com:3128"`)
		switch {
		case !ok:
		case s == "":
			ps.errorf(l.vpos, "proxy is empty: give a proxy URL such as \"http://proxy.example.com:3128\" or \"socks5://127.0.0.1:1080\", \"none\" for no proxy, or leave the key out for the environment's")
		case s == "none":
			c.Proxy = s
		default:
			if _, err := transport.ParseProxy(s); err != nil {
				// ParseProxy's error names the value, its password hidden.
				ps.errorf(l.vpos, "%s (or \"none\")", strings.TrimPrefix(err.Error(), "transport: "))
				return
			}
			c.Proxy = s
		}
	default:
		ps.unknown(l.key, name, tunnelKeys, "[tunnel."+d.t.Name+"]")
	}
}

func (ps *parser) unknown(at pos, key string, known []string, where string) {
	msg := fmt.Sprintf("unknown key %q in %s", key, where)
	if n := nearest(key, known); n != "" {
		msg += fmt.Sprintf(": did you mean %q?", n)
	} else {
		msg += ": the keys are " + strings.Join(known, ", ")
	}
	ps.errorf(at, "%s (docs/config.md lists them)", msg)
}

func kindName(v *value) string {
	switch v.kind {
	case unstable.String:
		return "a string"
	case unstable.Integer:
		return "a number"
	case unstable.Float:
		return "a decimal number"
	case unstable.Bool:
		return "true or false"
	case unstable.Array:
		return "a list"
	case unstable.InlineTable:
		return "a table"
	}
	return "a date or time"
}

// boolean reads true or false.
func (ps *parser) boolean(l leaf) (v, ok bool) {
	if l.value.kind != unstable.Bool {
		name := l.path[len(l.path)-1]
		ps.errorf(l.vpos, "%s is true or false, not %s: write %s = true", name, kindName(l.value), name)
		return false, false
	}
	return l.value.data == "true", true
}

func (ps *parser) str(l leaf, example string) (string, bool) {
	if l.value.kind != unstable.String {
		ps.errorf(l.vpos, "%s is a string, not %s: write %s", l.path[len(l.path)-1], kindName(l.value), example)
		return "", false
	}
	return l.value.data, true
}

type placed struct {
	s  string
	at pos
}

// strs reads a list of strings, or one string as a list of one.
func (ps *parser) strs(l leaf, example string) []placed {
	switch l.value.kind {
	case unstable.String:
		return []placed{{l.value.data, l.vpos}}
	case unstable.Array:
		var out []placed
		for _, n := range l.value.items {
			if n.kind != unstable.String {
				ps.errorf(n.at, "%s holds strings, not %s: write %s", l.path[len(l.path)-1], kindName(n), example)
				continue
			}
			out = append(out, placed{n.data, n.at})
		}
		return out
	}
	ps.errorf(l.vpos, "%s is a list of strings, not %s: write %s", l.path[len(l.path)-1], kindName(l.value), example)
	return nil
}

func (ps *parser) integer(l leaf, example string) (int64, bool) {
	if l.value.kind != unstable.Integer {
		ps.errorf(l.vpos, "%s is a whole number, not %s: write %s", l.path[len(l.path)-1], kindName(l.value), example)
		return 0, false
	}
	s := strings.ReplaceAll(l.value.data, "_", "")
	n, err := strconv.ParseInt(s, 0, 64)
	if err != nil {
		ps.errorf(l.vpos, "%s %s: want a whole number, e.g. %s", l.path[len(l.path)-1], s, example)
		return 0, false
	}
	return n, true
}

// duration reads "15s" and the like; 0 is "0s" (off, where off0 says so).
func (ps *parser) duration(l leaf, name string, off0 bool) time.Duration {
	example := fmt.Sprintf("%s = \"15s\"", name)
	if off0 {
		example += fmt.Sprintf(" (or \"0s\" for never)")
	}
	if l.value.kind != unstable.String {
		ps.errorf(l.vpos, "%s is a duration in quotes, not %s: write %s", name, kindName(l.value), example)
		return 0
	}
	d, err := time.ParseDuration(l.value.data)
	if err != nil || d < 0 {
		ps.errorf(l.vpos, "%s %q is not a duration: write %s", name, l.value.data, example)
		return 0
	}
	return d
}

// nearest is the known key closest to key in edit distance, if it is
// close enough to be the one meant.
func nearest(key string, known []string) string {
	best, bestD := "", len(key)/2+2
	k := strings.ToLower(strings.ReplaceAll(key, "_", "-"))
	for _, c := range known {
		if d := distance(k, c); d < bestD {
			best, bestD = c, d
		}
		if strings.HasPrefix(c, k) || strings.HasPrefix(k, c) {
			if best == "" {
				best = c
			}
		}
	}
	return best
}

// distance is the Levenshtein distance of a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
