package bench

import (
	"slices"
	"testing"

	"github.com/pinhole-dev/pinhole/internal/transport"
)

func TestPinholeDestArgs(t *testing.T) {
	l := &lab{tlsFingerprint: "SHA256:abc"}
	tests := []struct {
		scheme transport.Scheme
		want   []string
	}{
		{"", []string{"-p", "2222", "127.0.0.1"}},
		{transport.SSH, []string{"-p", "2222", "127.0.0.1"}},
		{transport.TLS, []string{"--tls-fingerprint", "SHA256:abc", "--proxy", "none", "tls://127.0.0.1:2222"}},
		{transport.WSS, []string{"--tls-fingerprint", "SHA256:abc", "--proxy", "none", "wss://127.0.0.1:2222/ssh"}},
	}
	for _, tt := range tests {
		t.Run(string(tt.scheme), func(t *testing.T) {
			got, err := pinholeDest{addr: "127.0.0.1:2222", scheme: tt.scheme}.args(l)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("args = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestTransportSetups checks that the tls:// and wss:// rows are the raw
// pinhole row but for the transport: the same measurements apply.
func TestTransportSetups(t *testing.T) {
	byName := map[string]setup{}
	for _, s := range setups() {
		byName[s.name] = s
	}
	raw := byName["pinhole"]
	for _, name := range []string{"pinhole-tls", "pinhole-wss"} {
		s, ok := byName[name]
		if !ok {
			t.Fatalf("no setup %s", name)
		}
		for _, m := range measurements(Config{}) {
			if m.applies(s) != m.applies(raw) {
				t.Errorf("%s: %s applies %v, to pinhole %v", name, m.name, m.applies(s), m.applies(raw))
			}
		}
	}
}
