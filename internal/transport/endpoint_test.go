package transport

import (
	"strings"
	"testing"
)

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Endpoint
		addr string
	}{
		{"ssh://host", Endpoint{Scheme: SSH, Host: "host", Port: 22}, "host:22"},
		{"ssh://me@host:2222", Endpoint{Scheme: SSH, User: "me", Host: "host", Port: 2222}, "host:2222"},
		{"SSH://host/", Endpoint{Scheme: SSH, Host: "host", Port: 22}, "host:22"},
		{"tls://host", Endpoint{Scheme: TLS, Host: "host", Port: 443}, "host:443"},
		{"tls://[::1]:8443", Endpoint{Scheme: TLS, Host: "::1", Port: 8443}, "[::1]:8443"},
		{"wss://me@host/ssh", Endpoint{Scheme: WSS, User: "me", Host: "host", Port: 443, Path: "/ssh"}, "host:443"},
		{"wss://host", Endpoint{Scheme: WSS, Host: "host", Port: 443, Path: "/ssh"}, "host:443"},
		{"ws://127.0.0.1:8080/tunnel/ssh", Endpoint{Scheme: WS, Host: "127.0.0.1", Port: 8080, Path: "/tunnel/ssh"}, "127.0.0.1:8080"},
		{"ws://host/a%20b", Endpoint{Scheme: WS, Host: "host", Port: 80, Path: "/a%20b"}, "host:80"},
	} {
		got, err := ParseURL(tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if got != tc.want || got.Addr() != tc.addr {
			t.Errorf("%s: %+v (%s), want %+v (%s)", tc.in, got, got.Addr(), tc.want, tc.addr)
		}
		again, err := ParseURL(got.String())
		if err != nil || again != got {
			t.Errorf("%s: String %q reads back as %+v, %v", tc.in, got.String(), again, err)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"host", "no scheme"},
		{"http://host", `unknown scheme "http"`},
		{"ssh:host", "no //"},
		{"ssh://", "no host"},
		{"ssh://me:pw@host", "password"},
		{"ssh://@host", "empty user"},
		{"ssh://host:0", "port"},
		{"ssh://host:99999", "port"},
		{"ssh://host:", "port"},
		{"tls://host/path", "only ws:// and wss:// take a path"},
		{"wss://host/ssh?x=1", "query"},
		{"wss://host/ssh#f", "fragment"},
		{"ssh://-oProxyCommand=x", "cannot start with -"},
		{"ssh://[::1", ""},
	} {
		_, err := ParseURL(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error saying %q", tc.in, err, tc.want)
		}
	}
}

func FuzzParseURL(f *testing.F) {
	for _, s := range []string{"ssh://me@host:22", "wss://[::1]:443/ssh", "ws://h/a%2fb", "tls://h", "wss://a@b@c/d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := ParseURL(s)
		if err != nil {
			return
		}
		if e.Port == 0 || e.Host == "" {
			t.Fatalf("%q: %+v", s, e)
		}
		again, err := ParseURL(e.String())
		if err != nil || again != e {
			t.Fatalf("%q: String %q reads back as %+v, %v; want %+v", s, e.String(), again, err, e)
		}
	})
}
