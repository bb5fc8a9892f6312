package webtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/streamtest"
)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestSquid: squid tunnels a CONNECT to an allowed port, for curl to a Go
// HTTPS server and for a Go client to a byte-stream target, refuses
// CONNECT to another port with 403, and logs both.
func TestSquid(t *testing.T) {
	Need(t, "squid", "curl")
	ctx := testContext(t)
	cert := Cert(t, "127.0.0.1", "localhost")
	https := serveHTTPS(t, cert)
	target := streamtest.NewEcho(t)
	denied := streamtest.NewEcho(t)
	s := StartSquid(t, SquidConfig{AllowConnectPorts: []uint16{port(t, https), uint16(target.Port())}})
	t.Logf("squid at %s, pid %d", s.URL(), s.Pid)

	t.Run("curl", func(t *testing.T) {
		out, err := exec.CommandContext(ctx, "curl", "-sS", "--max-time", "10", "--proxy", s.URL(),
			"--cacert", cert.CertFile, "https://"+https.String()+"/hello").CombinedOutput()
		if err != nil || string(out) != "hello from HTTPS\n" {
			t.Fatalf("curl through squid: %v: %q", err, out)
		}
		// -p asks for a tunnel to a port squid forbids.
		out, err = exec.CommandContext(ctx, "curl", "-sS", "--max-time", "10", "-p", "--proxy", s.URL(),
			"http://"+denied.Addr()+"/").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "403") {
			t.Fatalf("curl -p through squid to a port not allowed: %v: %q, want a 403", err, out)
		}
	})
	t.Run("go", func(t *testing.T) {
		conn, status := connect(t, s.Addr.String(), target.Addr())
		if status != http.StatusOK {
			t.Fatalf("CONNECT %s: %d, want 200", target.Addr(), status)
		}
		// Not streamtest.Exchange: squid ends the whole tunnel at
		// the first half-close.
		if err := echoRoundTrip(conn, 256<<10); err != nil {
			t.Fatalf("through squid's tunnel: %v", err)
		}
		conn.Close()
		if _, status := connect(t, s.Addr.String(), denied.Addr()); status != http.StatusForbidden {
			t.Fatalf("CONNECT %s: %d, want 403", denied.Addr(), status)
		}
	})
	t.Run("access.log", func(t *testing.T) {
		for _, re := range []string{
			` TCP_TUNNEL/200 .* CONNECT ` + target.Addr() + ` `,
			` TCP_TUNNEL/200 .* CONNECT ` + https.String() + ` `,
			` TCP_DENIED/403 .* CONNECT ` + denied.Addr() + ` `,
		} {
			if _, err := s.WaitAccessLog(ctx, re); err != nil {
				t.Error(err)
			}
		}
	})
}

// echoRoundTrip writes n random bytes to conn, which must echo them, and
// reads them back, within 20 s.
func echoRoundTrip(conn net.Conn, n int) error {
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	defer conn.SetDeadline(time.Time{})
	msg := make([]byte, n)
	for i := range msg {
		msg[i] = byte(rand.Uint32())
	}
	errc := make(chan error, 1)
	go func() {
		_, err := conn.Write(msg)
		errc <- err
	}()
	got := make([]byte, n)
	_, rerr := io.ReadFull(conn, got)
	if werr := <-errc; werr != nil {
		return fmt.Errorf("writing: %w", werr)
	}
	if rerr != nil {
		return fmt.Errorf("reading the echo: %w", rerr)
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("the echo of %d bytes differs", n)
	}
	return nil
}

// connect sends CONNECT to via the proxy at proxy and returns the
// connection and the proxy's status code.
func connect(t *testing.T, proxy, to string) (net.Conn, int) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", proxy, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", to, to)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatalf("CONNECT %s through %s: %v", to, proxy, err)
	}
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	if br.Buffered() > 0 {
		t.Fatalf("CONNECT %s: %d bytes after the response header", to, br.Buffered())
	}
	conn.SetDeadline(time.Time{})
	return conn, resp.StatusCode
}

// serveHTTPS serves "hello from HTTPS\n" over TLS with cert on a loopback
// listener until the test ends, and returns its address.
func serveHTTPS(t *testing.T, cert *Certificate) net.Addr {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := newHTTPS(cert)
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return ln.Addr()
}

// newHTTPS returns a server of "hello from HTTPS\n" over TLS with cert.
func newHTTPS(cert *Certificate) *http.Server {
	return &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "hello from HTTPS\n")
		}),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert.TLS}},
	}
}

func port(t *testing.T, a net.Addr) uint16 {
	t.Helper()
	return uint16(a.(*net.TCPAddr).Port)
}
