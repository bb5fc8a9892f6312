package sshconfig

import (
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pinhole-dev/pinhole/internal/spec"
)

// keys are the keywords pinhole uses (and Host, Include), each with what
// it does to the state. A value is checked even in a block that does not
// apply, as ssh checks it.
var keys map[string]func(st *state, src *source, kw string, args []string) error

func init() {
	keys = map[string]func(*state, *source, string, []string) error{
		"host":    func(st *state, src *source, _ string, a []string) error { return st.hostLine(src, a) },
		"include": func(st *state, src *source, _ string, a []string) error { return st.include(src, a) },
		"hostname": oneArg(func(st *state, src *source, kw, v string) error {
			if st.take(src, "hostname") {
				st.hostNameRaw = v
			}
			return nil
		}),
		"user": oneArg(func(st *state, src *source, kw, v string) error {
			if st.take(src, "user") {
				st.s.User = v
			}
			return nil
		}),
		"port": oneArg(func(st *state, src *source, kw, v string) error {
			n, err := strconv.ParseUint(v, 10, 16)
			if err != nil {
				// A service name, as ssh's a2port takes it ("Port ssh").
				p, lerr := net.LookupPort("tcp", v)
				n, err = uint64(p), lerr
			}
			if err != nil || n == 0 || n > 65535 {
				return src.errorf("%s %s: want a port from 1 to 65535, e.g. %s 2222", kw, v, kw)
			}
			if st.take(src, "port") {
				st.s.Port = uint16(n)
			}
			return nil
		}),
		"connecttimeout": oneArg(func(st *state, src *source, kw, v string) error {
			d, err := parseTime(v)
			if err != nil {
				return src.errorf("%s %s: %v", kw, v, err)
			}
			// "none" leaves it unset, so a later value still applies.
			if v != "none" && st.take(src, "connecttimeout") && d > 0 {
				st.s.ConnectTimeout = d
			}
			return nil
		}),
		"serveraliveinterval": oneArg(func(st *state, src *source, kw, v string) error {
			d, err := parseTime(v)
			if err != nil {
				return src.errorf("%s %s: %v", kw, v, err)
			}
			if st.take(src, "serveraliveinterval") {
				if d <= 0 {
					d = -1
				}
				st.s.ServerAliveInterval = d
			}
			return nil
		}),
		"serveralivecountmax": oneArg(func(st *state, src *source, kw, v string) error {
			n, err := strconv.ParseUint(v, 10, 31)
			if err != nil {
				return src.errorf("%s %s: want a whole number, e.g. %s 3", kw, v, kw)
			}
			if st.take(src, "serveralivecountmax") {
				st.s.ServerAliveCountMax = int(n)
			}
			return nil
		}),
		"proxyjump": func(st *state, src *source, kw string, a []string) error {
			// ssh reads the first argument only (a list is comma-separated).
			v := a[0]
			if strings.ContainsAny(v, "\x00") {
				return src.errorf("%s: invalid value", kw)
			}
			if !strings.EqualFold(v, "none") {
				for _, hop := range strings.Split(v, ",") {
					if hop == "" || strings.HasPrefix(hop, "@") || strings.HasSuffix(hop, ":") {
						return src.errorf("%s %s: want [user@]host[:port][,more], e.g. %s alice@bastion:2222", kw, v, kw)
					}
				}
			}
			if *src.active && !src.never && !st.set["proxyjump"] && !st.set["proxycommand"] {
				st.set["proxyjump"] = true
				st.set["proxycommand"] = true
				if !strings.EqualFold(v, "none") {
					st.s.ProxyJump = v
				}
			}
			return nil
		},
		"identityfile": oneArg(func(st *state, src *source, kw, v string) error {
			if *src.active && !src.never {
				st.addIdentity(v)
			}
			return nil
		}),
		"identitiesonly": flagKey("identitiesonly", func(s *Settings, b bool) { s.IdentitiesOnly = b }),
		"gatewayports":   flagKey("gatewayports", func(s *Settings, b bool) { s.GatewayPorts = b }),
		"exitonforwardfailure": flagKey("exitonforwardfailure", func(s *Settings, b bool) {
			s.ExitOnForwardFailure = b
		}),
		"clearallforwardings": oneArg(func(st *state, src *source, kw, v string) error {
			b, err := parseFlag(v)
			if err != nil {
				return src.errorf("%s %s: %v", kw, v, err)
			}
			if st.take(src, "clearallforwardings") {
				st.clearFwd = b
			}
			return nil
		}),
		"identityagent": oneArg(func(st *state, src *source, kw, v string) error {
			if strings.HasPrefix(v, "$") && !strings.HasPrefix(v, "${") && !validEnvName(v[1:]) {
				return src.errorf("%s %s: not a variable name; write e.g. %s $SSH_AUTH_SOCK or a path", kw, v, kw)
			}
			if st.take(src, "identityagent") {
				st.s.IdentityAgent = v
			}
			return nil
		}),
		"localforward":   forwardKey(spec.Local),
		"remoteforward":  forwardKey(spec.Remote),
		"dynamicforward": forwardKey(spec.Dynamic),
		"stricthostkeychecking": oneArg(func(st *state, src *source, kw, v string) error {
			var m string
			switch strings.ToLower(v) {
			case "yes", "true":
				m = "yes"
			case "no", "false", "off":
				m = "no"
			case "accept-new":
				m = "accept-new"
			case "ask":
				m = "ask"
			default:
				return src.errorf("%s %s: want yes, accept-new, no or ask", kw, v)
			}
			if st.take(src, "stricthostkeychecking") {
				st.s.StrictHostKeyChecking = m
			}
			return nil
		}),
		"userknownhostsfile": func(st *state, src *source, kw string, a []string) error {
			for i, f := range a {
				if strings.EqualFold(f, "none") && (i > 0 || len(a) > 1) {
					return src.errorf("%s: none must stand alone", kw)
				}
			}
			if st.take(src, "userknownhostsfile") {
				st.known = append(st.known, a...)
			}
			return nil
		},
		"hostkeyalias": oneArg(func(st *state, src *source, kw, v string) error {
			// Not used by pinhole but for %k; still listed as ignored.
			if *src.active && !src.never {
				st.s.Ignored = append(st.s.Ignored, fmt.Sprintf("%s: %s %s", src.where(), kw, v))
			}
			if st.take(src, "hostkeyalias") {
				st.hostKeyAlias = v
			}
			return nil
		}),
		"bindaddress": oneArg(func(st *state, src *source, kw, v string) error {
			if st.take(src, "bindaddress") {
				st.s.BindAddress = v
			}
			return nil
		}),
		"addressfamily": oneArg(func(st *state, src *source, kw, v string) error {
			f := strings.ToLower(v)
			if f != "any" && f != "inet" && f != "inet6" {
				return src.errorf("%s %s: want any, inet (IPv4) or inet6 (IPv6)", kw, v)
			}
			if st.take(src, "addressfamily") {
				st.s.AddressFamily = f
			}
			return nil
		}),
	}
}

