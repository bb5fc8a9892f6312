package transport

import (
	"crypto/tls"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/tunnel"
)

// TestHTTP2ByALPN: a client that offers h2 gets HTTP/2 from the HTTP
// handler; one that offers only http/1.1 (WebSocket clients) gets
// HTTP/1.1; SSH is still preferred over both (TestOnePortEveryTransport).
func TestHTTP2ByALPN(t *testing.T) {
	s := startShared(t, func(_ *tunnel.ServerConfig, d *Dispatcher) {
		d.HTTP = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Proto) })
	})
	for _, tc := range []struct {
		name  string
		alpn  []string
		h2    bool
		proto string
	}{
		{"h2 and http/1.1", []string{"h2", "http/1.1"}, true, "HTTP/2.0"},
		{"http/1.1 and h2", []string{"http/1.1", "h2"}, true, "HTTP/2.0"}, // the server's preference
		{"http/1.1 only", []string{"http/1.1"}, false, "HTTP/1.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.pool, ServerName: "localhost", NextProtos: tc.alpn}, ForceAttemptHTTP2: tc.h2}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://" + s.addr + "/x")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.Proto != tc.proto || string(b) != tc.proto {
				t.Errorf("got %s, handler saw %q; want %s", resp.Proto, b, tc.proto)
			}
		})
	}
}
