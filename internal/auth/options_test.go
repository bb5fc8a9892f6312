package auth

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseOptions(t *testing.T) {
	tests := []struct {
		in   string
		want Options
	}{
		{"no-pty", Options{PortForwarding: true}},
		{"restrict", Options{}},
		{"restrict,port-forwarding", Options{PortForwarding: true}},
		{"RESTRICT,Port-Forwarding,No-X11-Forwarding", Options{PortForwarding: true}},
		{"port-forwarding,restrict", Options{}},
		{"no-port-forwarding", Options{}},
		{"no-port-forwarding,port-forwarding", Options{PortForwarding: true}},
		{`command="echo \"hi\", there"`, Options{PortForwarding: true, Command: `echo "hi", there`}},
		{`command="a\b"`, Options{PortForwarding: true, Command: `a\b`}},
		{`from="10.0.0.0/8,!10.0.0.1,*.example.com"`, Options{PortForwarding: true, From: []string{"10.0.0.0/8", "!10.0.0.1", "*.example.com"}}},
		{`from="a",from="b"`, Options{PortForwarding: true, From: []string{"a", "b"}}},
		{`permitopen="db:5432",permitopen="[::1]:*",PERMITOPEN="Web.Example:80"`, Options{PortForwarding: true,
			PermitOpen: []Permit{{"db", 5432}, {"::1", -1}, {"Web.Example", 80}}}},
		{`permitopen="none"`, Options{PortForwarding: true, PermitOpen: []Permit{}}},
		{`permitlisten="8080",permitlisten="*:*",permitlisten="[::1]:22",permitlisten="localhost:1"`, Options{PortForwarding: true,
			PermitListen: []Permit{{"", 8080}, {"*", -1}, {"::1", 22}, {"localhost", 1}}}},
		{`permitlisten="none"`, Options{PortForwarding: true, PermitListen: []Permit{}}},
		{`expiry-time="20300102"`, Options{PortForwarding: true, ExpiryTime: time.Date(2030, 1, 2, 0, 0, 0, 0, time.Local)}},
		{`expiry-time="203001021504"`, Options{PortForwarding: true, ExpiryTime: time.Date(2030, 1, 2, 15, 4, 0, 0, time.Local)}},
		{`expiry-time="20300102150405Z"`, Options{PortForwarding: true, ExpiryTime: time.Date(2030, 1, 2, 15, 4, 5, 0, time.UTC)}},
		{`environment="A=b",principals="alice",tunnel="0",agent-forwarding,no-agent-forwarding,pty,no-pty,user-rc,no-user-rc,x11-forwarding,no-touch-required,verify-required`,
			Options{PortForwarding: true}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseOptions(tt.in)
			if err != nil {
				t.Fatalf("parseOptions: %v", err)
			}
			if !got.ExpiryTime.Equal(tt.want.ExpiryTime) {
				t.Errorf("ExpiryTime = %v, want %v", got.ExpiryTime, tt.want.ExpiryTime)
			}
			got.ExpiryTime, tt.want.ExpiryTime = time.Time{}, time.Time{}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parseOptions = %#v, want %#v", got, tt.want)
			}
		})
	}
}