// oneArg wraps a key that takes exactly one argument.
func oneArg(f func(st *state, src *source, kw, v string) error) func(*state, *source, string, []string) error {
	return func(st *state, src *source, kw string, a []string) error {
		if len(a) > 1 {
			return src.errorf("%s takes one value, got %d (%s); put a value with spaces in quotes", kw, len(a), strings.Join(a, " "))
		}
		if a[0] == "" {
			return src.errorf("%s has an empty value; write e.g. %s", kw, example(strings.ToLower(kw)))
		}
		return f(st, src, kw, a[0])
	}
}

func flagKey(key string, set func(*Settings, bool)) func(*state, *source, string, []string) error {
	return oneArg(func(st *state, src *source, kw, v string) error {
		b, err := parseFlag(v)
		if err != nil {
			return src.errorf("%s %s: %v", kw, v, err)
		}
		if st.take(src, key) {
			set(&st.s, b)
		}
		return nil
	})
}

func forwardKey(kind spec.Kind) func(*state, *source, string, []string) error {
	return func(st *state, src *source, kw string, a []string) error {
		var text string
		switch {
		case kind == spec.Dynamic:
			if len(a) != 1 {
				return src.errorf("%s takes one value, [bind:]port; write e.g. %s 1080", kw, kw)
			}
			text = a[0]
		case len(a) == 1 && kind == spec.Remote:
			return src.errorf("%s %s: a remote SOCKS proxy (RemoteForward with one value) is not supported by pinhole; write %s [bind:]port host:hostport", kw, a[0], kw)
		case len(a) != 2:
			return src.errorf("%s takes two values, [bind:]port host:hostport; write e.g. %s 8080 localhost:80", kw, kw)
		default:
			text = a[0] + ":" + a[1]
		}
		f, err := spec.Parse(kind, text)
		if err != nil {
			return src.errorf("%s: %v", kw, strings.TrimPrefix(err.Error(), "spec: "))
		}
		if *src.active && !src.never {
			switch kind {
			case spec.Local:
				st.addForward(&st.s.Local, f)
			case spec.Remote:
				st.addForward(&st.s.Remote, f)
			case spec.Dynamic:
				st.addForward(&st.s.Dynamic, f)
			}
		}
		return nil
	}
}

