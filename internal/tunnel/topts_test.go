package tunnel_test

import (
	"bytes"
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/observe"
	"github.com/pinhole-dev/pinhole/internal/proxyproto"
	"github.com/pinhole-dev/pinhole/internal/spec"
	"github.com/pinhole-dev/pinhole/internal/ssh"
	"github.com/pinhole-dev/pinhole/internal/streamtest"
	"github.com/pinhole-dev/pinhole/internal/tunnel"
)

// optionsServer is a server whose OptionsWait is long enough that a
// forward served at once shows the client said it sends no options; key
// may log in.
func optionsServer(t *testing.T) (srv *server, hostKey, key ssh.Signer) {
	hostKey, key = newSigner(t), newSigner(t)
	srv = startServerConfig(t, nil, tunnel.ServerConfig{
		HostKeys:    []ssh.Signer{hostKey},
		Authorize:   keySet(t, authorizedLine("", key.PublicKey())),
		OptionsWait: 20 * time.Second,
		Logger:      testLogger(t).With("side", "server"),
	})
	return srv, hostKey, key
}

// TestTunnelOptionsTCP: a pinhole client's tunnel options reach the
// server before its forwards. With proxy-protocol=v2 the service reads
// the header of the real client, then the client's first bytes (sent as
// early data in the channel open); allow= without loopback closes the
// connection; a client without options is served at once (it sends
// no-more-sessions), well before the server's OptionsWait.
func TestTunnelOptionsTCP(t *testing.T) {
	srv, hostKey, key := optionsServer(t)
	target, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	got := make(chan []byte, 4)
	go func() {
		for {
			c, err := target.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				b := make([]byte, 4096)
				var all []byte
				for !bytes.HasSuffix(all, []byte("hello")) {
					n, err := c.Read(b)
					all = append(all, b[:n]...)
					if err != nil {
						break
					}
				}
				got <- all
			}()
		}
	}()
	for _, tc := range []struct {
		words  string
		header bool // else nothing but hello
		closed bool
	}{
		{"", false, false},
		{"proxy-protocol=v2", true, false},
		{"proxy-protocol=v1 allow=192.0.2.0/24", false, true},
	} {
		t.Run(cmp.Or(tc.words, "no options"), func(t *testing.T) {
			cfg := clientConfig(t, srv.addr, hostKey.PublicKey(), key)
			cfg.Remote = []spec.Forward{mustParse(t, spec.Remote, "127.0.0.1:0:"+target.Addr().String())}
			cfg.TunnelOptions = tc.words
			began := time.Now()
			c := dialClient(t, cfg)
			bound := c.RemoteAddrs()[0]
			conn, err := net.DialTimeout("tcp", bound, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.Write([]byte("hello"))
			if tc.closed {
				conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, err := conn.Read(make([]byte, 1))
				if ne, ok := err.(net.Error); err == nil || ok && ne.Timeout() {
					t.Fatalf("a client allow= does not admit was not closed: %v", err)
				}
				select {
				case b := <-got:
					t.Fatalf("the service got %q from a client allow= does not admit", b)
				case <-time.After(200 * time.Millisecond):
				}
				// Refused connections give back the key's streams: a
				// stranger cannot use up its stream limit.
				fp := ssh.FingerprintSHA256(key.PublicKey())
				before := srv.srv.KeyUsage(fp).Streams
				for range 5 {
					c, err := net.DialTimeout("tcp", bound, 5*time.Second)
					if err != nil {
						t.Fatal(err)
					}
					c.SetReadDeadline(time.Now().Add(10 * time.Second))
					c.Read(make([]byte, 1))
					c.Close()
				}
				waitFor(t, 5*time.Second, "the refused streams given back", func() bool { return srv.srv.KeyUsage(fp).Streams <= before })
				return
			}
			var b []byte
			select {
			case b = <-got:
			case <-time.After(15 * time.Second):
				t.Fatal("the service got nothing")
			}
			if d := time.Since(began); d > 10*time.Second {
				t.Errorf("the first stream took %v: the server waited for options the client said it would not send", d)
			}
			want := []byte("hello")
			if tc.header {
				src, _ := netip.ParseAddrPort(conn.LocalAddr().String())
				dst, _ := netip.ParseAddrPort(bound)
				want = append(proxyproto.Header(proxyproto.V2, src, dst), want...)
			}
			if !bytes.Equal(b, want) {
				t.Errorf("the service read %q, want %q", b, want)
			}
		})
	}
}

// TestTunnelOptionsUDP: allow= applies to a -R .../udp forward's flows as
// to a TCP port's connections. Without options, or with an allow= that
// admits loopback, a datagram comes back from the echo service; with one
// that does not, nothing reaches the service, nothing comes back, and the
// server records the refusal.
func TestTunnelOptionsUDP(t *testing.T) {
	srv, hostKey, key := optionsServer(t)
	echo := streamtest.NewUDPEcho(t)
	port := echo.LocalAddr().(*net.UDPAddr).Port
	for _, tc := range []struct {
		words  string
		served bool
	}{
		{"", true},
		{"allow=127.0.0.0/8", true},
		{"allow=192.0.2.0/24", false},
	} {
		t.Run(cmp.Or(tc.words, "no options"), func(t *testing.T) {
			cfg := clientConfig(t, srv.addr, hostKey.PublicKey(), key)
			cfg.Remote = []spec.Forward{mustParse(t, spec.Remote, fmt.Sprintf("127.0.0.1:0:127.0.0.1:%d/udp", port))}
			cfg.TunnelOptions = tc.words
			flowsBefore := srv.srv.Counters().UDP.Flows
			c := dialClient(t, cfg)
			conn := dialUDP(t, c.RemoteAddrs()[0])
			if tc.served {
				if err := roundTrip(conn, []byte("hello")); err != nil {
					t.Fatalf("a datagram through -R/udp with %q: %v", cmp.Or(tc.words, "no options"), err)
				}
				return
			}
			for range 3 {
				if _, err := conn.Write([]byte("hello")); err != nil {
					t.Fatal(err)
				}
			}
			conn.SetReadDeadline(time.Now().Add(time.Second))
			if n, err := conn.Read(make([]byte, 64)); err == nil {
				t.Fatalf("%d bytes came back from the service to a source allow= does not admit", n)
			}
			// The options were settled before the forward served, so the
			// datagrams were dropped before any flow was opened for them.
			if u := srv.srv.Counters().UDP; u.Refused != 3 || u.Flows != flowsBefore {
				t.Errorf("3 datagrams from a source allow= does not admit: %d refused, %d flows opened; want 3 and none", u.Refused, u.Flows-flowsBefore)
			}
			waitFor(t, 5*time.Second, "the refusal recorded", func() bool {
				for _, e := range srv.srv.Events().Events() {
					if e.Reason == observe.RefusedTunnelOptions && strings.HasSuffix(e.Forward, "/udp") {
						return true
					}
				}
				return false
			})
		})
	}
}
