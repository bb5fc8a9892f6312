package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/spec"
	"github.com/pinhole-dev/pinhole/internal/transport"
)

const good = `# two tunnels
drain = "3s"

[tunnel.db]
host = "deploy@bastion.example.com"
port = 2222
identity = ["keys/id_db", "~/.ssh/id_ed25519"]
known-hosts = "/etc/pinhole/known_hosts"
host-key-check = "yes"
keepalive = "5s"
keepalive-count = 4
local = [
  "5432:db.internal:5432", # the database
  "5353:dns.internal:53/udp",
]

[tunnel.web]
host = "vps.example.com"
user = "me"
remote = "8080:localhost:3000"
dynamic = ["127.0.0.1:1080"]
proxy-auth = "alice:secret"
allow-open-proxy = true
udp-idle = "2m"
udp-max-flows = 10
jump = "me@bastion:2222,gw"
bind = "192.0.2.10"
`

func mustForward(t *testing.T, k spec.Kind, s string) spec.Forward {
	t.Helper()
	f, err := spec.Parse(k, s)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestParseGood(t *testing.T) {
	cfg, err := Parse("/etc/pinhole/up.toml", []byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Drain != 3*time.Second || len(cfg.Tunnels) != 2 {
		t.Fatalf("drain %v, %d tunnels", cfg.Drain, len(cfg.Tunnels))
	}
	db, web := cfg.Tunnel("db"), cfg.Tunnel("web")
	wantDB := Conn{
		Host: "bastion.example.com", Port: 2222, User: "deploy",
		Identity:   []string{"/etc/pinhole/keys/id_db", "~/.ssh/id_ed25519"},
		KnownHosts: "/etc/pinhole/known_hosts", HostKeyCheck: "yes",
		Keepalive: 5 * time.Second, KeepaliveCount: 4, UDPIdle: DefaultUDPIdle, UDPMaxFlows: DefaultUDPMaxFlows,
	}
	if !reflect.DeepEqual(db.Conn, wantDB) {
		t.Errorf("db:\n got %+v\nwant %+v", db.Conn, wantDB)
	}
	if want := []spec.Forward{mustForward(t, spec.Local, "5432:db.internal:5432"), mustForward(t, spec.Local, "5353:dns.internal:53/udp")}; !reflect.DeepEqual(db.Forwards, want) {
		t.Errorf("db forwards %v, want %v", db.Forwards, want)
	}
	wantWeb := Conn{
		Host: "vps.example.com", Port: 22, User: "me", HostKeyCheck: "accept-new",
		Keepalive: DefaultKeepalive, KeepaliveCount: 3, ProxyAuth: "alice:secret", AllowOpenProxy: true,
		UDPIdle: 2 * time.Minute, UDPMaxFlows: 10, Jump: "me@bastion:2222,gw", Bind: "192.0.2.10",
	}
	if !reflect.DeepEqual(web.Conn, wantWeb) {
		t.Errorf("web:\n got %+v\nwant %+v", web.Conn, wantWeb)
	}
	if want := []spec.Forward{mustForward(t, spec.Remote, "8080:localhost:3000"), mustForward(t, spec.Dynamic, "127.0.0.1:1080")}; !reflect.DeepEqual(web.Forwards, want) {
		t.Errorf("web forwards %v, want %v", web.Forwards, want)
	}
}

// TestParseOtherSpellings: inline tables and dotted keys are the same
// TOML, and mean the same tunnels.
func TestParseOtherSpellings(t *testing.T) {
	a, err := Parse("a.toml", []byte("[tunnel.x]\nhost = \"h\"\nlocal = [\"1:h:2\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{
		"tunnel.x = { host = \"h\", local = [\"1:h:2\"] }\n",
		"[tunnel]\nx.host = \"h\"\nx.local = \"1:h:2\"\n",
	} {
		b, err := Parse("a.toml", []byte(src))
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		if d := Compare(a, b); !d.Empty() || !reflect.DeepEqual(a.Tunnels[0].Conn, b.Tunnels[0].Conn) || !reflect.DeepEqual(a.Tunnels[0].Forwards, b.Tunnels[0].Forwards) {
			t.Errorf("%q gives %+v, want %+v", src, b.Tunnels[0], a.Tunnels[0])
		}
	}
}

// TestParseErrors: each mistake is reported at its line and column, with
// what to write instead.
func TestParseErrors(t *testing.T) {
	base := "[tunnel.a]\nhost = \"h\"\nlocal = [\"8080:x:80\"]\n"
	for _, tc := range []struct {
		name, src string
		want      []string // each an error line's prefix "line:col: " and a part of its text
	}{
		{"unknown key", base + "hostname = \"x\"\n", []string{`4:1: unknown key "hostname" in [tunnel.a]: did you mean "host"?`}},
		{"unknown key underscored", base + "known_hosts = \"x\"\n", []string{`4:1: unknown key "known_hosts" in [tunnel.a]: did you mean "known-hosts"?`}},
		{"unknown top key", "drian = \"1s\"\n" + base, []string{`1:1: unknown key "drian" in the top level: did you mean "drain"?`}},
		{"unknown table", "[tunnels.a]\nhost = \"h\"\n", []string{`1:2: unknown key "tunnels" in the top level: did you mean "tunnel"?`}},
		{"bad spec", "[tunnel.a]\nhost = \"h\"\nlocal = [\"8080:x:80\", \"8080:db\"]\n", []string{`3:23: -L "8080:db": want [bind:]port:host:hostport`}},
		{"bad port", base + "port = 70000\n", []string{"4:8: port 70000: want a port from 1 to 65535"}},
		{"port as string", base + "port = \"22\"\n", []string{"4:8: port is a whole number, not a string: write port = 22"}},
		{"bad duration", base + "keepalive = 15\n", []string{`4:13: keepalive is a duration in quotes, not a number: write keepalive = "15s"`}},
		{"bad duration text", base + "keepalive = \"15 seconds\"\n", []string{`4:13: keepalive "15 seconds" is not a duration`}},
		{"bad check", base + "host-key-check = \"maybe\"\n", []string{`4:18: host-key-check "maybe": want "yes"`}},
		{"no host", "[tunnel.a]\nlocal = [\"1:h:2\"]\n", []string{"1:9: tunnel a has no host: add host ="}},
		{"nothing to forward", "[tunnel.a]\nhost = \"h\"\n", []string{"1:9: tunnel a has nothing to forward"}},
		{"duplicate forward", "[tunnel.a]\nhost = \"h\"\nlocal = [\"1:h:2\", \"1:h:2\"]\n", []string{"3:19: -L 1:h:2 is given twice in tunnel a"}},
		{"port held by two tunnels", base + "[tunnel.b]\nhost = \"h\"\nlocal = [\"8080:y:80\"]\n", []string{"6:10: -L 8080:y:80 listens where tunnel a already does"}},
		{"udp dynamic", base + "dynamic = [\"1080/udp\"]\n", []string{"4:12: -D \"1080/udp\": -D does not carry UDP"}},
		{"user twice", "[tunnel.a]\nhost = \"x@h\"\nuser = \"y\"\nlocal = [\"1:h:2\"]\n", []string{`3:8: user = "y" but host says "x"@`}},
		{"host with port", base + "[tunnel.b]\nhost = \"h:22\"\nlocal = [\"1:h:2\"]\n", []string{`5:8: host "h:22": put the port in port = 22`}},
		{"bad name", "[tunnel.\"a b\"]\nhost = \"h\"\nlocal = [\"1:h:2\"]\n", []string{`tunnel name "a b"`}},
		{"syntax", "[tunnel.a\nhost = 1\n", []string{"1:"}},
		{"bad jump", base + "jump = \"me@:22\"\n", []string{"4:8: jump: "}},
		{"bad bind", base + "bind = \"eth0\"\n", []string{`4:8: bind "eth0": want an IP address`}},
		{"bad address family", base + "address-family = \"ipv4\"\n", []string{`4:18: address-family "ipv4": want "any", "inet"`}},
		{"key twice", base + "host = \"h2\"\n", []string{"4:1: "}},
		{"array table", "[[tunnel]]\nhost = \"h\"\n", []string{"1:3: [[tunnel]] is an array of tables"}},
		{"tunnel not a table", "tunnel = 3\n", []string{"1:10: tunnel is a table of tunnels"}},
		{"bool", base + "allow-open-proxy = \"yes\"\n", []string{"4:20: allow-open-proxy is true or false, not a string"}},
		{"two mistakes", base + "prot = 22\nkeepalive = \"x\"\n", []string{`4:1: unknown key "prot"`, `5:13: keepalive "x"`}},
		{"bad URL scheme", base + "[tunnel.b]\nhost = \"https://h\"\nlocal = [\"1:h:2\"]\n", []string{`5:8: host: "https://h": unknown scheme "https"; want ssh://, tls://, ws:// or wss://`}},
		{"URL without host", base + "[tunnel.b]\nhost = \"wss:///ssh\"\nlocal = [\"1:h:2\"]\n", []string{`5:8: host: "wss:///ssh": no host`}},
		{"URL with a path for tls", base + "[tunnel.b]\nhost = \"tls://h/ssh\"\nlocal = [\"1:h:2\"]\n", []string{`5:8: host: "tls://h/ssh": only ws:// and wss:// take a path`}},
		{"URL user and user", "[tunnel.a]\nhost = \"wss://x@h/ssh\"\nuser = \"y\"\nlocal = [\"1:h:2\"]\n", []string{`3:8: user = "y" but host says "x"@`}},
		{"URL and port", "[tunnel.a]\nhost = \"wss://me@h/ssh\"\nport = 8443\nlocal = [\"1:h:2\"]\n", []string{`3:8: port = 8443 and host is a URL: put the port in the URL, as host = "wss://me@h:8443/ssh", and drop port`}},
		{"port then URL", "[tunnel.a]\nport = 22\nhost = \"ssh://h\"\nlocal = [\"1:h:2\"]\n", []string{`2:8: port = 22 and host is a URL: put the port in the URL, as host = "ssh://h:22"`}},
		{"bad fingerprint", base + "tls-fingerprint = \"MD5:ab:cd\"\n", []string{`4:19: tls-fingerprint: TLS fingerprint "MD5:ab:cd": want SHA256: and base64`}},
		{"short fingerprint", base + "tls-fingerprint = \"SHA256:abcd\"\n", []string{`4:19: tls-fingerprint: TLS fingerprint "SHA256:abcd": want SHA256: and the 43 base64 characters`}},
		{"fingerprint not a string", base + "tls-fingerprint = 3\n", []string{`4:19: tls-fingerprint is a string, not a number`}},
		{"empty tls-ca", base + "tls-ca = \"\"\n", []string{`4:10: tls-ca is empty: name a PEM file`}},
		{"tls-ca a list", base + "tls-ca = [\"ca.pem\"]\n", []string{`4:1: tls-ca is a string, not a list`}},
		{"bad proxy", base + "proxy = \"://nohost\"\n", []string{`4:9: proxy "://nohost": `}},
		{"empty proxy", base + "proxy = \"\"\n", []string{`4:9: proxy is empty: give a proxy URL`}},
		{"proxy a bool", base + "proxy = false\n", []string{`4:9: proxy is a string, not true or false: write proxy = "http://proxy.example.com:3128"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("up.toml", []byte(tc.src))
			if err == nil {
				t.Fatalf("accepted: %+v", cfg)
			}
			es := AsErrors(err)
			if len(es) != len(tc.want) {
				t.Fatalf("%d errors, want %d:\n%v", len(es), len(tc.want), err)
			}
			for i, w := range tc.want {
				got := es[i].Error()
				if !strings.HasPrefix(got, "up.toml:") || !strings.Contains(got, w) {
					t.Errorf("error %d:\n got %s\nwant up.toml:%s...", i, got, w)
				}
			}
		})
	}
}

func parse(t *testing.T, src string) *Config {
	t.Helper()
	cfg, err := Parse("up.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func names(ts []*Tunnel) []string {
	var s []string
	for _, t := range ts {
		s = append(s, t.Name)
	}
	return s
}

func TestCompare(t *testing.T) {
	old := parse(t, `
[tunnel.same]
host = "a"
local = ["1:x:1"]
[tunnel.gone]
host = "a"
local = ["2:x:2"]
[tunnel.moved]
host = "a"
local = ["3:x:3"]
[tunnel.fwds]
host = "a"
local = ["4:x:4", "5:x:5"]
remote = ["6:x:6"]
[tunnel.keys]
host = "a"
identity = ["k1", "k2"]
local = ["7:x:7"]
`)
	new := parse(t, `
drain = "1s"
[tunnel.same]
local = ["1:x:1"]
host = "a" # the same settings in another order
[tunnel.moved]
host = "b"
local = ["3:x:3"]
[tunnel.fwds]
host = "a"
local = ["5:x:5", "8:x:8/udp"]
remote = ["6:x:6"]
[tunnel.keys]
host = "a"
identity = ["k2", "k1"]
local = ["7:x:7"]
[tunnel.fresh]
host = "a"
dynamic = ["1080"]
`)
	d := Compare(old, new)
	if got := names(d.Start); !reflect.DeepEqual(got, []string{"fresh"}) {
		t.Errorf("start %v", got)
	}
	if got := names(d.Stop); !reflect.DeepEqual(got, []string{"gone"}) {
		t.Errorf("stop %v", got)
	}
	if got := names(d.Restart); !reflect.DeepEqual(got, []string{"keys", "moved"}) {
		t.Errorf("restart %v (identity order matters: it is the order keys are tried)", got)
	}
	if !reflect.DeepEqual(d.Same, []string{"same"}) {
		t.Errorf("same %v", d.Same)
	}
	if len(d.Change) != 1 || d.Change[0].Tunnel.Name != "fwds" {
		t.Fatalf("change %+v", d.Change)
	}
	c := d.Change[0]
	if want := []spec.Forward{mustForward(t, spec.Local, "8:x:8/udp")}; !reflect.DeepEqual(c.Add, want) {
		t.Errorf("add %v, want %v", c.Add, want)
	}
	if want := []spec.Forward{mustForward(t, spec.Local, "4:x:4")}; !reflect.DeepEqual(c.Remove, want) {
		t.Errorf("remove %v, want %v", c.Remove, want)
	}
	if d.Empty() {
		t.Error("Empty")
	}
	if d := Compare(new, new); !d.Empty() || len(d.Same) != len(new.Tunnels) {
		t.Errorf("a config against itself: %+v", d)
	}
	if d := Compare(nil, new); len(d.Start) != len(new.Tunnels) {
		t.Errorf("from nothing: %+v", d)
	}
}

func TestNearest(t *testing.T) {
	for key, want := range map[string]string{
		"hostname": "host", "identityfile": "identity", "LocalForward": "local",
		"keepalive_count": "keepalive-count", "udp-max-flow": "udp-max-flows", "zzzzzzzzzz": "",
	} {
		if got := nearest(key, tunnelKeys); got != want {
			t.Errorf("nearest(%q) = %q, want %q", key, got, want)
		}
	}
}

// FuzzParse: any bytes give a config or errors with a position, never a
// panic; a config that parses has tunnels that compare equal to
// themselves.
func FuzzParse(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte("tunnel.x = { host = \"h\", local = [\"1:h:2\"] }\n"))
	f.Add([]byte("[tunnel.a]\nhost = \"h\"\nlocal = [\"8080:x:80\", 3]\nprot = 1\n"))
	f.Add([]byte("[tunnel.a]\nhost = \"wss://me@h:8443/p\"\nproxy = \"none\"\ntls-ca = \"ca\"\nlocal = \"1:h:2\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("f.toml", data)
		if err != nil {
			es := AsErrors(err)
			if len(es) == 0 {
				t.Fatalf("error without a position: %v", err)
			}
			for _, e := range es {
				if e.Line < 1 || e.Col < 1 {
					t.Fatalf("bad position: %v", e)
				}
			}
			return
		}
		if d := Compare(cfg, cfg); !d.Empty() {
			t.Fatalf("a config differs from itself: %+v", d)
		}
	})
}

func TestCheckFiles(t *testing.T) {
	cfg := parse(t, `[tunnel.a]
host = "h"
identity = ["here", "~/gone"]
known-hosts = "kh"
proxy-auth-file = "/etc/users"
local = ["1:h:2"]
tls-ca = "ca.pem"
[tunnel.b]
host = "h"
host-key-check = "yes"
known-hosts = "kh"
local = ["3:h:4"]
`)
	exists := map[string]bool{"here": true, "/etc/users": true}
	err := CheckFiles(cfg, func(p string) error {
		if exists[p] {
			return nil
		}
		return errors.New("no such file or directory")
	})
	es := AsErrors(err)
	want := []string{
		`up.toml:3:21: identity "~/gone": no such file or directory: create the key with ssh-keygen -t ed25519 -f ~/gone`,
		`up.toml:7:10: tls-ca "ca.pem": no such file or directory: put the CA certificates (PEM) that signed the server's certificate there`,
		`up.toml:11:15: known-hosts "kh": no such file or directory: with host-key-check = "yes" it must list the server`,
	}
	if len(es) != len(want) {
		t.Fatalf("got %v, want %d errors", err, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(es[i].Error(), w) {
			t.Errorf("got  %s\nwant %s...", es[i], w)
		}
	}
}

func TestParseServer(t *testing.T) {
	s, err := ParseServer("/etc/pinhole/server.toml", []byte(`
listen = [":2222", "127.0.0.1:443"]
host-key = "host_key"
authorized-keys = "~/.ssh/authorized_keys"
gateway-ports = "clientspecified"
keepalive = "0s"
max-startups = "5:50:20"
per-source-max-startups = "none"
max-auth-tries = 3
map = true
map-via = "natpmp"
map-gateway = "192.168.1.1"
debug-addr = "127.0.0.1:6060"
tls-cert = "tls/cert.pem"
tls-key = "/etc/ssl/private/pinhole.key"
ws-path = "/tunnel"
ssh-sni = ["ssh.example.com", "b.example.com"]
trusted-proxy = ["127.0.0.1", "10.0.0.0/8"]
domain = "tunnels.example.com"
name-ttl = "48h"
max-ports-per-key = 50
max-streams-per-key = 0
max-http-conns = 1000
per-source-max-http-conns = 0
`), ServerChecks{})
	if err != nil {
		t.Fatal(err)
	}
	want := &Server{
		File: "/etc/pinhole/server.toml", Listen: []string{":2222", "127.0.0.1:443"},
		HostKey: "/etc/pinhole/host_key", AuthorizedKeys: "~/.ssh/authorized_keys",
		Map: true, MapVia: "natpmp", MapGateway: "192.168.1.1", DebugAddr: "127.0.0.1:6060",
		Settings: ServerSettings{
			HostKey: "/etc/pinhole/host_key", GatewayPorts: "clientspecified", Keepalive: 0, TakeoverProbe: 3 * time.Second,
			Drain: DefaultDrain, UDPIdle: DefaultUDPIdle, UDPMaxFlows: DefaultUDPMaxFlows, LoginGrace: 30 * time.Second,
			MaxStartups: "5:50:20", PerSourceMaxStartups: "none", MaxAuthTries: 3,
			TLSCert: "/etc/pinhole/tls/cert.pem", TLSKey: "/etc/ssl/private/pinhole.key", WSPath: "/tunnel",
			SSHSNI: []string{"b.example.com", "ssh.example.com"}, TrustedProxy: []string{"10.0.0.0/8", "127.0.0.1"},
			Domain: "tunnels.example.com", NameTTL: 48 * time.Hour, UpstreamTimeout: 30 * time.Second, MaxNamesPerKey: 10,
			MaxPortsPerKey: 50, MaxStreamsPerKey: 0, MaxStreamRatePerKey: DefaultMaxStreamRatePerKey, MaxHTTPConns: 1000, PerSourceMaxHTTPConns: 0,
		},
	}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("\n got %+v\nwant %+v", s, want)
	}
	_, err = ParseServer("s.toml", []byte("listen = \":22\"\nciphers = \"rot13\"\nlisten-address = 1\n"), ServerChecks{Ciphers: func(string) error { return errors.New("unknown cipher") }})
	es := AsErrors(err)
	if len(es) != 2 || es[0].Error() != `s.toml:2:11: ciphers "rot13": unknown cipher` || !strings.Contains(es[1].Error(), `did you mean "listen"?`) {
		t.Errorf("errors: %v", err)
	}
}

func TestCompareServer(t *testing.T) {
	p := func(src string) *Server {
		s, err := ParseServer("s.toml", []byte(src), ServerChecks{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	old := p("listen = [\":1\", \":2\"]\nauthorized-keys = \"a\"\n")
	if d := CompareServer(old, p("listen = [\":2\", \":1\"]\nauthorized-keys = \"a\"\n")); !reflect.DeepEqual(d, ServerDiff{}) {
		t.Errorf("the same in another order: %+v", d)
	}
	tlsOld := p("tls-cert = \"a.pem\"\ntls-key = \"a.key\"\nssh-sni = [\"x\", \"y\"]\ntrusted-proxy = [\"10.0.0.1\", \"::1\"]\n")
	for src, restart := range map[string]bool{
		"tls-key = \"a.key\"\ntls-cert = \"a.pem\"\nssh-sni = [\"y\", \"x\"]\ntrusted-proxy = [\"::1\", \"10.0.0.1\"]\n":                   false,
		"tls-cert = \"b.pem\"\ntls-key = \"a.key\"\nssh-sni = [\"x\", \"y\"]\ntrusted-proxy = [\"10.0.0.1\", \"::1\"]\n":                   true,
		"tls-cert = \"a.pem\"\ntls-key = \"a.key\"\nssh-sni = [\"x\"]\ntrusted-proxy = [\"10.0.0.1\", \"::1\"]\n":                          true,
		"tls-cert = \"a.pem\"\ntls-key = \"a.key\"\nssh-sni = [\"x\", \"y\"]\ntrusted-proxy = [\"10.0.0.1\"]\n":                            true,
		"tls-cert = \"a.pem\"\ntls-key = \"a.key\"\nssh-sni = [\"x\", \"y\"]\ntrusted-proxy = [\"10.0.0.1\", \"::1\"]\nws-path = \"/t\"\n": true,
		"ssh-sni = [\"x\", \"y\"]\ntrusted-proxy = [\"10.0.0.1\", \"::1\"]\n":                                                              true,
	} {
		if d := CompareServer(tlsOld, p(src)); d.Restart != restart {
			t.Errorf("%q: restart %v, want %v", src, d.Restart, restart)
		}
	}
	d := CompareServer(old, p("listen = [\":2\", \":3\"]\nauthorized-keys = \"b\"\nmax-auth-tries = 2\n"))
	if want := (ServerDiff{Listen: []string{":3"}, Unlisten: []string{":1"}, AuthorizedKeys: true, Restart: true}); !reflect.DeepEqual(d, want) {
		t.Errorf("got %+v, want %+v", d, want)
	}
}

// FuzzParseServer: any bytes give a server config or positioned errors.
func FuzzParseServer(f *testing.F) {
	f.Add([]byte("listen = [\":2222\"]\nkeepalive = \"5s\"\n"))
	f.Add([]byte("listen = \":22\"\n[x]\ny = 1\n"))
	f.Add([]byte("tls-cert = \"c\"\ntls-key = \"k\"\nssh-sni = [\"b\", \"a\"]\ntrusted-proxy = \"::1\"\nws-path = \"/x\"\n"))
	f.Add([]byte("domain = \"a.example\"\nacme = true\nacme-ca = \"ca.pem\"\nacme-email = \"a@b.c\"\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseServer("f.toml", data, ServerChecks{})
		if err != nil {
			for _, e := range AsErrors(err) {
				if e.Line < 1 || e.Col < 1 {
					t.Fatalf("bad position: %v", e)
				}
			}
			if AsErrors(err) == nil {
				t.Fatalf("error without a position: %v", err)
			}
			return
		}
		if d := CompareServer(s, s); !reflect.DeepEqual(d, ServerDiff{}) {
			t.Fatalf("differs from itself: %+v", d)
		}
	})
}

// TestParseServerTransportErrors: the TLS and WebSocket keys say what to
// write, at the value.
func TestParseServerTransportErrors(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"tls-cert = \"c.pem\"\n", `s.toml:1:12: tls-cert without tls-key: add tls-key = "KEY.pem"`},
		{"listen = \":22\"\ntls-key = \"k.pem\"\n", `s.toml:2:11: tls-key without tls-cert: add tls-cert = "CERT.pem"`},
		{"tls-cert = \"\"\n", `s.toml:1:12: tls-cert is empty: name a PEM certificate file`},
		{"tls-cert = \"c.pem\"\ntls-key = 1\n", `s.toml:2:11: tls-key is a string, not a number`},
		{"ws-path = \"ssh\"\n", `s.toml:1:11: ws-path "ssh": want a URL path starting with /, such as ws-path = "/ssh"`},
		{"ws-path = \"/a b\"\n", `s.toml:1:11: ws-path "/a b": want a URL path starting with /`},
		{"ssh-sni = [\"ok.example.com\", \"a b\"]\n", `s.toml:1:30: ssh-sni "a b": want a TLS server name`},
		{"ssh-sni = [\"a\", \"a\"]\n", `s.toml:1:17: ssh-sni "a" is given twice: drop one`},
		{"ssh-sni = 3\n", `s.toml:1:11: ssh-sni is a list of strings, not a number`},
		{"trusted-proxy = [\"nginx\"]\n", `s.toml:1:18: trusted-proxy "nginx": want an address or CIDR, such as "127.0.0.1/32"`},
		{"trusted-proxy = \"10.0.0.0/33\"\n", `s.toml:1:17: trusted-proxy "10.0.0.0/33": want an address or CIDR`},
		{"trusted-proxy = [\"::1\", \"::1\"]\n", `s.toml:1:25: trusted-proxy "::1" is given twice: drop one`},
	} {
		_, err := ParseServer("s.toml", []byte(tc.src), ServerChecks{})
		if es := AsErrors(err); len(es) != 1 || !strings.HasPrefix(es[0].Error(), tc.want) {
			t.Errorf("%q:\n got %v\nwant %s...", tc.src, err, tc.want)
		}
	}
}

// TestParseServerMapErrors: the map keys say what to write.
func TestParseServerMapErrors(t *testing.T) {
	for src, want := range map[string]string{
		"listen = \":22\"\nmap = \"yes\"\n":            `2:7: map is true or false`,
		"listen = \":22\"\nmap-via = \"igd\"\n":        `2:11: map-via "igd": want "auto"`,
		"listen = \":22\"\nmap-gateway = \"router\"\n": `2:15: map-gateway "router": want the router's IPv4 address`,
	} {
		_, err := ParseServer("s.toml", []byte(src), ServerChecks{})
		if es := AsErrors(err); len(es) != 1 || !strings.Contains(es[0].Error(), want) {
			t.Errorf("%q: %v, want %q", src, err, want)
		}
	}
}

// TestParseServerKeyLimitErrors: the per-key limits say what to write.
func TestParseServerKeyLimitErrors(t *testing.T) {
	for src, want := range map[string]string{
		"max-ports-per-key = -1\n":           `1:21: max-ports-per-key -1: want from 0 (no limit) to 1073741824`,
		"max-streams-per-key = \"lots\"\n":   `1:23: max-streams-per-key is a whole number, not a string: write max-streams-per-key = 1000`,
		"max-stream-rate-per-key = 1.5\n":    `1:27: max-stream-rate-per-key is a whole number`,
		"max-streams-per-key = 2147483648\n": `max-streams-per-key 2147483648: want from 0 (no limit)`,
	} {
		_, err := ParseServer("s.toml", []byte(src), ServerChecks{})
		if es := AsErrors(err); len(es) != 1 || !strings.Contains(es[0].Error(), want) {
			t.Errorf("%q: %v, want %q", src, err, want)
		}
	}
}

// TestParseTopDebugAddr: debug-addr at the top level of up's file.
func TestParseTopDebugAddr(t *testing.T) {
	cfg, err := Parse("up.toml", []byte("debug-addr = \"127.0.0.1:0\"\n[tunnel.a]\nhost = \"h\"\nlocal = [\"1:h:2\"]\naddress-family = \"inet6\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DebugAddr != "127.0.0.1:0" || cfg.Tunnel("a").Conn.AddressFamily != "inet6" {
		t.Fatalf("debug-addr %q, address-family %q", cfg.DebugAddr, cfg.Tunnel("a").Conn.AddressFamily)
	}
}

// TestParseTransportKeys: host as a URL, tls-ca, tls-fingerprint and
// proxy, each as Conn keeps it.
func TestParseTransportKeys(t *testing.T) {
	fp := transport.Fingerprint([]byte("a certificate"))
	for _, tc := range []struct {
		name, keys string
		want       Conn
	}{
		{"wss with user and path", `host = "wss://me@vps.example.com/tunnel"`,
			Conn{Host: "vps.example.com", Port: 443, User: "me", URL: "wss://vps.example.com:443/tunnel"}},
		{"wss default path", `host = "wss://vps.example.com"`,
			Conn{Host: "vps.example.com", Port: 443, URL: "wss://vps.example.com:443/ssh"}},
		{"ws port", `host = "ws://vps.example.com:8080"`,
			Conn{Host: "vps.example.com", Port: 8080, URL: "ws://vps.example.com:8080/ssh"}},
		{"tls, user = the URL's", "host = \"tls://me@[2001:db8::1]:8443\"\nuser = \"me\"",
			Conn{Host: "2001:db8::1", Port: 8443, User: "me", URL: "tls://[2001:db8::1]:8443"}},
		{"ssh URL, user beside it", "host = \"ssh://h\"\nuser = \"deploy\"",
			Conn{Host: "h", Port: 22, User: "deploy", URL: "ssh://h:22"}},
		{"tls-ca relative", "host = \"tls://h\"\ntls-ca = \"certs/ca.pem\"",
			Conn{Host: "h", Port: 443, URL: "tls://h:443", TLSCA: "/etc/pinhole/certs/ca.pem"}},
		{"tls-ca home", "host = \"tls://h\"\ntls-ca = \"~/ca.pem\"",
			Conn{Host: "h", Port: 443, URL: "tls://h:443", TLSCA: "~/ca.pem"}},
		{"tls-fingerprint", "host = \"wss://h\"\ntls-fingerprint = \"" + fp + "\"",
			Conn{Host: "h", Port: 443, URL: "wss://h:443/ssh", TLSFingerprint: fp}},
		{"proxy", "host = \"wss://h\"\nproxy = \"http://proxy.example.com:3128\"",
			Conn{Host: "h", Port: 443, URL: "wss://h:443/ssh", Proxy: "http://proxy.example.com:3128"}},
		{"proxy none", "host = \"wss://h\"\nproxy = \"none\"",
			Conn{Host: "h", Port: 443, URL: "wss://h:443/ssh", Proxy: "none"}},
		{"proxy for a plain host", "host = \"h\"\nport = 2222\nproxy = \"socks5h://127.0.0.1:1080\"",
			Conn{Host: "h", Port: 2222, Proxy: "socks5h://127.0.0.1:1080"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Parse("/etc/pinhole/up.toml", []byte("[tunnel.a]\n"+tc.keys+"\nlocal = [\"1:h:2\"]\n"))
			if err != nil {
				t.Fatal(err)
			}
			want := tc.want
			want.HostKeyCheck, want.Keepalive, want.KeepaliveCount = DefaultHostKeyCheck, DefaultKeepalive, DefaultKeepaliveCount
			want.UDPIdle, want.UDPMaxFlows = DefaultUDPIdle, DefaultUDPMaxFlows
			if got := cfg.Tunnel("a").Conn; !reflect.DeepEqual(got, want) {
				t.Errorf("\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

// TestCompareTransportKeys: a change of the URL, the TLS keys or the
// proxy restarts the tunnel; the same URL written another way does not.
func TestCompareTransportKeys(t *testing.T) {
	tun := func(keys string) string { return "[tunnel.a]\n" + keys + "\nlocal = [\"1:h:2\"]\n" }
	old := parse(t, tun("host = \"wss://me@h/ssh\"\ntls-ca = \"ca.pem\"\nproxy = \"none\""))
	for _, tc := range []struct {
		keys    string
		restart bool
	}{
		{"host = \"wss://me@h:443/ssh\"\ntls-ca = \"ca.pem\"\nproxy = \"none\"", false},
		{"host = \"wss://h\"\nuser = \"me\"\ntls-ca = \"ca.pem\"\nproxy = \"none\"", false},
		{"host = \"wss://me@h/other\"\ntls-ca = \"ca.pem\"\nproxy = \"none\"", true},
		{"host = \"tls://me@h\"\ntls-ca = \"ca.pem\"\nproxy = \"none\"", true},
		{"host = \"me@h\"\nport = 443\ntls-ca = \"ca.pem\"\nproxy = \"none\"", true},
		{"host = \"wss://me@h/ssh\"\ntls-ca = \"other.pem\"\nproxy = \"none\"", true},
		{"host = \"wss://me@h/ssh\"\ntls-ca = \"ca.pem\"", true},
		{"host = \"wss://me@h/ssh\"\ntls-ca = \"ca.pem\"\nproxy = \"none\"\ntls-fingerprint = \"" + transport.Fingerprint(nil) + "\"", true},
	} {
		d := Compare(old, parse(t, tun(tc.keys)))
		if got := len(d.Restart) == 1; got != tc.restart || got == (len(d.Same) == 1) {
			t.Errorf("%q: restart %v, want %v (%+v)", tc.keys, got, tc.restart, d)
		}
	}
}

// TestParseServerACME: the acme keys, their errors at the value, and a
// relative acme-ca beside the file.
func TestParseServerACME(t *testing.T) {
	s, err := ParseServer("/etc/pinhole/server.toml", []byte(`
domain = "tunnels.example.com"
acme = true
acme-directory = "https://127.0.0.1:14000/dir"
acme-email = "ops@example.com"
acme-ca = "pebble.pem"
`), ServerChecks{})
	if err != nil {
		t.Fatal(err)
	}
	st := s.Settings
	if !st.ACME || st.ACMEDirectory != "https://127.0.0.1:14000/dir" || st.ACMEEmail != "ops@example.com" || st.ACMECA != "/etc/pinhole/pebble.pem" {
		t.Errorf("got %+v", st)
	}
	for _, tc := range []struct{ src, want string }{
		{"acme = \"yes\"\n", `s.toml:1:8: acme is true or false, not a string: write acme = true`},
		{"acme = true\ndomain = \"t.example.com\"\nacme-directory = \"http://ca/dir\"\n", `s.toml:3:18: acme-directory "http://ca/dir": want the https:// URL of an ACME directory`},
		{"acme = true\ndomain = \"t.example.com\"\nacme-email = \"ops\"\n", `s.toml:3:14: acme-email "ops": want an email address`},
		{"acme = true\ndomain = \"t.example.com\"\nacme-ca = \"\"\n", `s.toml:3:11: acme-ca is empty: name a PEM file of CA certificates`},
		{"listen = \":22\"\nacme = true\n", `s.toml:2:8: acme needs domain: add domain = "tunnels.example.com"`},
		{"acme-email = \"a@b.c\"\n", `s.toml:1:1: acme-directory, acme-email and acme-ca go with acme: add acme = true`},
	} {
		_, err := ParseServer("s.toml", []byte(tc.src), ServerChecks{})
		if es := AsErrors(err); len(es) != 1 || !strings.HasPrefix(es[0].Error(), tc.want) {
			t.Errorf("%q:\n got %v\nwant %s...", tc.src, err, tc.want)
		}
	}
}