func parseFlag(v string) (bool, error) {
	switch strings.ToLower(v) {
	case "yes", "true":
		return true, nil
	case "no", "false":
		return false, nil
	}
	return false, fmt.Errorf("want yes or no")
}

// parseTime is OpenSSH's convtime, plus "none": a number of seconds, or
// numbers each with a unit s, m, h, d or w ("1m30s"). "none" is 0.
func parseTime(v string) (time.Duration, error) {
	const hint = "want seconds, or a time such as 30s, 5m or 1h30m"
	if v == "none" {
		return 0, nil
	}
	var total time.Duration
	for rest := v; rest != ""; {
		i := 0
		for i < len(rest) && rest[i] >= '0' && rest[i] <= '9' {
			i++
		}
		if i == 0 || i > 9 {
			return 0, fmt.Errorf("%s", hint)
		}
		n, _ := strconv.Atoi(rest[:i])
		rest = rest[i:]
		unit := time.Second
		if rest != "" {
			switch rest[0] {
			case 's', 'S':
			case 'm', 'M':
				unit = time.Minute
			case 'h', 'H':
				unit = time.Hour
			case 'd', 'D':
				unit = 24 * time.Hour
			case 'w', 'W':
				unit = 7 * 24 * time.Hour
			default:
				return 0, fmt.Errorf("%s", hint)
			}
			rest = rest[1:]
		}
		total += time.Duration(n) * unit
		if total < 0 || total > 1<<31*time.Second {
			return 0, fmt.Errorf("too long; %s", hint)
		}
	}
	return total, nil
}

func validEnvName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// example is a line to write for key, for error messages.
func example(key string) string {
	if e, ok := examples[key]; ok {
		return e
	}
	return key + " VALUE"
}

var examples = map[string]string{
	"host": "Host myserver", "match": "Match host *.example.com", "include": "Include config.d/*",
	"hostname": "HostName server.example.com", "port": "Port 2222", "user": "User alice",
	"connecttimeout": "ConnectTimeout 10", "proxyjump": "ProxyJump bastion",
	"proxycommand": "ProxyCommand ssh -W %h:%p bastion", "identityfile": "IdentityFile ~/.ssh/id_ed25519",
	"identitiesonly": "IdentitiesOnly yes", "identityagent": "IdentityAgent ~/.ssh/agent.sock",
	"localforward": "LocalForward 8080 localhost:80", "remoteforward": "RemoteForward 8080 localhost:3000",
	"dynamicforward": "DynamicForward 1080", "gatewayports": "GatewayPorts no",
	"exitonforwardfailure": "ExitOnForwardFailure yes", "serveraliveinterval": "ServerAliveInterval 15",
	"serveralivecountmax": "ServerAliveCountMax 3", "stricthostkeychecking": "StrictHostKeyChecking accept-new",
	"userknownhostsfile": "UserKnownHostsFile ~/.ssh/known_hosts", "bindaddress": "BindAddress 192.0.2.10",
	"addressfamily": "AddressFamily inet",
}