func TestParseOptionsErrors(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"permitopne=\"db:1\"", `unknown option "permitopne"; see sshd(8) AUTHORIZED_KEYS FILE FORMAT`},
		{"cert-authority", "cert-authority is not supported"},
		{"no-pty,", "trailing ','"},
		{",no-pty", "empty option"},
		{"no-pty=\"x\"", "takes no value"},
		{"command", "needs a value"},
		{"command=echo", "double quotes"},
		{`command="echo`, "missing closing quote"},
		{`command="a"b`, "want ','"},
		{`environment="novalue"`, "NAME=value"},
		{`expiry-time="2030"`, "YYYYMMDD"},
		{`expiry-time="2030013x"`, "YYYYMMDD"},
		{`expiry-time="20301301"`, "bad date"},
		{`from=""`, "empty pattern"},
		{`from="a,,b"`, "empty pattern"},
		{`from="!"`, "empty pattern"},
		{`from="10.0.0.0/33"`, "bad network"},
		{`from="10.0.0.1/8"`, "host bits"},
		{`permitopen="db"`, "want host:port"},
		{`permitopen="8080"`, "want host:port"},
		{`permitopen=":80"`, "want host:port"},
		{`permitopen="db:0"`, "bad port"},
		{`permitopen="db:65536"`, "bad port"},
		{`permitopen="db:http"`, "bad port"},
		{`permitopen="::1:80"`, "want host:port"},
		{`permitopen="d b:80"`, "bad character"},
		{`permitlisten="[::1]"`, "want [host:]port"},
		{`permitlisten="x"`, "bad port"},
		{`principals=""`, "empty value"},
		{`tunnel=""`, "empty value"},
		{`pinhole-limits=""`, "empty; want KEY=N"},
		{`pinhole-limits`, "needs a value"},
		{`pinhole-limits="conns=5"`, `unknown limit "conns"; pinhole-limits knows names, ports, streams, stream-rate`},
		{`pinhole-limits="streams"`, "limit streams needs a value, e.g. streams=100 or streams=none"},
		{`pinhole-limits="streams="`, "needs a value"},
		{`pinhole-limits="streams=0"`, "limit streams=0: want a number from 1 to 1073741824, or none"},
		{`pinhole-limits="streams=-1"`, "want a number from 1"},
		{`pinhole-limits="streams=1e3"`, "want a number from 1"},
		{`pinhole-limits="streams=99999999999"`, "want a number from 1"},
		{`pinhole-limits="streams=1,streams=2"`, "limit streams is given twice"},
		{`pinhole-limits="ports=1",pinhole-limits="ports=2"`, "limit ports is given twice"},
		{`pinhole-limits="ports=1,"`, "empty entry"},
		{`pinhole-limits=",ports=1"`, "empty entry"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			o, err := parseOptions(tt.in)
			if err == nil {
				t.Fatalf("parseOptions = %+v, want error containing %q", o, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestSplitOptions(t *testing.T) {
	tests := []struct {
		in, opts, rest string
		err            bool
	}{
		{`no-pty ssh-ed25519 AAAA c`, "no-pty", "ssh-ed25519 AAAA c", false},
		{"no-pty\t \tssh-ed25519 AAAA", "no-pty", "ssh-ed25519 AAAA", false},
		{`command="a b \" c" ssh-ed25519 AAAA`, `command="a b \" c"`, "ssh-ed25519 AAAA", false},
		{`no-pty`, "no-pty", "", false},
		{`command="a b ssh-ed25519 AAAA`, "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			opts, rest, err := splitOptions(tt.in)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if opts != tt.opts || rest != tt.rest {
				t.Errorf("splitOptions = %q, %q; want %q, %q", opts, rest, tt.opts, tt.rest)
			}
		})
	}
}

func TestAllowFrom(t *testing.T) {
	tests := []struct {
		from []string
		addr string
		want bool
	}{
		{nil, "192.0.2.1", true},
		{[]string{"192.0.2.1"}, "192.0.2.1", true},
		{[]string{"192.0.2.1"}, "192.0.2.10", false},
		{[]string{"192.0.2.*"}, "192.0.2.10", true},
		{[]string{"192.0.2.?"}, "192.0.2.1", true},
		{[]string{"192.0.2.?"}, "192.0.2.10", false},
		{[]string{"192.0.2.0/24"}, "192.0.2.200", true},
		{[]string{"192.0.2.0/24"}, "192.0.3.1", false},
		{[]string{"192.0.2.0/24"}, "::ffff:192.0.2.7", true},
		{[]string{"192.0.2.0/24", "!192.0.2.7"}, "192.0.2.7", false},
		{[]string{"!192.0.2.7", "192.0.2.0/24"}, "192.0.2.8", true},
		{[]string{"!192.0.2.7"}, "192.0.2.8", false}, // only a negation: nothing positive matched
		{[]string{"*", "!10.*"}, "10.1.2.3", false},
		{[]string{"2001:db8::/32"}, "2001:db8::1", true},
		{[]string{"2001:DB8::*"}, "2001:db8::1", true},
		{[]string{"fe80::1"}, "fe80::1%eth0", true},
		{[]string{"*.example.com"}, "192.0.2.1", false}, // no DNS
		{[]string{"10.0.0.1/8"}, "10.0.0.1", false},     // bad network refuses
		{[]string{"*"}, "", false},                      // invalid address
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.from, ",")+" "+tt.addr, func(t *testing.T) {
			var addr netip.Addr
			if tt.addr != "" {
				addr = netip.MustParseAddr(tt.addr)
			}
			o := Options{From: tt.from, PortForwarding: true}
			if got := o.AllowFrom(addr); got != tt.want {
				t.Errorf("AllowFrom(%s) = %v, want %v", tt.addr, got, tt.want)
			}
		})
	}
}

