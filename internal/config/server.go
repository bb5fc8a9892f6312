package config

import (
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2/unstable"

	"github.com/pinhole-dev/pinhole/internal/transport"
)

// serverKeys are the keys of pinhole server's file: its flags' names.
var serverKeys = []string{
	"listen", "host-key", "authorized-keys", "gateway-ports", "keepalive",
	"takeover-probe", "drain", "udp-idle", "udp-max-flows", "ciphers",
	"login-grace", "max-startups", "per-source-max-startups", "max-auth-tries",
	"map", "map-via", "map-gateway", "map-ssdp", "debug-addr",
	"tls-cert", "tls-key", "ws-path", "ssh-sni", "trusted-proxy",
	"domain", "name-ttl", "upstream-timeout", "max-names-per-key",
	"acme", "acme-directory", "acme-email", "acme-ca",
	"max-ports-per-key", "max-streams-per-key", "max-stream-rate-per-key",
	"max-http-conns", "per-source-max-http-conns",
}

// The per-key limits' defaults: tunnel.DefaultKeyLimits'.
const (
	DefaultMaxPortsPerKey      = 10
	DefaultMaxStreamsPerKey    = 1000
	DefaultMaxStreamRatePerKey = 5000
)

// Server is a parsed, valid file of pinhole server -c: each field is the
// flag of the same name. Values are checked for their form here; the
// server's own parsers (gateway-ports, ciphers, max-startups) check the
// rest through Check.
type Server struct {
	File string
	// Listen are the addresses to accept SSH connections on; no two equal.
	Listen         []string
	HostKey        string // "" means the default in the state directory
	AuthorizedKeys string // "" means ~/.ssh/authorized_keys
	Settings       ServerSettings
	// Map opens each listening port on the home router (--map), with
	// MapVia and MapGateway (--map-via, --map-gateway); a change applies
	// to the listeners opened from then on.
	Map                         bool
	MapVia, MapGateway, MapSSDP string
	// DebugAddr serves net/http/pprof (--debug-addr); read at start only.
	DebugAddr string
}

// ServerSettings are what the tunnel.Server is made with: a change
// restarts it (new connections go to the new one, open ones drain on the
// old).
type ServerSettings struct {
	HostKey              string
	GatewayPorts         string
	Keepalive            time.Duration
	TakeoverProbe        time.Duration
	Drain                time.Duration
	UDPIdle              time.Duration
	UDPMaxFlows          int
	Ciphers              string
	LoginGrace           time.Duration
	MaxStartups          string
	PerSourceMaxStartups string
	MaxAuthTries         int
	// TLSCert and TLSKey are the certificate of tls:// and wss://
	// clients (--tls-cert, --tls-key), both or neither; "" means the
	// self-signed one in the state directory.
	TLSCert, TLSKey string
	WSPath          string   // --ws-path; transport.DefaultPath when not given
	SSHSNI          []string // --ssh-sni, sorted
	TrustedProxy    []string // --trusted-proxy: addresses or CIDRs as written, sorted
	// Domain serves names under it (--domain); "" serves none. NameTTL
	// and UpstreamTimeout are --name-ttl and --upstream-timeout.
	Domain          string
	NameTTL         time.Duration
	UpstreamTimeout time.Duration
	MaxNamesPerKey  int // --max-names-per-key; 0: no limit
	// ACME gets the certificates of Domain and its names from an ACME CA
	// (--acme): ACMEDirectory ("" for Let's Encrypt), ACMEEmail, and
	// ACMECA, the file checking that CA's HTTPS ("" for the system's
	// roots).
	ACME                             bool
	ACMEDirectory, ACMEEmail, ACMECA string
	// MaxPortsPerKey, MaxStreamsPerKey and MaxStreamRatePerKey are
	// --max-ports-per-key, --max-streams-per-key and
	// --max-stream-rate-per-key; 0: no limit.
	MaxPortsPerKey, MaxStreamsPerKey, MaxStreamRatePerKey int
	// MaxHTTPConns and PerSourceMaxHTTPConns are --max-http-conns and
	// --per-source-max-http-conns; 0: no limit.
	MaxHTTPConns          int
	PerSourceMaxHTTPConns int
}

