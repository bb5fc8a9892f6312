package transport

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestProxyFromEnv(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		scheme  Scheme
		host    string // "" means target.example.com
		want    string // the proxy URL; "" for none
		wantErr string
	}{
		{name: "nothing set", scheme: SSH},
		{name: "nothing set wss", scheme: WSS},

		// ssh reads all_proxy only.
		{name: "ssh all_proxy", env: map[string]string{"all_proxy": "socks5h://p:1"}, scheme: SSH, want: "socks5h://p:1"},
		{name: "ssh ALL_PROXY", env: map[string]string{"ALL_PROXY": "p:2"}, scheme: SSH, want: "http://p:2"},
		{name: "ssh all_proxy before ALL_PROXY", env: map[string]string{"all_proxy": "p:1", "ALL_PROXY": "p:2"}, scheme: SSH, want: "http://p:1"},
		{name: "ssh ignores https_proxy", env: map[string]string{"https_proxy": "p:1", "http_proxy": "p:2", "HTTPS_PROXY": "p:3"}, scheme: SSH},

		// tls reads https's variables.
		{name: "tls https_proxy", env: map[string]string{"https_proxy": "p:1", "all_proxy": "p:9"}, scheme: TLS, want: "http://p:1"},
		{name: "tls HTTPS_PROXY", env: map[string]string{"HTTPS_PROXY": "p:2", "all_proxy": "p:9"}, scheme: TLS, want: "http://p:2"},
		{name: "tls https_proxy before HTTPS_PROXY", env: map[string]string{"https_proxy": "p:1", "HTTPS_PROXY": "p:2"}, scheme: TLS, want: "http://p:1"},
		{name: "tls falls back to all_proxy", env: map[string]string{"http_proxy": "p:1", "all_proxy": "p:9"}, scheme: TLS, want: "http://p:9"},
		{name: "tls ignores wss_proxy", env: map[string]string{"wss_proxy": "p:1"}, scheme: TLS},

		// wss: its own, then https's, then all.
		{name: "wss https_proxy", env: map[string]string{"https_proxy": "p:1", "all_proxy": "p:9"}, scheme: WSS, want: "http://p:1"},
		{name: "wss HTTPS_PROXY", env: map[string]string{"HTTPS_PROXY": "p:2"}, scheme: WSS, want: "http://p:2"},
		{name: "wss wss_proxy first", env: map[string]string{"wss_proxy": "p:3", "WSS_PROXY": "p:4", "https_proxy": "p:1"}, scheme: WSS, want: "http://p:3"},
		{name: "wss WSS_PROXY before https_proxy", env: map[string]string{"WSS_PROXY": "p:4", "https_proxy": "p:1"}, scheme: WSS, want: "http://p:4"},
		{name: "wss ignores http_proxy", env: map[string]string{"http_proxy": "p:1"}, scheme: WSS},
		{name: "wss ALL_PROXY", env: map[string]string{"ALL_PROXY": "socks5://p"}, scheme: WSS, want: "socks5://p:1080"},

		// ws: its own, then http_proxy in lower case only, then all.
		{name: "ws http_proxy", env: map[string]string{"http_proxy": "p:1", "all_proxy": "p:9"}, scheme: WS, want: "http://p:1"},
		{name: "ws ignores HTTP_PROXY", env: map[string]string{"HTTP_PROXY": "p:1"}, scheme: WS},
		{name: "ws HTTP_PROXY ignored for all_proxy", env: map[string]string{"HTTP_PROXY": "p:1", "all_proxy": "p:9"}, scheme: WS, want: "http://p:9"},
		{name: "ws ws_proxy first", env: map[string]string{"ws_proxy": "p:3", "http_proxy": "p:1"}, scheme: WS, want: "http://p:3"},
		{name: "ws WS_PROXY", env: map[string]string{"WS_PROXY": "p:4", "http_proxy": "p:1"}, scheme: WS, want: "http://p:4"},
		{name: "ws ignores https_proxy", env: map[string]string{"https_proxy": "p:1"}, scheme: WS},

		// NO_PROXY comes first.
		{name: "no_proxy match", env: map[string]string{"all_proxy": "p:1", "no_proxy": "example.com"}, scheme: SSH},
		{name: "NO_PROXY match", env: map[string]string{"all_proxy": "p:1", "NO_PROXY": ".example.com"}, scheme: SSH},
		{name: "no_proxy star", env: map[string]string{"https_proxy": "p:1", "no_proxy": "*"}, scheme: WSS},
		{name: "no_proxy no match", env: map[string]string{"all_proxy": "p:1", "no_proxy": "other.com"}, scheme: SSH, want: "http://p:1"},
		{
			name: "no_proxy hides NO_PROXY", env: map[string]string{"all_proxy": "p:1", "no_proxy": "other.com", "NO_PROXY": "example.com"},
			scheme: SSH, want: "http://p:1",
		},
		{name: "no_proxy ip", env: map[string]string{"all_proxy": "p:1", "no_proxy": "10.0.0.0/8"}, scheme: SSH, host: "10.1.2.3"},
		{name: "no_proxy ipv6", env: map[string]string{"all_proxy": "p:1", "no_proxy": "::1"}, scheme: SSH, host: "::1"},
		{name: "loopback not special", env: map[string]string{"all_proxy": "p:1"}, scheme: SSH, host: "127.0.0.1", want: "http://p:1"},
		{name: "localhost not special", env: map[string]string{"all_proxy": "p:1"}, scheme: SSH, host: "localhost", want: "http://p:1"},
		{name: "no_proxy with the port matches nothing", env: map[string]string{"all_proxy": "p:1", "no_proxy": "target.example.com:22"}, scheme: SSH, want: "http://p:1"},
		{name: "no_proxy before a bad value", env: map[string]string{"all_proxy": "ftp://p", "no_proxy": "*"}, scheme: SSH},

		{name: "bad value", env: map[string]string{"https_proxy": "ftp://p"}, scheme: TLS, wantErr: "transport: environment variable https_proxy: transport: proxy \"ftp://p\": unknown scheme"},
		{name: "bad value hides password", env: map[string]string{"all_proxy": "http://u:hunter2@p:0"}, scheme: SSH, wantErr: `"http://u:xxxxx@p:0"`},
		{name: "unknown scheme", scheme: "ftp", wantErr: `transport: unknown scheme "ftp"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host := tt.host
			if host == "" {
				host = "target.example.com"
			}
			getenv := func(k string) string { return tt.env[k] }
			u, err := ProxyFromEnv(getenv, tt.scheme, host, 22)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one with %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "hunter2") {
					t.Fatalf("error shows the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if u != nil {
				got = u.String()
			}
			if got != tt.want {
				t.Fatalf("ProxyFromEnv = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestNoProxyMatch(t *testing.T) {
	tests := []struct {
		list, host string
		want       bool
	}{
		{"", "example.com", false},
		{"*", "example.com", true},
		{"*", "10.0.0.1", true},
		{"*", "", false},
		{" *", "example.com", false}, // only the value "*" alone
		{"a.com,*", "example.com", false},

		{"example.com", "example.com", true},
		{"example.com", "a.example.com", true},
		{"example.com", "a.b.example.com", true},
		{".example.com", "example.com", true},
		{".example.com", "a.example.com", true},
		{"example.com", "badexample.com", false},
		{".example.com", "badexample.com", false},
		{"example.com", "example.com.org", false},
		{"a.example.com", "example.com", false},
		{"EXAMPLE.com", "example.COM", true},
		{"example.com.", "example.com", true},
		{"example.com", "example.com.", true},
		{"example.com", "a.example.com.", true},
		{"localhost", "localhost", true},
		{"example.com:22", "example.com", false}, // compared with the port, as curl does

		{"a.com,b.com", "b.com", true},
		{"a.com, b.com ,c.com", "c.com", true},
		{"\ta.com\t,\tb.com\t", "b.com", true},
		{"a.com,,,b.com", "b.com", true},
		{",b.com", "b.com", true},
		{"a.com b.com", "b.com", false}, // curl stops at a blank not followed by a comma
		{"a.com b.com", "a.com", true},
		{"a.com;b.com", "b.com", false},

		{"10.0.0.1", "10.0.0.1", true},
		{"10.0.0.1", "10.0.0.2", false},
		{"10.0.0.0/8", "10.1.2.3", true},
		{"10.0.0.0/8", "11.0.0.1", false},
		{"192.168.0.0/16", "192.168.255.1", true},
		{"10.0.0.1/32", "10.0.0.1", true},
		{"10.0.0.0/0", "10.0.0.1", false}, // /0 means the whole address, as in curl
		{"10.0.0.1/0", "10.0.0.1", true},
		{"10.0.0.0/33", "10.0.0.1", false},
		{"10.0.0.0/8x", "10.0.0.1", true}, // the length read as atoi does
		{"10.0.0.0/-8", "10.0.0.1", false},
		{"0.0.1", "10.0.0.1", false}, // an address is not a name
		{"0.1", "10.0.0.1", false},
		{"10.0.0.1", "host.10.0.0.1", true}, // a name, so a domain match, as in curl
		{"example.com,10.0.0.0/8", "10.0.0.1", true},
		{"::1", "::1", true},
		{"0::1", "::1", true},
		{"::1", "[::1]", true},
		{"::1/128", "::1", true},
		{"::2", "::1", false},
		{"fe80::/10", "fe80::1", true},
		{"fe80::/10", "fec0::1", false},
		{"2001:db8::/32", "2001:db8:ffff::1", true},
		{"2001:db8::/33", "2001:db8:7fff::1", true},
		{"2001:db8::/33", "2001:db8:8000::1", false},
		{"::/129", "::1", false},
		{"10.0.0.0/8", "::ffff:10.0.0.1", false},
		{"::ffff:10.0.0.0/104", "10.0.0.1", false},
		{"fe80::1", "fe80::1%eth0", false},

		{"localhost", "127.0.0.1", false}, // loopback is not special
		{"127.0.0.1", "localhost", false},
		{"127.0.0.0/8", "127.0.0.1", true},
	}
	for _, tt := range tests {
		t.Run(tt.list+" "+tt.host, func(t *testing.T) {
			if got := noProxyMatch(tt.list, tt.host); got != tt.want {
				t.Fatalf("noProxyMatch(%q, %q) = %v, want %v", tt.list, tt.host, got, tt.want)
			}
		})
	}
}

// TestNoProxyLikeCurl asks the curl on this machine, where there is one,
// whether it would use the proxy for each case, and checks that
// noProxyMatch agrees. The cases leave out where curl's versions differ
// (blanks between entries, IPv6), so that any curl from 7.86 on agrees.
func TestNoProxyLikeCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not found: install curl to compare the NO_PROXY rules with it")
	}
	proxy := listen(t) // curl's connections to the proxy are accepted and closed
	go func() {
		for {
			c, err := proxy.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	tests := []struct{ list, host string }{
		{"example.com", "example.com"},
		{"example.com", "a.example.com"},
		{".example.com", "example.com"},
		{"example.com", "badexample.com"},
		{"EXAMPLE.com.", "example.COM"},
		{"a.com, example.com", "example.com"},
		{"example.com:81", "example.com"},
		{"*", "example.com"},
		{" *", "example.com"},
		{"a.com,*", "example.com"},
		{"127.0.0.0/8", "127.1.2.3"},
		{"127.0.0.0/24", "127.1.2.3"},
		{"127.0.0.0/0", "127.0.0.1"},
		{"127.0.0.1/0", "127.0.0.1"},
		{"127.0.0.0/8x", "127.0.0.1"},
		{"0.0.1", "127.0.0.1"},
		{"127.0.0.1", "host.127.0.0.1"},
		{"localhost", "127.0.0.1"},
		{"127.0.0.1", "localhost"},
	}
	for _, tt := range tests {
		t.Run(tt.list+" "+tt.host, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			// -q: no .curlrc. --resolve sends a direct connection to a
			// name to 127.0.0.1, where port 81 refuses it at once.
			cmd := exec.CommandContext(ctx, curl, "-q", "-sv", "--connect-timeout", "2", "-m", "5",
				"--resolve", tt.host+":81:127.0.0.1", "http://"+tt.host+":81/")
			cmd.Env = []string{"http_proxy=http://" + proxy.Addr().String(), "no_proxy=" + tt.list}
			out, _ := cmd.CombinedOutput()
			curlDirect := !strings.Contains(string(out), "Uses proxy env variable http_proxy")
			if got := noProxyMatch(tt.list, tt.host); got != curlDirect {
				t.Fatalf("noProxyMatch(%q, %q) = %v, but curl goes direct: %v\n%s", tt.list, tt.host, got, curlDirect, out)
			}
		})
	}
}

// FuzzNoProxy checks the NO_PROXY matcher on arbitrary lists and hosts:
// it never panics, "*" matches any host, a list with one more entry
// matches at least what it did, and a plain host matches itself.
func FuzzNoProxy(f *testing.F) {
	for _, s := range [][2]string{
		{"example.com", "a.example.com"}, {".example.com,10.0.0.0/8", "10.1.1.1"}, {"*", "x"},
		{"::1/128, fe80::/10", "fe80::1"}, {"a b,c", "c"}, {"10.0.0.0/99999999999999999999", "10.0.0.1"},
		{"..", "a.."}, {".", "."}, {"[::1]", "[::1]"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, list, host string) {
		got := noProxyMatch(list, host)
		if host == "" && got {
			t.Fatalf("noProxyMatch(%q, \"\") = true", list)
		}
		if host != "" && !noProxyMatch("*", host) {
			t.Fatalf("noProxyMatch(\"*\", %q) = false", host)
		}
		if got && list != "*" && !noProxyMatch(list+",other.invalid", host) {
			t.Fatalf("noProxyMatch(%q, %q) = true but not with one more entry", list, host)
		}
		if host != "" && !strings.ContainsAny(host, " \t,[]%") && !noProxyMatch(host, host) {
			t.Fatalf("noProxyMatch(%q, %q) = false", host, host)
		}
	})
}

func ExampleProxyFromEnv() {
	env := map[string]string{
		"https_proxy": "proxy.example.com:3128",
		"no_proxy":    "localhost, .corp.example.com, 10.0.0.0/8",
	}
	getenv := func(k string) string { return env[k] } // os.Getenv in a program
	for _, host := range []string{"ssh.example.com", "git.corp.example.com", "10.1.2.3", "127.0.0.1"} {
		u, err := ProxyFromEnv(getenv, WSS, host, 443)
		switch {
		case err != nil:
			fmt.Println(err)
		case u == nil:
			fmt.Println(host, "direct")
		default:
			fmt.Println(host, "via", u)
		}
	}
	// Output:
	// ssh.example.com via http://proxy.example.com:3128
	// git.corp.example.com direct
	// 10.1.2.3 direct
	// 127.0.0.1 via http://proxy.example.com:3128
}

// TestRedactProxy: a password never reaches an error, whatever it holds.
func TestRedactProxy(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"http://alice:secret@proxy:3128", "http://alice:xxxxx@proxy:3128"},
		{"http://alice:pa/ss@proxy:3128", "http://alice:xxxxx@proxy:3128"},
		{"http://alice:p@ss?#@proxy:3128/x", "http://alice:xxxxx@proxy:3128/x"},
		{"alice:secret@proxy", "alice:xxxxx@proxy"},
		{"http://alice@proxy:3128", "http://alice@proxy:3128"},
		{"http://proxy:3128", "http://proxy:3128"},
	} {
		if got := redactProxy(tc.in); got != tc.want {
			t.Errorf("redactProxy(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	for _, bad := range []string{"http://alice:pa/ss@proxy:3128", "http://alice:s3cr%zz@proxy:1", "http://alice:s3cret@[::1:3128"} {
		_, err := ParseProxy(bad)
		if err == nil {
			continue
		}
		for _, secret := range []string{"pa/ss", "s3cr", "s3cret"} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("ParseProxy(%q): %v: shows the password", bad, err)
			}
		}
	}
}
