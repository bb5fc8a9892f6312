package cli

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/pinhole-dev/pinhole/internal/ssh"
	"github.com/pinhole-dev/pinhole/internal/webtest"
)

// startThreeNames starts a pinhole server with --domain example.test
// (and serverFlags) and a pinhole connect holding the names a, b and c
// for one service, which answers "NAME PATH" and echoes WebSocket
// messages at /echo. It returns the server's port and certificate.
func startThreeNames(t *testing.T, serverFlags ...string) (string, *webtest.Certificate) {
	t.Helper()
	dir := t.TempDir()
	identity, pub := writeKey(t, dir, "id_ed25519")
	authKeys := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authKeys, ssh.MarshalAuthorizedKey(pub), 0o600); err != nil {
		t.Fatal(err)
	}
	cert := webtest.Cert(t, "*.example.test")
	srv := start(t, append([]string{"server", "--listen", "127.0.0.1:0", "--host-key", filepath.Join(dir, "host_key"), "--authorized-keys", authKeys,
		"--domain", "example.test", "--tls-cert", cert.CertFile, "--tls-key", cert.KeyFile}, serverFlags...)...)
	_, port, _ := net.SplitHostPort(srv.waitLine(t, `listening on (\S+)`)[1])

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	svc := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/echo" {
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			defer c.CloseNow()
			for {
				typ, m, err := c.Read(r.Context())
				if err != nil || c.Write(r.Context(), typ, m) != nil {
					return
				}
			}
		}
		fmt.Fprintf(w, "%s %s %s", strings.SplitN(r.Host, ".", 2)[0], r.URL.Path, r.Proto)
	})}
	go svc.Serve(ln)
	t.Cleanup(func() { svc.Close() })
	target := ln.Addr().String()
	c := start(t, "connect", "-F", "none", "-i", identity, "--known-hosts", filepath.Join(dir, "known_hosts"), "-p", port,
		"-R", "a:80:"+target, "-R", "b:80:"+target, "-R", "c:80:"+target, "tester@127.0.0.1")
	for _, n := range []string{"a", "b", "c"} {
		c.waitLine(t, `-R `+n+`:80:\S+: https://`+n+`\.example\.test:`)
	}
	return port, cert
}

// namesClient is an HTTPS client that trusts cert and dials the server's
// port on loopback for every name; h2 offers HTTP/2 too.
func namesClient(cert *webtest.Certificate, port string, h2 bool) *http.Client {
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: cert.Pool},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return new(net.Dialer).DialContext(ctx, network, "127.0.0.1:"+port)
		},
		MaxIdleConnsPerHost: 16,
		ForceAttemptHTTP2:   h2,
	}}
}

// getThreeNames sends n concurrent requests spread over the names a, b
// and c with client, and checks that each gets its own answer, over HTTP
// major version proto (the service always sees HTTP/1.1).
func getThreeNames(t *testing.T, client *http.Client, port string, n, proto int) {
	t.Helper()
	names := []string{"a", "b", "c"}
	errs := make(chan error, n)
	for i := range n {
		go func() {
			name := names[i%3]
			resp, err := client.Get(fmt.Sprintf("https://%s.example.test:%s/req/%d", name, port, i))
			if err != nil {
				errs <- err
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := fmt.Sprintf("%s /req/%d HTTP/1.1", name, i); resp.StatusCode != 200 || string(b) != want || resp.ProtoMajor != proto {
				errs <- fmt.Errorf("request %d: %s %s %q, want HTTP/%d 200 %q", i, resp.Proto, resp.Status, b, proto, want)
				return
			}
			errs <- nil
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

// TestNamesHTTP2: browsers' HTTP/2 is served toward the public client
// (ALPN h2) while the service behind the tunnel gets HTTP/1.1: curl
// --http2 through a name says version 2, and 100 concurrent requests
// over HTTP/2 spread over three names each get their own answer.
func TestNamesHTTP2(t *testing.T) {
	// With the default SSH limits: HTTP connections have their own.
	port, cert := startThreeNames(t)
	if _, err := exec.LookPath("curl"); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "curl", "-s", "--http2", "--resolve", "a.example.test:"+port+":127.0.0.1", "--cacert", cert.CertFile,
			"-w", "\n%{http_version}", "https://a.example.test:"+port+"/curl").Output()
		if err != nil || string(out) != "a /curl HTTP/1.1\n2" {
			t.Errorf("curl --http2: %v %q, want the answer and version 2", err, out)
		}
	} else {
		t.Log("no curl: the curl --http2 part is skipped")
	}
	getThreeNames(t, namesClient(cert, port, true), port, 100, 2)
}
