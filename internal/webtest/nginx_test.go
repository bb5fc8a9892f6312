package webtest

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestNginx: an HTTP Upgrade on /ssh goes through nginx's TLS to a Go
// upstream, which sees the headers nginx adds and answers 101; bytes then
// round-trip through nginx both ways. Another path gets nginx's 404.
func TestNginx(t *testing.T) {
	Need(t, "nginx")
	ctx := testContext(t)
	up := serveUpgrade(t, "127.0.0.1:0")
	n := StartNginx(t, NginxConfig{Upstream: up.addr})
	t.Logf("nginx at %s, pid %d", n.URL(), n.Pid)

	conn, resp := upgrade(t, n.Addr.String(), "localhost", n.Cert, "/ssh")
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("GET /ssh with Upgrade through nginx: %s, want 101", resp.Status)
	}
	req := <-up.requests
	for k, want := range map[string]string{"Upgrade": "websocket", "Connection": "upgrade", "X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "https"} {
		if got := req.Header.Get(k); !strings.EqualFold(got, want) {
			t.Errorf("the upstream got %s: %q, want %q", k, got, want)
		}
	}
	if req.URL.Path != "/ssh" {
		t.Errorf("the upstream got path %q, want /ssh", req.URL.Path)
	}
	if err := echoRoundTrip(conn, 1<<20); err != nil {
		t.Fatalf("through nginx after the upgrade: %v", err)
	}
	conn.Close()
	if _, err := n.WaitAccessLog(ctx, `"GET /ssh HTTP/1.1" 101 `); err != nil {
		t.Error(err)
	}

	other, resp := upgrade(t, n.Addr.String(), "localhost", n.Cert, "/other")
	other.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /other through nginx: %s, want 404", resp.Status)
	}
	select {
	case r := <-up.requests:
		t.Errorf("the upstream got %s, which nginx should have answered itself", r.URL)
	default:
	}
}

// TestCert: a Go TLS client that trusts only the certificate's pool
// verifies it for each of its names, DNS and IP, and not for another.
func TestCert(t *testing.T) {
	c := Cert(t, "localhost", "127.0.0.1", "*.pinhole.test")
	if c.Leaf.PublicKeyAlgorithm.String() != "ECDSA" {
		t.Errorf("key algorithm %s, want ECDSA (P-256)", c.Leaf.PublicKeyAlgorithm)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{c.TLS}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conn.(*tls.Conn).Handshake()
			conn.Close()
		}
	}()
	for _, tc := range []struct {
		name string
		ok   bool
	}{{"localhost", true}, {"127.0.0.1", true}, {"a.pinhole.test", true}, {"example.com", false}} {
		conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: c.Pool, ServerName: tc.name})
		if err == nil {
			conn.Close()
		}
		if (err == nil) != tc.ok {
			t.Errorf("TLS to the certificate as %s: %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

// upgradeServer is a Go upstream that answers an Upgrade with 101 and then
// echoes raw bytes.
type upgradeServer struct {
	addr     netip.AddrPort
	requests chan *http.Request
}

// serveUpgrade serves on a listener at addr until the test ends: each
// connection's first request goes to requests; one with an Upgrade header
// gets 101 and its connection then echoes; any other gets 400.
func serveUpgrade(t *testing.T, addr string) *upgradeServer {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return serveUpgradeListener(t, ln)
}

func serveUpgradeListener(t *testing.T, ln net.Listener) *upgradeServer {
	t.Cleanup(func() { ln.Close() })
	s := &upgradeServer{addr: ln.Addr().(*net.TCPAddr).AddrPort(), requests: make(chan *http.Request, 16)}
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(30 * time.Second))
				br := bufio.NewReader(conn)
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				select {
				case s.requests <- req:
				default:
				}
				if req.Header.Get("Upgrade") == "" {
					io.WriteString(conn, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
					return
				}
				fmt.Fprintf(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: %s\r\nConnection: Upgrade\r\n\r\n", req.Header.Get("Upgrade"))
				io.Copy(conn, br) // br first: bytes sent right after the request
			}()
		}
	}()
	return s
}

// upgrade dials addr over TLS, trusting only cert, as serverName, and sends
// GET path with an Upgrade: websocket header; it returns the connection,
// ready for raw bytes after a 101, and the response.
func upgrade(t *testing.T, addr, serverName string, cert *Certificate, path string) (net.Conn, *http.Response) {
	t.Helper()
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return upgradeConn(t, raw, serverName, cert, path)
}

func upgradeConn(t *testing.T, raw net.Conn, serverName string, cert *Certificate, path string) (net.Conn, *http.Response) {
	t.Helper()
	conn := tls.Client(raw, &tls.Config{RootCAs: cert.Pool, ServerName: serverName})
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", path, serverName)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	if err != nil {
		t.Fatalf("GET %s through %s: %v", path, raw.RemoteAddr(), err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if br.Buffered() > 0 {
		t.Fatalf("GET %s: %d bytes after the response header", path, br.Buffered())
	}
	conn.SetDeadline(time.Time{})
	return conn, resp
}
