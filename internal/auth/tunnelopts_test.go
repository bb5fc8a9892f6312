package auth

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/pinhole-dev/pinhole/internal/proxyproto"
)

func TestParseTunnelOptions(t *testing.T) {
	pfx := netip.MustParsePrefix
	for _, tc := range []struct {
		in   string
		want TunnelOptions
	}{
		{"", TunnelOptions{}},
		{"auth=u:p:with:colons", TunnelOptions{User: "u", Password: "p:with:colons"}},
		{"allow=203.0.113.0/24 allow=2001:db8::/32", TunnelOptions{Allow: []netip.Prefix{pfx("203.0.113.0/24"), pfx("2001:db8::/32")}}},
		{"allow=10.0.0.0/8,192.0.2.7,::1", TunnelOptions{Allow: []netip.Prefix{pfx("10.0.0.0/8"), pfx("192.0.2.7/32"), pfx("::1/128")}}},
		{"allow=::ffff:10.0.0.0/104", TunnelOptions{Allow: []netip.Prefix{pfx("10.0.0.0/8")}}},
		{"host-header=localhost:3000  proxy-protocol=V2", TunnelOptions{HostHeader: "localhost:3000", ProxyProtocol: proxyproto.V2}},
		{"auth=a:b,allow=127.0.0.1/32,host-header=x.example,proxy-protocol=v1", TunnelOptions{User: "a", Password: "b",
			Allow: []netip.Prefix{pfx("127.0.0.1/32")}, HostHeader: "x.example", ProxyProtocol: proxyproto.V1}},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseTunnelOptions(tc.in)
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %#v, %v\nwant %#v", got, err, tc.want)
			}
		})
	}
}

func TestParseTunnelOptionsErrors(t *testing.T) {
	for in, want := range map[string]string{
		"color=blue":                          `unknown tunnel option "color"`,
		"auth=secret":                         "want auth=USER:PASSWORD",
		"auth=:p":                             "want auth=USER:PASSWORD",
		"auth=a:b auth=c:d":                   "auth= given twice",
		"auth=u:pa,ss":                        "word 2 is not NAME=VALUE",
		"allow=10.0.0.1/8":                    "did you mean 10.0.0.0/8?",
		"allow=nowhere":                       "want an address or a network",
		"allow=10.0.0.0/33":                   "want address/length",
		"proxy-protocol=v3":                   "want v1 or v2",
		"host-header=a\x00b":                  "not allowed in a host name",
		"host-header=a host-header=b":         "host-header= given twice",
		"proxy-protocol=v1 proxy-protocol=v1": "proxy-protocol= given twice",
		"plain":                               "word 1 is not NAME=VALUE",
	} {
		_, err := ParseTunnelOptions(in)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.HasPrefix(err.Error(), "auth: ") {
			t.Errorf("%q: %v, want %q", in, err, want)
		}
		if err != nil && (strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "zq9")) {
			t.Errorf("%q: the error shows the password: %v", in, err)
		}
	}
}

func TestTunnelOptionsWith(t *testing.T) {
	keys, _ := ParseTunnelOptions("auth=admin:pw allow=10.0.0.0/8")
	got, err := keys.With(TunnelOptions{HostHeader: "h", ProxyProtocol: proxyproto.V1})
	if err != nil || got.User != "admin" || got.HostHeader != "h" || got.ProxyProtocol != proxyproto.V1 || len(got.Allow) != 1 {
		t.Errorf("adding: %#v %v", got, err)
	}
	if _, err := keys.With(TunnelOptions{User: "me", Password: "x", Allow: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}}); err == nil ||
		!strings.Contains(err.Error(), "auth=, allow= set for this key in authorized_keys") {
		t.Errorf("overriding: %v", err)
	}
	if s := keys.String(); s != "auth=admin:*** allow=10.0.0.0/8" {
		t.Errorf("String = %q", s)
	}
	if !keys.Allows(netip.MustParseAddr("::ffff:10.1.2.3")) || keys.Allows(netip.MustParseAddr("127.0.0.1")) || !(TunnelOptions{}).Allows(netip.Addr{}) {
		t.Error("Allows")
	}
}

func TestPinholeOptions(t *testing.T) {
	o, err := parseOptions(`restrict,port-forwarding,pinhole-options="auth=u:p,allow=127.0.0.0/8,::1",pinhole-options="proxy-protocol=v2"`)
	if err != nil || o.Tunnel.User != "u" || len(o.Tunnel.Allow) != 2 || o.Tunnel.ProxyProtocol != proxyproto.V2 || !o.PortForwarding {
		t.Fatalf("%#v %v", o, err)
	}
	_, err = parseOptions(`pinhole-options="auth=u:secret,colour=x"`)
	if err == nil || strings.Contains(err.Error(), "secret") || !strings.Contains(err.Error(), `option pinhole-options: unknown tunnel option "colour"`) {
		t.Errorf("bad pinhole-options: %v", err)
	}
}

// FuzzParseTunnelOptions: any input parses or fails with an "auth: "
// error, and what parses prints (String, which the password does not
// change) as words that parse again to the same options, the password
// aside.
// (That errors do not echo passwords is TestParseTunnelOptionsErrors'.)
func FuzzParseTunnelOptions(f *testing.F) {
	for _, s := range []string{"auth=u:p allow=10.0.0.0/8,::1", "host-header=x:1,proxy-protocol=v2", "allow=1.2.3.4 5.6.7.0/24", "auth=a:b,c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		o, err := ParseTunnelOptions(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "auth: ") {
				t.Fatalf("error without prefix: %v", err)
			}
			return
		}
		if o.User != "" && (strings.ContainsAny(o.User, ":, \t") || o.Password == "" || strings.ContainsAny(o.Password, ", \t")) {
			t.Fatalf("credentials %q %q", o.User, o.Password)
		}
		other := o
		other.Password += "x"
		if o.String() != other.String() {
			t.Fatalf("String depends on the password: %q", o.String())
		}
		again, err := ParseTunnelOptions(strings.Replace(o.String(), ":***", ":x", 1))
		if err != nil {
			t.Fatalf("%q: %v", o.String(), err)
		}
		again.Password, o.Password = "", ""
		if !reflect.DeepEqual(again, o) {
			t.Fatalf("%q: %#v, then %#v", s, o, again)
		}
	})
}
