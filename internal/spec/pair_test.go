package spec

import (
	"strings"
	"testing"
)

func TestParsePair(t *testing.T) {
	for _, tc := range []struct {
		listen, target string
		want           Pair
	}{
		{"tcp://:8080", "tcp://10.0.0.5:80", Pair{Endpoint{TCP, "", 8080}, Endpoint{TCP, "10.0.0.5", 80}}},
		{"tcp://127.0.0.1:0", "tcp://db:5432", Pair{Endpoint{TCP, "127.0.0.1", 0}, Endpoint{TCP, "db", 5432}}},
		{"UDP://[::1]:53", "udp://[fe80::1%eth0]:53", Pair{Endpoint{UDP, "::1", 53}, Endpoint{UDP, "fe80::1%eth0", 53}}},
	} {
		got, err := ParsePair(tc.listen, tc.target)
		if err != nil {
			t.Errorf("ParsePair(%q, %q): %v", tc.listen, tc.target, err)
			continue
		}
		if got != tc.want {
			t.Errorf("ParsePair(%q, %q) = %+v, want %+v", tc.listen, tc.target, got, tc.want)
		}
	}
}

func TestParsePairErrors(t *testing.T) {
	for _, tc := range []struct{ listen, target, want string }{
		{"8080", "tcp://h:1", `no tcp:// or udp:// in front`},
		{"http://:80", "tcp://h:1", `unknown scheme "http://"`},
		{"tcp://:80", "udp://h:1", `a tcp listener relays to a tcp target only`},
		{"tcp://:80", "tcp://h", `want host:port after tcp://`},
		{"tcp://:80", "tcp://:1", `host "": empty`},
		{"tcp://:80", "tcp://h:0", `a target needs a port 1-65535`},
		{"tcp://:99999", "tcp://h:1", `port "99999" is not a number 1-65535`},
		{"tcp://::1:80", "tcp://h:1", `put an IPv6 address in brackets`},
		{"tcp://[h]:80", "tcp://h:1", `only IPv6 addresses go in brackets`},
		{"tcp://:80/x", "tcp://h:1", `only host:port may follow tcp://`},
		{"tcp://:80", "tcp://h$:1", `invalid character '$'`},
	} {
		_, err := ParsePair(tc.listen, tc.target)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "spec: ") {
			t.Errorf("ParsePair(%q, %q) = %v, want an error with %q", tc.listen, tc.target, err, tc.want)
		}
	}
}

func FuzzParsePair(f *testing.F) {
	for _, s := range [][2]string{
		{"tcp://:8080", "tcp://10.0.0.5:80"}, {"udp://[::1]:53", "udp://h:53"},
		{"tcp://[fe80::1%eth0]:1", "tcp://x:2"}, {"tcp://:0", "udp://h:1"}, {"tcp://", ""},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, listen, target string) {
		p, err := ParsePair(listen, target)
		if err != nil {
			return
		}
		again, err := ParsePair(p.Listen.String(), p.Target.String())
		if err != nil {
			t.Fatalf("ParsePair(%q, %q) = %+v; re-parse of %q: %v", listen, target, p, p.String(), err)
		}
		if again != p {
			t.Fatalf("ParsePair(%q, %q) = %+v; re-parse of %q = %+v", listen, target, p, p.String(), again)
		}
	})
}