// ServerDiff is what a reload of pinhole server's file changes.
type ServerDiff struct {
	Listen, Unlisten []string // addresses to start and to stop accepting on
	AuthorizedKeys   bool     // the authorized_keys file is another one
	Restart          bool     // Settings changed
}

// CompareServer says what a reload from old to new does.
func CompareServer(old, new *Server) ServerDiff {
	var d ServerDiff
	for _, a := range new.Listen {
		if !slices.Contains(old.Listen, a) {
			d.Listen = append(d.Listen, a)
		}
	}
	for _, a := range old.Listen {
		if !slices.Contains(new.Listen, a) {
			d.Unlisten = append(d.Unlisten, a)
		}
	}
	d.AuthorizedKeys = old.AuthorizedKeys != new.AuthorizedKeys
	d.Restart = !reflect.DeepEqual(old.Settings, new.Settings)
	return d
}

// ServerChecks are the server's own parsers of the values whose syntax
// is its business; each returns an error saying what to write.
type ServerChecks struct {
	GatewayPorts, Ciphers, MaxStartups func(string) error
}

// ParseServer reads the file of pinhole server -c. checks, where not
// nil, check values further, their errors placed at the value.
func ParseServer(file string, data []byte, checks ServerChecks) (*Server, error) {
	ps := &parser{file: file}
	if !ps.decode(data) {
		return nil, ps.errs
	}
	leaves, tables := ps.walk(data)
	for _, tb := range tables {
		ps.errorf(tb.ats[0], "[%s]: pinhole server's file has no tables: write its keys (listen, host-key, ...) at the top", strings.Join(tb.path, "."))
	}
	s := &Server{File: file, Listen: []string{":2222"}, Settings: ServerSettings{
		GatewayPorts: "no", Keepalive: DefaultKeepalive, TakeoverProbe: 3 * time.Second, Drain: DefaultDrain,
		UDPIdle: DefaultUDPIdle, UDPMaxFlows: DefaultUDPMaxFlows, LoginGrace: 30 * time.Second,
		NameTTL: 7 * 24 * time.Hour, UpstreamTimeout: 30 * time.Second, MaxNamesPerKey: 10,
		MaxPortsPerKey: DefaultMaxPortsPerKey, MaxStreamsPerKey: DefaultMaxStreamsPerKey, MaxStreamRatePerKey: DefaultMaxStreamRatePerKey,
		MaxHTTPConns: transport.DefaultMaxHTTPConns, PerSourceMaxHTTPConns: transport.DefaultMaxHTTPConnsPerSource,
		MaxStartups: "10:30:100", PerSourceMaxStartups: "5", MaxAuthTries: 6, WSPath: transport.DefaultPath,
	}}
	var certAt, keyAt, acmeAt, domainAt pos
	var acmeKeyAt pos // the first acme-directory, acme-email or acme-ca
	check := func(f func(string) error, l leaf, v string) {
		if f != nil {
			if err := f(v); err != nil {
				ps.errorf(l.vpos, "%s %q: %v", l.path[0], v, err)
			}
		}
	}
	for _, l := range leaves {
		if len(tables) > 0 && len(l.path) > 1 {
			continue // under a table already reported
		}
		name := l.path[0]
		if len(l.path) > 1 || l.value == nil {
			ps.errorf(l.key, "%s is not a table: write %s = value", name, name)
			continue
		}
		st := &s.Settings
		switch name {
		case "listen":
			s.Listen = nil
			for _, a := range ps.strs(l, `listen = [":2222"]`) {
				if _, port, err := net.SplitHostPort(a.s); err != nil {
					ps.errorf(a.at, "listen %q: want host:port or :port, e.g. \":2222\" or \"127.0.0.1:2222\"", a.s)
					continue
				} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
					ps.errorf(a.at, "listen %q: the port is not a number from 0 to 65535", a.s)
					continue
				}
				if slices.Contains(s.Listen, a.s) {
					ps.errorf(a.at, "listen %q is given twice: drop one", a.s)
					continue
				}
				s.Listen = append(s.Listen, a.s)
			}
			if len(s.Listen) == 0 {
				ps.errorf(l.vpos, "listen has no address: give one, e.g. listen = [\":2222\"]")
			}
		case "host-key":
			if v, ok := ps.str(l, `host-key = "/var/lib/pinhole/host_key"`); ok {
				s.HostKey = resolve(file, v)
				st.HostKey = s.HostKey
			}
		case "authorized-keys":
			if v, ok := ps.str(l, `authorized-keys = "~/.ssh/authorized_keys"`); ok {
				s.AuthorizedKeys = resolve(file, v)
			}
		case "gateway-ports":
			if v, ok := ps.str(l, `gateway-ports = "no"`); ok {
				st.GatewayPorts = v
				check(checks.GatewayPorts, l, v)
			}
		case "ciphers":
			if v, ok := ps.str(l, `ciphers = "aes128-gcm@openssh.com,chacha20-poly1305@openssh.com"`); ok {
				st.Ciphers = v
				check(checks.Ciphers, l, v)
			}
		case "max-startups":
			if v, ok := ps.str(l, `max-startups = "10:30:100"`); ok {
				st.MaxStartups = v
				check(checks.MaxStartups, l, v)
			}
		case "per-source-max-startups":
			switch l.value.kind {
			case unstable.String:
				if l.value.data != "none" {
					ps.errorf(l.vpos, "per-source-max-startups %q: want a number of connections, at least 1, or \"none\"", l.value.data)
					continue
				}
				st.PerSourceMaxStartups = "none"
			default:
				if n, ok := ps.integer(l, `per-source-max-startups = 10`); ok {
					if n < 1 {
						ps.errorf(l.vpos, "per-source-max-startups %d: want at least 1, or \"none\"", n)
						continue
					}
					st.PerSourceMaxStartups = strconv.FormatInt(n, 10)
				}
			}
		case "keepalive":
			st.Keepalive = ps.duration(l, name, true)
		case "takeover-probe":
			st.TakeoverProbe = ps.duration(l, name, true)
		case "drain":
			st.Drain = ps.duration(l, name, false)
		case "udp-idle":
			if st.UDPIdle = ps.duration(l, name, false); st.UDPIdle == 0 {
				st.UDPIdle = DefaultUDPIdle
			}
		case "login-grace":
			st.LoginGrace = ps.duration(l, name, true)
		case "udp-max-flows":
			if n, ok := ps.integer(l, "udp-max-flows = 1024"); ok {
				if n < 1 || n > 1<<20 {
					ps.errorf(l.vpos, "udp-max-flows %d: want from 1 to %d", n, 1<<20)
					continue
				}
				st.UDPMaxFlows = int(n)
			}
		case "max-auth-tries":
			if n, ok := ps.integer(l, "max-auth-tries = 6"); ok {
				if n < 1 || n > 1000 {
					ps.errorf(l.vpos, "max-auth-tries %d: want from 1 to 1000", n)
					continue
				}
				st.MaxAuthTries = int(n)
			}
		case "map":
			if v, ok := ps.boolean(l); ok {
				s.Map = v
			}
		case "map-via":
			if v, ok := ps.str(l, `map-via = "auto"`); ok {
				switch v {
				case "auto", "pcp", "natpmp", "upnp":
					s.MapVia = v
				default:
					ps.errorf(l.vpos, "map-via %q: want \"auto\", \"pcp\", \"natpmp\" or \"upnp\"", v)
				}
			}
		case "map-gateway":
			if v, ok := ps.str(l, `map-gateway = "192.168.1.1"`); ok {
				if _, err := netip.ParseAddr(v); err != nil {
					if _, err := netip.ParseAddrPort(v); err != nil {
						ps.errorf(l.vpos, "map-gateway %q: want the router's IPv4 address, e.g. map-gateway = \"192.168.1.1\"", v)
						continue
					}
				}
				s.MapGateway = v
			}
		case "map-ssdp":
			if v, ok := ps.str(l, `map-ssdp = "239.255.255.250:1900"`); ok {
				if _, err := netip.ParseAddrPort(v); err != nil {
					ps.errorf(l.vpos, "map-ssdp %q: want ADDR:PORT, e.g. map-ssdp = \"239.255.255.250:1900\"", v)
					continue
				}
				s.MapSSDP = v
			}
		case "debug-addr":
			if v, ok := ps.str(l, `debug-addr = "127.0.0.1:6060"`); ok {
				s.DebugAddr = v
			}
		case "tls-cert":
			certAt = l.vpos
			if v, ok := ps.str(l, `tls-cert = "/etc/pinhole/cert.pem"`); ok {
				if v == "" {
					ps.errorf(l.vpos, "tls-cert is empty: name a PEM certificate file, or leave tls-cert and tls-key out for a self-signed certificate")
					continue
				}
				st.TLSCert = resolve(file, v)
			}
		case "tls-key":
			keyAt = l.vpos
			if v, ok := ps.str(l, `tls-key = "/etc/pinhole/key.pem"`); ok {
				if v == "" {
					ps.errorf(l.vpos, "tls-key is empty: name the PEM private key file of tls-cert, or leave tls-cert and tls-key out for a self-signed certificate")
					continue
				}
				st.TLSKey = resolve(file, v)
			}
		case "ws-path":
			if v, ok := ps.str(l, `ws-path = "/ssh"`); ok {
				if !strings.HasPrefix(v, "/") || strings.ContainsAny(v, " \t?#") {
					ps.errorf(l.vpos, "ws-path %q: want a URL path starting with /, such as ws-path = %q", v, transport.DefaultPath)
					continue
				}
				st.WSPath = v
			}
		case "ssh-sni":
			st.SSHSNI = nil
			for _, n := range ps.strs(l, `ssh-sni = ["ssh.example.com"]`) {
				if n.s == "" || strings.ContainsAny(n.s, " \t/:@") {
					ps.errorf(n.at, "ssh-sni %q: want a TLS server name, such as \"ssh.example.com\"", n.s)
					continue
				}
				if slices.Contains(st.SSHSNI, n.s) {
					ps.errorf(n.at, "ssh-sni %q is given twice: drop one", n.s)
					continue
				}
				st.SSHSNI = append(st.SSHSNI, n.s)
			}
			slices.Sort(st.SSHSNI) // their order means nothing: a reorder restarts nothing
		case "trusted-proxy":
			st.TrustedProxy = nil
			for _, a := range ps.strs(l, `trusted-proxy = ["127.0.0.1/32"]`) {
				if _, err := netip.ParsePrefix(a.s); err != nil {
					if _, err := netip.ParseAddr(a.s); err != nil {
						ps.errorf(a.at, "trusted-proxy %q: want an address or CIDR, such as \"127.0.0.1/32\" or \"10.0.0.0/8\"", a.s)
						continue
					}
				}
				if slices.Contains(st.TrustedProxy, a.s) {
					ps.errorf(a.at, "trusted-proxy %q is given twice: drop one", a.s)
					continue
				}
				st.TrustedProxy = append(st.TrustedProxy, a.s)
			}
			slices.Sort(st.TrustedProxy)
		case "domain":
			domainAt = l.vpos
			if v, ok := ps.str(l, `domain = "tunnels.example.com"`); ok {
				if v == "" || strings.ContainsAny(v, " /:@") || !strings.Contains(strings.Trim(v, "."), ".") && v != "localhost" {
					ps.errorf(l.vpos, "domain %q: want a domain name such as \"tunnels.example.com\"", v)
					continue
				}
				st.Domain = v
			}
		case "acme":
			acmeAt = l.vpos
			if v, ok := ps.boolean(l); ok {
				st.ACME = v
			}
		case "acme-directory":
			if acmeKeyAt == (pos{}) {
				acmeKeyAt = l.key
			}
			if v, ok := ps.str(l, `acme-directory = "https://acme-v02.api.letsencrypt.org/directory"`); ok {
				if !strings.HasPrefix(v, "https://") || len(v) == len("https://") {
					ps.errorf(l.vpos, "acme-directory %q: want the https:// URL of an ACME directory, such as \"https://acme-v02.api.letsencrypt.org/directory\"", v)
					continue
				}
				st.ACMEDirectory = v
			}
		case "acme-email":
			if acmeKeyAt == (pos{}) {
				acmeKeyAt = l.key
			}
			if v, ok := ps.str(l, `acme-email = "ops@example.com"`); ok {
				if !strings.Contains(v, "@") || strings.ContainsAny(v, " \t") {
					ps.errorf(l.vpos, "acme-email %q: want an email address, such as \"ops@example.com\"", v)
					continue
				}
				st.ACMEEmail = v
			}
		case "acme-ca":
			if acmeKeyAt == (pos{}) {
				acmeKeyAt = l.key
			}
			if v, ok := ps.str(l, `acme-ca = "/etc/pinhole/acme-ca.pem"`); ok {
				if v == "" {
					ps.errorf(l.vpos, "acme-ca is empty: name a PEM file of CA certificates, or leave acme-ca out for the system's roots")
					continue
				}
				st.ACMECA = resolve(file, v)
			}
		case "name-ttl":
			if st.NameTTL = ps.duration(l, name, false); st.NameTTL == 0 {
				st.NameTTL = 7 * 24 * time.Hour
			}
		case "max-http-conns", "per-source-max-http-conns":
			if n, ok := ps.integer(l, name+" = 1000"); ok {
				if n < 0 || n > 1<<20 {
					ps.errorf(l.vpos, "%s %d: want from 0 (no limit) to %d", name, n, 1<<20)
					continue
				}
				if name == "max-http-conns" {
					st.MaxHTTPConns = int(n)
				} else {
					st.PerSourceMaxHTTPConns = int(n)
				}
			}
		case "max-names-per-key":
			if n, ok := ps.integer(l, "max-names-per-key = 10"); ok {
				if n < 0 || n > 1<<20 {
					ps.errorf(l.vpos, "max-names-per-key %d: want from 0 (no limit) to %d", n, 1<<20)
					continue
				}
				st.MaxNamesPerKey = int(n)
			}
		case "max-ports-per-key", "max-streams-per-key", "max-stream-rate-per-key":
			field, def := &st.MaxPortsPerKey, DefaultMaxPortsPerKey
			switch name {
			case "max-streams-per-key":
				field, def = &st.MaxStreamsPerKey, DefaultMaxStreamsPerKey
			case "max-stream-rate-per-key":
				field, def = &st.MaxStreamRatePerKey, DefaultMaxStreamRatePerKey
			}
			if n, ok := ps.integer(l, fmt.Sprintf("%s = %d", name, def)); ok {
				if n < 0 || n > 1<<30 {
					ps.errorf(l.vpos, "%s %d: want from 0 (no limit) to %d", name, n, 1<<30)
					continue
				}
				*field = int(n)
			}
		case "upstream-timeout":
			if st.UpstreamTimeout = ps.duration(l, name, false); st.UpstreamTimeout == 0 {
				st.UpstreamTimeout = 30 * time.Second
			}
		default:
			ps.unknown(l.key, name, serverKeys, "pinhole server's file")
		}
	}
	st0 := s.Settings
	// Each alone is a mistake; one given but bad is reported already, and
	// so is its mate's absence then.
	switch {
	case st0.TLSCert != "" && keyAt == (pos{}):
		ps.errorf(certAt, "tls-cert without tls-key: add tls-key = \"KEY.pem\", the certificate's private key, or drop tls-cert for a self-signed certificate")
	case st0.TLSKey != "" && certAt == (pos{}):
		ps.errorf(keyAt, "tls-key without tls-cert: add tls-cert = \"CERT.pem\", or drop tls-key for a self-signed certificate")
	}
	switch {
	case st0.ACME && domainAt == (pos{}):
		ps.errorf(acmeAt, "acme needs domain: add domain = \"tunnels.example.com\", the names certificates are asked for, or drop acme")
	case !st0.ACME && acmeAt == (pos{}) && acmeKeyAt != (pos{}):
		ps.errorf(acmeKeyAt, "acme-directory, acme-email and acme-ca go with acme: add acme = true, or drop them")
	}
	if len(ps.errs) > 0 {
		slices.SortStableFunc(ps.errs, func(a, b *Error) int {
			if a.Line != b.Line {
				return a.Line - b.Line
			}
			return a.Col - b.Col
		})
		return nil, ps.errs
	}
	return s, nil
}

// String is the listen addresses, for messages.
func (s *Server) String() string { return fmt.Sprintf("listen %s", strings.Join(s.Listen, ", ")) }