// nearest is the known keyword closest to key, if one is close.
func nearest(key string) string {
	best, bestD := "", 3
	for k := range openSSHKeywords {
		if d := distance(key, k); d < bestD || d == bestD && k < best && best != "" {
			best, bestD = k, d
		}
	}
	if best == "" {
		return ""
	}
	if e, ok := examples[best]; ok {
		return strings.Fields(e)[0]
	}
	return best
}

// distance is the Levenshtein distance, bounded for long inputs.
func distance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// tokens are the values of the %-tokens once every file is read.
type tokens struct {
	home, host, hostname, port, user, localUser, localHost, uid, alias string
	getenv                                                             func(string) string
}

func (st *state) tokens() tokens {
	t := tokens{
		home: st.o.Home, host: st.host, hostname: st.s.HostName,
		port: "22", user: st.s.User, localUser: st.o.LocalUser, localHost: st.o.LocalHostname,
		getenv: st.o.Getenv, uid: st.o.UID, alias: st.hostKeyAlias,
	}
	if t.alias == "" {
		t.alias = st.host
	}
	if st.s.Port != 0 {
		t.port = strconv.Itoa(int(st.s.Port))
	}
	if t.user == "" {
		t.user = st.o.LocalUser
	}
	return t
}

// expandPath expands a leading ~ (with tilde), ${VAR} and the %-tokens
// %d %h %i %k %l %L %n %p %r %u %% in a path, as ssh does for IdentityFile.
func (t tokens) expandPath(p string, tilde bool) (string, error) {
	if tilde {
		switch {
		case p == "~":
			p = t.home
		case strings.HasPrefix(p, "~/"):
			p = filepath.Join(t.home, p[2:])
		case strings.HasPrefix(p, "~"):
			return "", fmt.Errorf("~user is not supported by pinhole; write the path in full")
		}
	}
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '$' && i+1 < len(p) && p[i+1] == '{' {
			j := strings.IndexByte(p[i:], '}')
			if j < 0 {
				return "", fmt.Errorf("${ without a closing }")
			}
			name := p[i+2 : i+j]
			if !validEnvName(name) {
				return "", fmt.Errorf("${%s} is not a variable name", name)
			}
			v := ""
			if t.getenv != nil {
				v = t.getenv(name)
			}
			if v == "" {
				return "", fmt.Errorf("environment variable %s is not set; set it or write the path in full", name)
			}
			b.WriteString(v)
			i += j
			continue
		}
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+1 >= len(p) {
			return "", fmt.Errorf("a lone %% at the end; write %%%% for a percent sign")
		}
		i++
		switch p[i] {
		case '%':
			b.WriteByte('%')
		case 'd':
			b.WriteString(t.home)
		case 'h':
			b.WriteString(t.hostname)
		case 'n':
			b.WriteString(t.host)
		case 'p':
			b.WriteString(t.port)
		case 'r':
			b.WriteString(t.user)
		case 'u':
			b.WriteString(t.localUser)
		case 'k':
			b.WriteString(t.alias)
		case 'i':
			if t.uid == "" {
				return "", fmt.Errorf("%%i: the user id is unknown; write it out")
			}
			b.WriteString(t.uid)
		case 'l', 'L':
			if t.localHost == "" {
				return "", fmt.Errorf("%%%c: the local host name is unknown; write it out", p[i])
			}
			h := t.localHost
			if p[i] == 'L' {
				h, _, _ = strings.Cut(h, ".")
			}
			b.WriteString(h)
		default:
			return "", fmt.Errorf("token %%%c is not supported by pinhole; it knows %%d %%h %%i %%k %%l %%L %%n %%p %%r %%u and %%%% (a percent sign)", p[i])
		}
	}
	return b.String(), nil
}