func TestAllowOpen(t *testing.T) {
	tests := []struct {
		opts string
		host string
		port int
		want bool
	}{
		{"no-pty", "anything", 1, true},
		{"restrict", "db", 5432, false},
		{"no-port-forwarding", "db", 5432, false},
		{`restrict,port-forwarding`, "db", 5432, true},
		{`permitopen="db:5432"`, "db", 5432, true},
		{`permitopen="db:5432"`, "DB", 5432, true},
		{`permitopen="db:5432"`, "db", 5433, false},
		{`permitopen="db:5432"`, "db2", 5432, false},
		{`permitopen="db:5432"`, "10.0.0.5", 5432, false},
		{`permitopen="db:*"`, "db", 1, true},
		{`permitopen="*:80"`, "db", 80, false}, // literal, no wildcards
		{`permitopen="a:1",permitopen="b:2"`, "b", 2, true},
		{`permitopen="[::1]:80"`, "::1", 80, true},
		{`permitopen="none"`, "db", 5432, false},
		{`permitopen="db:5432",no-port-forwarding`, "db", 5432, false},
		{`restrict,permitopen="db:5432"`, "db", 5432, false},
	}
	for _, tt := range tests {
		t.Run(tt.opts+" "+tt.host, func(t *testing.T) {
			o, err := parseOptions(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := o.AllowOpen(tt.host, tt.port); got != tt.want {
				t.Errorf("AllowOpen(%q, %d) = %v, want %v", tt.host, tt.port, got, tt.want)
			}
		})
	}
}

func TestAllowListen(t *testing.T) {
	tests := []struct {
		opts string
		host string
		port int
		want bool
	}{
		{"no-pty", "", 80, true},
		{"restrict", "localhost", 8080, false},
		{`permitlisten="8080"`, "localhost", 8080, true},
		{`permitlisten="8080"`, "LOCALHOST", 8080, true},
		{`permitlisten="8080"`, "127.0.0.1", 8080, true},
		{`permitlisten="8080"`, "::1", 8080, true},
		{`permitlisten="8080"`, "", 8080, false},
		{`permitlisten="8080"`, "0.0.0.0", 8080, false},
		{`permitlisten="8080"`, "*", 8080, false},
		{`permitlisten="8080"`, "localhost", 8081, false},
		{`permitlisten="*"`, "localhost", 1234, true},
		{`permitlisten="*"`, "", 1234, false},
		{`permitlisten="*:8080"`, "", 8080, true},
		{`permitlisten="*:8080"`, "0.0.0.0", 8080, true},
		{`permitlisten="*:*"`, "anything", 0, true},
		{`permitlisten="localhost:8080"`, "localhost", 8080, true},
		{`permitlisten="localhost:8080"`, "127.0.0.1", 8080, false},
		{`permitlisten="10.0.0.*:8080"`, "10.0.0.9", 8080, true},
		{`permitlisten="10.0.0.*:8080"`, "10.0.1.9", 8080, false},
		{`permitlisten="[::1]:8080"`, "::1", 8080, true},
		{`permitlisten="0.0.0.0:*"`, "0.0.0.0", 0, true},
		{`permitlisten="none"`, "localhost", 8080, false},
		{`permitlisten="8080",no-port-forwarding`, "localhost", 8080, false},
		{`restrict,port-forwarding,permitlisten="8080"`, "localhost", 8080, true},
	}
	for _, tt := range tests {
		t.Run(tt.opts+" "+tt.host, func(t *testing.T) {
			o, err := parseOptions(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := o.AllowListen(tt.host, tt.port); got != tt.want {
				t.Errorf("AllowListen(%q, %d) = %v, want %v", tt.host, tt.port, got, tt.want)
			}
		})
	}
}

func TestAllowDomain(t *testing.T) {
	for _, tt := range []struct {
		opts string
		host string
		want bool
	}{
		{"no-pty", "shop.example.org", false},
		{`permitlisten="*:80"`, "shop.example.org", false},
		{`permitlisten="*"`, "shop.example.org", false},
		{`permitlisten="shop.example.org:80"`, "shop.example.org", true},
		{`permitlisten="shop.example.org:80"`, "SHOP.example.org", true},
		{`permitlisten="shop.example.org:8080"`, "shop.example.org", false},
		{`permitlisten="shop.example.org:*"`, "shop.example.org", true},
		{`permitlisten="*.example.org:80"`, "shop.example.org", true},
		{`permitlisten="*.example.org:80"`, "shop.example.net", false},
		{`permitlisten="shop.example.org:80",no-port-forwarding`, "shop.example.org", false},
	} {
		t.Run(tt.opts+" "+tt.host, func(t *testing.T) {
			o, err := parseOptions(tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			if got := o.AllowDomain(tt.host, 80); got != tt.want {
				t.Errorf("AllowDomain(%q, 80) = %v, want %v", tt.host, got, tt.want)
			}
		})
	}
}

func TestExpired(t *testing.T) {
	o, err := parseOptions(`expiry-time="20300102Z"`)
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Date(2030, 1, 2, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		opts Options
		now  time.Time
		want bool
	}{
		{o, exp.Add(-time.Second), false},
		{o, exp, false},
		{o, exp.Add(time.Second), true},
		{Options{}, exp.Add(100 * 365 * 24 * time.Hour), false},
	}
	for _, tt := range tests {
		t.Run(tt.now.String(), func(t *testing.T) {
			if got := tt.opts.Expired(tt.now); got != tt.want {
				t.Errorf("Expired(%v) = %v, want %v", tt.now, got, tt.want)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	from := netip.MustParseAddr("192.0.2.7")
	tests := []struct {
		options string
		addr    netip.Addr
		want    error
	}{
		{``, from, nil},
		{`from="192.0.2.0/24"`, from, nil},
		{`from="192.0.2.0/24"`, netip.MustParseAddr("::ffff:192.0.2.7"), nil},
		{`from="10.0.0.1"`, from, ErrNotFrom},
		{`expiry-time="20291231"`, from, ErrExpired},
		{`expiry-time="20300102"`, from, nil},
		{`from="10.0.0.1",expiry-time="20291231"`, from, ErrNotFrom},
	}
	for _, tt := range tests {
		t.Run(tt.options, func(t *testing.T) {
			o, err := parseOptions(tt.options)
			if err != nil {
				t.Fatal(err)
			}
			err = o.Check(tt.addr, now)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Check(%v) = %v, want %v", tt.addr, err, tt.want)
			}
		})
	}
}

func TestWildcardMatch(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"", "", true},
		{"", "a", false},
		{"*", "", true},
		{"*", "abc", true},
		{"a*c", "abbbc", true},
		{"a*c", "abbbd", false},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"*.*.*", "1.2.3", true},
		{"**a", "bba", true},
		{"a*b*c", "aXbYbZc", true},
		{"abc", "ab", false},
	}
	for _, tt := range tests {
		t.Run(tt.pattern+" "+tt.s, func(t *testing.T) {
			if got := wildcardMatch(tt.pattern, tt.s); got != tt.want {
				t.Errorf("wildcardMatch(%q, %q) = %v, want %v", tt.pattern, tt.s, got, tt.want)
			}
		})
	}
}

func FuzzParseOptions(f *testing.F) {
	for _, s := range []string{
		`restrict,port-forwarding,permitopen="db:5432",permitlisten="8080"`,
		`from="10.0.0.0/8,!10.0.0.1",expiry-time="20300102Z"`,
		`command="echo \"x\""`, `permitopen="[::1]:*"`, `no-pty,`,
		`restrict,port-forwarding,pinhole-limits="names=20,ports=50,streams=5000,stream-rate=500"`, `pinhole-limits="streams=none"`,
		`pinhole-options="auth=u:p,allow=10.0.0.0/8,::1,proxy-protocol=v2"`,
	} {
		f.Add(s, "localhost", 8080, "192.0.2.1")
	}
	f.Fuzz(func(t *testing.T, s, host string, port int, ip string) {
		o, err := parseOptions(s)
		if err != nil {
			return
		}
		addr, _ := netip.ParseAddr(ip)
		o.AllowFrom(addr)
		if o.AllowOpen(host, port) && !o.PortForwarding {
			t.Fatalf("AllowOpen true without port forwarding: %+v", o)
		}
		if o.AllowListen(host, port) && !o.PortForwarding {
			t.Fatalf("AllowListen true without port forwarding: %+v", o)
		}
	})
}
