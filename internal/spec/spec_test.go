package spec

import (
	"fmt"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		kind Kind
		in   string
		want Forward
		str  string // canonical String; "" means same as in
	}{
		{Local, "8080:db:5432", Forward{Kind: Local, BindPort: 8080, Host: "db", HostPort: 5432}, ""},
		{Local, "127.0.0.1:8080:db:5432/udp", Forward{Kind: Local, Proto: UDP, BindHost: "127.0.0.1", BindPort: 8080, Host: "db", HostPort: 5432}, ""},
		{Local, "8080:db:5432/tcp", Forward{Kind: Local, BindPort: 8080, Host: "db", HostPort: 5432}, "8080:db:5432"},
		{Local, "8080:db:5432/UDP", Forward{Kind: Local, Proto: UDP, BindPort: 8080, Host: "db", HostPort: 5432}, "8080:db:5432/udp"},
		{Local, "*:8080:[::1]:80", Forward{Kind: Local, BindHost: "*", BindPort: 8080, Host: "::1", HostPort: 80}, ""},
		{Local, ":8080:localhost:80", Forward{Kind: Local, BindHost: "*", BindPort: 8080, Host: "localhost", HostPort: 80}, "*:8080:localhost:80"},
		{Local, "[::1]:8080:[fe80::1]:80", Forward{Kind: Local, BindHost: "::1", BindPort: 8080, Host: "fe80::1", HostPort: 80}, ""},
		{Local, "[fe80::1%eth0]:8080:h:80", Forward{Kind: Local, BindHost: "fe80::1%eth0", BindPort: 8080, Host: "h", HostPort: 80}, ""},
		{Local, "[127.0.0.1]:8080:[10.0.0.1]:80", Forward{Kind: Local, BindHost: "127.0.0.1", BindPort: 8080, Host: "10.0.0.1", HostPort: 80}, "127.0.0.1:8080:10.0.0.1:80"},
		{Local, "0:db.internal_x-1.example.:65535", Forward{Kind: Local, BindPort: 0, Host: "db.internal_x-1.example.", HostPort: 65535}, ""},
		{Local, "localhost:1:h:1", Forward{Kind: Local, BindHost: "localhost", BindPort: 1, Host: "h", HostPort: 1}, ""},
		{Local, "08080:db:0080", Forward{Kind: Local, BindPort: 8080, Host: "db", HostPort: 80}, "8080:db:80"},
		{Remote, "0:localhost:3000", Forward{Kind: Remote, BindPort: 0, Host: "localhost", HostPort: 3000}, ""},
		{Remote, "80:localhost:3000", Forward{Kind: Remote, BindPort: 80, Host: "localhost", HostPort: 3000}, ""},
		{Remote, "*:5353:[2001:db8::53]:53/udp", Forward{Kind: Remote, Proto: UDP, BindHost: "*", BindPort: 5353, Host: "2001:db8::53", HostPort: 53}, ""},
		{Dynamic, "1080", Forward{Kind: Dynamic, BindPort: 1080}, ""},
		{Dynamic, "[::1]:1080", Forward{Kind: Dynamic, BindHost: "::1", BindPort: 1080}, ""},
		{Dynamic, ":1080", Forward{Kind: Dynamic, BindHost: "*", BindPort: 1080}, "*:1080"},
		{Dynamic, "localhost:0/tcp", Forward{Kind: Dynamic, BindHost: "localhost", BindPort: 0}, "localhost:0"},
	}
	for _, tt := range tests {
		t.Run(tt.kind.String()+" "+tt.in, func(t *testing.T) {
			got, err := Parse(tt.kind, tt.in)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got != tt.want {
				t.Fatalf("Parse = %+v, want %+v", got, tt.want)
			}
			wantStr := tt.str
			if wantStr == "" {
				wantStr = tt.in
			}
			if s := got.String(); s != wantStr {
				t.Errorf("String = %q, want %q", s, wantStr)
			}
			again, err := Parse(tt.kind, got.String())
			if err != nil || again != got {
				t.Errorf("round trip of %q = %+v, %v; want %+v", got.String(), again, err, got)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		kind Kind
		in   string
		want string // substring of the error
	}{
		{Local, "8080:db", `spec: -L "8080:db": want [bind:]port:host:hostport, e.g. 8080:localhost:80`},
		{Local, "", "empty"},
		{Local, "8080", "want [bind:]port:host:hostport"},
		{Local, "a:b:c:d:e", "too many"},
		{Local, "::1:8080:db:80", "brackets"},
		{Local, "8080:fe80::1:80", "brackets"},
		{Local, "8080::1:80", "brackets"},
		{Local, "8080:db:0", "hostport 0 is not allowed"},
		{Local, "8080:db:65536", "not a port number"},
		{Local, "8080:db:-1", "not a port number"},
		{Local, "8080:db:+80", "not a port number"},
		{Local, "8080:db:http", "not a port number"},
		{Local, "x:db:80", "not a port number"},
		{Local, "8080::80", "empty"},
		{Local, "8080:d b:80", "invalid character"},
		{Local, "8080:*:80", "invalid character"},
		{Local, "8080:-oProxy:80", "cannot start with '-'"},
		{Local, "8080:1.2.3.999:80", "not a valid IPv4"},
		{Local, "8080:[db]:80", "only IP addresses go in brackets"},
		{Local, "8080:[::1:80", "missing ']'"},
		{Local, "8080:[::1]x:80", "want ':' after ']'"},
		{Local, "8080:a]b:80", "misplaced bracket"},
		{Local, "[::1]:8080:db:[80]", "not written in brackets"},
		{Local, "8080:db:80/sctp", "unknown protocol suffix"},
		{Local, "8080:db:80/udp/udp", "only one"},
		{Local, "8080:d/b:80/udp", "only one"},
		{Local, "8080:/run/db.sock", "unix-socket forwarding is not supported"},
		{Local, "/tmp/s:db:80", "unix-socket forwarding is not supported"},
		{Remote, "8080", "remote dynamic forwarding"},
		{Remote, "8080:db", "remote dynamic forwarding"},
		{Dynamic, "1080/udp", "-D does not carry UDP"},
		{Dynamic, "a:b:1080", "too many"},
		{Dynamic, "::1:1080", "brackets"},
		{Dynamic, "[]:1080", "only IP addresses go in brackets"},
		{Dynamic, "[::1]", "not written in brackets"},
		{Dynamic, "99999", "not a port number"},
		{Kind(0), "8080:db:80", "invalid kind"},
		{Kind(4), "8080:db:80", "invalid kind"},
		{Local, "8080:" + strings.Repeat("a", 300) + ":80", "longer than"},
		{Local, strings.Repeat("1", 2000), "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.kind.String()+" "+tt.in, func(t *testing.T) {
			f, err := Parse(tt.kind, tt.in)
			if err == nil {
				t.Fatalf("Parse = %+v, want error containing %q", f, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "spec: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

func TestAddrs(t *testing.T) {
	tests := []struct {
		kind           Kind
		in             string
		bind, target   string
		kindStr, proto string
	}{
		{Local, "8080:db:5432", ":8080", "db:5432", "-L", "tcp"},
		{Local, "*:8080:[::1]:80/udp", "*:8080", "[::1]:80", "-L", "udp"},
		{Remote, "[::1]:0:localhost:3000", "[::1]:0", "localhost:3000", "-R", "tcp"},
		{Dynamic, "127.0.0.1:1080", "127.0.0.1:1080", ":0", "-D", "tcp"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			f, err := Parse(tt.kind, tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if got := f.BindAddr(); got != tt.bind {
				t.Errorf("BindAddr = %q, want %q", got, tt.bind)
			}
			if got := f.Target(); got != tt.target {
				t.Errorf("Target = %q, want %q", got, tt.target)
			}
			if got := f.Kind.String(); got != tt.kindStr {
				t.Errorf("Kind = %q, want %q", got, tt.kindStr)
			}
			if got := f.Proto.String(); got != tt.proto {
				t.Errorf("Proto = %q, want %q", got, tt.proto)
			}
		})
	}
}

func ExampleParse() {
	f, err := Parse(Local, "127.0.0.1:8080:[::1]:5432")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(f.Kind, f)
	fmt.Println(f.BindAddr(), "->", f.Target())

	_, err = Parse(Local, "8080:db")
	fmt.Println(err)
	// Output:
	// -L 127.0.0.1:8080:[::1]:5432
	// 127.0.0.1:8080 -> [::1]:5432
	// spec: -L "8080:db": want [bind:]port:host:hostport, e.g. 8080:localhost:80
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"8080:db:5432", "127.0.0.1:8080:db:5432/udp", "*:8080:[::1]:80", "[::1]:1080",
		":8080:h:1", "[fe80::1%eth0]:1:h:2/tcp", "0:localhost:3000", "1080", "/tmp/x:h:1",
	} {
		f.Add(uint8(Local), s)
		f.Add(uint8(Dynamic), s)
	}
	f.Fuzz(func(t *testing.T, k uint8, s string) {
		fw, err := Parse(Kind(k), s)
		if err != nil {
			return
		}
		again, err := Parse(fw.Kind, fw.String())
		if err != nil {
			t.Fatalf("Parse(%q) = %+v; re-parse of %q: %v", s, fw, fw.String(), err)
		}
		if again != fw {
			t.Fatalf("Parse(%q) = %+v; re-parse of %q = %+v", s, fw, fw.String(), again)
		}
	})
}

func TestListenAddr(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"8080:db:5432", "127.0.0.1:8080"},
		{"*:8080:db:5432", ":8080"},
		{":8080:db:5432", ":8080"},
		{"[::1]:8080:db:5432", "[::1]:8080"},
		{"localhost:0:db:5432", "localhost:0"},
	} {
		f, err := Parse(Local, tc.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := f.ListenAddr(); got != tc.want {
			t.Errorf("Parse(Local, %q).ListenAddr() = %q, want %q", tc.in, got, tc.want)
		}
	}
}
