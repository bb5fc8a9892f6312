package tunnel

import (
	"bytes"
	"testing"

	"github.com/pinhole-dev/pinhole/internal/ssh"
)

// FuzzParseOpen feeds arbitrary channel-open payloads to parseOpen: an
// error or a target, never a panic, never more early data than maxEarly,
// and what it accepts marshals back to the same bytes.
func FuzzParseOpen(f *testing.F) {
	f.Add(true, ssh.Marshal(channelOpenEarly{Host: "127.0.0.1", Port: 80, OriginHost: "::1", OriginPort: 5, Early: []byte("GET /")}))
	f.Add(false, ssh.Marshal(channelOpen{Host: "example.test", Port: 22}))
	f.Add(true, []byte{0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, early bool, payload []byte) {
		chanType := chanDirectTCPIP
		if early {
			chanType = chanDirectTCPIPEarly
		}
		p, data, err := parseOpen(chanType, payload)
		if err != nil {
			return
		}
		if len(data) > maxEarly {
			t.Fatalf("%d bytes of early data accepted", len(data))
		}
		var again []byte
		if early {
			again = ssh.Marshal(channelOpenEarly{Host: p.Host, Port: p.Port, OriginHost: p.OriginHost, OriginPort: p.OriginPort, Early: data})
		} else {
			again = ssh.Marshal(p)
		}
		if !bytes.Equal(again, payload) {
			t.Fatalf("%x parsed as %+v %q, which marshals to %x", payload, p, data, again)
		}
	})
}
