package transport

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/tunnel"
)

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// holdHTTP opens connections that are HTTP but have not sent a whole
// request: a header cut short, plain; a TLS handshake offering h2,
// then nothing.
func holdHTTP(t *testing.T, s *shared, tlsToo bool) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if !tlsToo {
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n")
		return c
	}
	tc := tls.Client(c, &tls.Config{RootCAs: s.pool, ServerName: "localhost", NextProtos: []string{"h2", "http/1.1"}})
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	return tc
}

// TestHTTPLeavesTheSSHSlot: with one SSH pre-authentication slot per
// source, connections that have shown they are HTTP (a method; a
// ClientHello offering h2) do not hold it, even before their first
// request is whole: SSH still gets in beside them.
func TestHTTPLeavesTheSSHSlot(t *testing.T) {
	s := startShared(t, func(c *tunnel.ServerConfig, _ *Dispatcher) { c.PerSourceMaxStartups = 1 })
	for range 3 {
		holdHTTP(t, s, false)
		holdHTTP(t, s, true)
	}
	waitFor(t, "six HTTP connections counted", func() bool { return s.d.httpOpen() == 6 })
	waitFor(t, "no SSH slot held", func() bool { return s.srv.Startups().Unauthenticated == 0 })
	tunnelThrough(t, s, "ssh://"+s.addr, &Dialer{})
}

// TestHTTPLimits: past MaxHTTPConns, or MaxHTTPConnsPerSource from one
// address, a new HTTP connection is closed at once, plain or TLS; once
// one closes, the next gets in.
func TestHTTPLimits(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(*Dispatcher)
	}{
		{"total", func(d *Dispatcher) { d.MaxHTTPConns = 2 }},
		{"per source", func(d *Dispatcher) { d.MaxHTTPConnsPerSource = 2 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := startShared(t, func(_ *tunnel.ServerConfig, d *Dispatcher) { tc.set(d) })
			first := holdHTTP(t, s, false)
			holdHTTP(t, s, true)
			waitFor(t, "two HTTP connections counted", func() bool { return s.d.httpOpen() == 2 })
			for _, third := range []string{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", string(helloBytes(t, "localhost", "h2"))} {
				c, err := net.Dial("tcp", s.addr)
				if err != nil {
					t.Fatal(err)
				}
				io.WriteString(c, third)
				closedWithin(t, c, time.Second)
				c.Close()
			}
			first.Close()
			waitFor(t, "the closed one uncounted", func() bool { return s.d.httpOpen() == 1 })
			c, err := net.Dial("tcp", s.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil || resp.StatusCode != 404 {
				t.Fatalf("after one closed: %v, %v; want the 404 page", resp, err)
			}
		})
	}
}

// TestHTTPHoldsACore: each connection the HTTP server takes is held in
// Hold (the command line's CoreBudget) until it closes.
func TestHTTPHoldsACore(t *testing.T) {
	var mu sync.Mutex
	held := 0
	s := startShared(t, func(_ *tunnel.ServerConfig, d *Dispatcher) {
		d.Hold = func() func() {
			mu.Lock()
			defer mu.Unlock()
			held++
			var once sync.Once
			return func() {
				once.Do(func() {
					mu.Lock()
					defer mu.Unlock()
					held--
				})
			}
		}
	})
	count := func() int { mu.Lock(); defer mu.Unlock(); return held }
	a := holdHTTP(t, s, false)
	holdHTTP(t, s, true)
	waitFor(t, "two HTTP connections held", func() bool { return count() == 2 })
	a.Close()
	waitFor(t, "the closed one released", func() bool { return count() == 1 })
}

// TestHelloIsHTTP: which ClientHellos leave the SSH limits for HTTP's.
func TestHelloIsHTTP(t *testing.T) {
	d := &Dispatcher{SSHNames: []string{"ssh.example.test"}}
	for _, tc := range []struct {
		hello clientHello
		want  bool
	}{
		{clientHello{ALPN: []string{"h2", "http/1.1"}}, true},
		{clientHello{ALPN: []string{"acme-tls/1"}, ServerName: "myapp.example.test"}, true},
		{clientHello{ALPN: []string{"ssh", "http/1.1"}}, false},
		{clientHello{ALPN: []string{"imap"}}, false},
		{clientHello{}, false},
		{clientHello{ServerName: "ssh.example.test"}, false},
	} {
		if got := d.helloIsHTTP(tc.hello); got != tc.want {
			t.Errorf("helloIsHTTP(%+v) = %v, want %v", tc.hello, got, tc.want)
		}
	}
}
