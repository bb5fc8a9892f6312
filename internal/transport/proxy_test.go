package transport

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/socks"
)

// listen returns a loopback listener closed when the test ends.
func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// serveEach runs handle on every connection accepted on ln, in a
// goroutine each, until ln closes; the test waits for them.
func serveEach(t *testing.T, ln net.Listener, handle func(net.Conn)) {
	t.Helper()
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	t.Cleanup(func() { ln.Close() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				handle(c)
			})
		}
	})
}

// serveEcho echoes every connection accepted on ln until ln closes.
func serveEcho(t *testing.T, ln net.Listener) {
	t.Helper()
	serveEach(t, ln, func(c net.Conn) { io.Copy(c, c) })
}

// roundTrip writes a line on c and checks that it comes back.
func roundTrip(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	const msg = "SSH-2.0-pinhole-test\r\n"
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write through proxy: %v", err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read through proxy: %v", err)
	}
	if string(got) != msg {
		t.Fatalf("read %q through proxy, want %q", got, msg)
	}
}

// connectProxy is an HTTP proxy that answers CONNECT only.
type connectProxy struct {
	auth  string // user:password wanted in Proxy-Authorization; "" for none
	deny  int    // a status to answer instead of connecting; 0 to connect
	extra string // bytes sent along with the 200 header, before the target's

	wg sync.WaitGroup // relays
}

func (p *connectProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect {
		http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
		return
	}
	if p.auth != "" {
		cred, ok := strings.CutPrefix(r.Header.Get("Proxy-Authorization"), "Basic ")
		got, err := base64.StdEncoding.DecodeString(cred)
		if !ok || err != nil || string(got) != p.auth {
			w.Header().Set("Proxy-Authenticate", `Basic realm="test"`)
			w.WriteHeader(http.StatusProxyAuthRequired)
			return
		}
	}
	if p.deny != 0 {
		http.Error(w, http.StatusText(p.deny), p.deny)
		return
	}
	var d net.Dialer
	target, err := d.DialContext(r.Context(), "tcp", r.Host)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	c, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		target.Close()
		return
	}
	io.WriteString(c, "HTTP/1.1 200 Connection established\r\nVia: test\r\n\r\n"+p.extra)
	p.wg.Go(func() {
		defer c.Close()
		defer target.Close()
		done := make(chan struct{})
		go func() {
			io.Copy(c, target)
			c.Close()
			close(done)
		}()
		io.Copy(target, brw.Reader)
		target.Close()
		<-done
	})
}

// startConnectProxy serves p on a new loopback listener and returns its
// address.
func startConnectProxy(t *testing.T, p *connectProxy) string {
	t.Helper()
	ln := listen(t)
	srv := &http.Server{Handler: p}
	go srv.Serve(ln)
	t.Cleanup(func() {
		srv.Close()
		p.wg.Wait()
	})
	return ln.Addr().String()
}

func mustParseProxy(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := ParseProxy(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestHTTPConnect(t *testing.T) {
	echo := listen(t)
	serveEcho(t, echo)
	target := echo.Addr().String()

	tests := []struct {
		name    string
		proxy   connectProxy
		user    string // user info in the proxy URL, with the @
		wantErr string // "" for success; PROXY and TARGET are replaced
	}{
		{name: "no auth"},
		{name: "auth", proxy: connectProxy{auth: "alice:s3cret"}, user: "alice:s3cret@"},
		{name: "percent-encoded auth", proxy: connectProxy{auth: "al@ce:p:ss/w"}, user: "al%40ce:p%3Ass%2Fw@"},
		{name: "user without password", proxy: connectProxy{auth: "alice:"}, user: "alice@"},
		{
			name:    "forbidden",
			proxy:   connectProxy{deny: http.StatusForbidden},
			wantErr: "transport: proxy PROXY refused CONNECT to TARGET: 403 Forbidden (the proxy may allow CONNECT only to port 443: reach the server with tls:// or wss:// on port 443)",
		},
		{
			name:    "auth wanted",
			proxy:   connectProxy{auth: "alice:s3cret"},
			wantErr: "transport: proxy PROXY refused CONNECT to TARGET: 407 Proxy Authentication Required (the proxy wants a user name and password: write them in the proxy URL, http://user:password@host:port)",
		},
		{
			name:    "wrong password",
			proxy:   connectProxy{auth: "alice:s3cret"},
			user:    "alice:guess@",
			wantErr: "transport: proxy PROXY refused CONNECT to TARGET: 407 Proxy Authentication Required (the proxy did not accept the user name and password in the proxy URL: check them)",
		},
		{
			name:    "bad gateway",
			proxy:   connectProxy{deny: http.StatusBadGateway},
			wantErr: "transport: proxy PROXY refused CONNECT to TARGET: 502 Bad Gateway (the proxy may allow",
		},
	}
	for i := range tests {
		tt := &tests[i]
		t.Run(tt.name, func(t *testing.T) {
			proxyAddr := startConnectProxy(t, &tt.proxy)
			dial, err := ProxyDialer(mustParseProxy(t, "http://"+tt.user+proxyAddr), nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			c, err := dial(ctx, "tcp", target)
			if tt.wantErr != "" {
				want := strings.NewReplacer("PROXY", proxyAddr, "TARGET", target).Replace(tt.wantErr)
				if err == nil {
					c.Close()
					t.Fatalf("dial succeeded, want error %q", want)
				}
				if !strings.HasPrefix(err.Error(), want) {
					t.Fatalf("error\n%q, want\n%q", err, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			roundTrip(t, c)
		})
	}
}

// TestHTTPConnectBytesAfterHeader checks that what the proxy sends right
// after its header, in the same segment, reaches the caller.
func TestHTTPConnectBytesAfterHeader(t *testing.T) {
	echo := listen(t)
	serveEcho(t, echo)
	const extra = "SSH-2.0-early\r\n"
	proxyAddr := startConnectProxy(t, &connectProxy{extra: extra})
	dial, err := ProxyDialer(mustParseProxy(t, proxyAddr), nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := dial(t.Context(), "tcp", echo.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len(extra))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != extra {
		t.Fatalf("first bytes %q, want %q", got, extra)
	}
	roundTrip(t, c)
}

func TestHTTPSProxy(t *testing.T) {
	echo := listen(t)
	serveEcho(t, echo)
	p := &connectProxy{auth: "alice:s3cret"}
	srv := httptest.NewUnstartedServer(p)
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the failing handshake below
	srv.Listener.Close()
	srv.Listener = listen(t)
	srv.StartTLS()
	t.Cleanup(func() {
		srv.Close()
		p.wg.Wait()
	})
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())

	u := mustParseProxy(t, "https://alice:s3cret@"+srv.Listener.Addr().String())
	dial, err := proxyDialer(u, nil, &tls.Config{RootCAs: roots})
	if err != nil {
		t.Fatal(err)
	}
	c, err := dial(t.Context(), "tcp", echo.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	roundTrip(t, c)

	// The system roots do not know the test's certificate.
	dial, err = ProxyDialer(u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := dial(t.Context(), "tcp", echo.Addr().String()); err == nil {
		c.Close()
		t.Fatal("dial through a proxy with an unknown certificate succeeded")
	} else if !strings.Contains(err.Error(), "transport: TLS to proxy") {
		t.Fatalf("error %q, want it to name TLS to the proxy", err)
	}
}

// silentProxy accepts connections on ln and reads them, never answering.
func silentProxy(t *testing.T, ln net.Listener) {
	t.Helper()
	serveEach(t, ln, func(c net.Conn) { io.Copy(io.Discard, c) })
}

func TestProxyHandshakeContext(t *testing.T) {
	for _, scheme := range []string{"http", "socks5h"} {
		t.Run(scheme+"/deadline", func(t *testing.T) {
			ln := listen(t)
			silentProxy(t, ln)
			dial, err := ProxyDialer(mustParseProxy(t, scheme+"://"+ln.Addr().String()), nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
			defer cancel()
			start := time.Now()
			c, err := dial(ctx, "tcp", "example.com:22")
			if err == nil {
				c.Close()
				t.Fatal("dial through a silent proxy succeeded")
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("error %q does not wrap context.DeadlineExceeded", err)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("dial took %v after a 100ms deadline", d)
			}
		})
		t.Run(scheme+"/cancel", func(t *testing.T) {
			ln := listen(t)
			silentProxy(t, ln)
			dial, err := ProxyDialer(mustParseProxy(t, scheme+"://"+ln.Addr().String()), nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			time.AfterFunc(100*time.Millisecond, cancel)
			c, err := dial(ctx, "tcp", "example.com:22")
			if err == nil {
				c.Close()
				t.Fatal("dial through a silent proxy succeeded")
			}
			if !errors.Is(err, context.Canceled) {
				t.Errorf("error %q does not wrap context.Canceled", err)
			}
		})
	}

	// The deadline is cleared once the proxy has answered: the connection
	// outlives the dial's context.
	t.Run("deadline cleared", func(t *testing.T) {
		echo := listen(t)
		serveEcho(t, echo)
		proxyAddr := startConnectProxy(t, &connectProxy{})
		dial, err := ProxyDialer(mustParseProxy(t, proxyAddr), nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		c, err := dial(ctx, "tcp", echo.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		<-ctx.Done()
		time.Sleep(50 * time.Millisecond)
		const msg = "after"
		io.WriteString(c, msg)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatalf("reading after the dial's deadline: %v", err)
		}
	})
}

// socksProxy runs pinhole's SOCKS server on a loopback listener. Its Dial
// records each address asked for, answers connection refused for the
// host "refused.test", and sends every other address to target.
type socksProxy struct {
	addr string

	mu   sync.Mutex
	seen []string
}

func startSOCKS(t *testing.T, creds socks.Credentials, target string) *socksProxy {
	t.Helper()
	p := &socksProxy{}
	ln := listen(t)
	s := &socks.Server{
		Credentials: creds,
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			p.mu.Lock()
			p.seen = append(p.seen, addr)
			p.mu.Unlock()
			if host, _, _ := net.SplitHostPort(addr); host == "refused.test" {
				return nil, fmt.Errorf("dial %s: %w", addr, syscall.ECONNREFUSED)
			}
			var d net.Dialer
			return d.DialContext(ctx, network, target)
		},
	}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	p.addr = ln.Addr().String()
	return p
}

func (p *socksProxy) lastSeen() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.seen) == 0 {
		return ""
	}
	return p.seen[len(p.seen)-1]
}

func TestSOCKS5(t *testing.T) {
	echo := listen(t)
	serveEcho(t, echo)
	_, echoPort, _ := net.SplitHostPort(echo.Addr().String())
	creds := socks.StaticCredentials{"alice": "s3cret"}

	tests := []struct {
		name     string
		creds    socks.Credentials // the proxy's; nil for no auth
		url      string            // proxy URL, ADDR replaced by the proxy's address
		target   string            // PORT replaced by the echo server's port
		wantSeen string            // address the proxy is asked for; "IP" for any IP address
		wantErr  string            // "" for success; ADDR replaced
	}{
		{name: "socks5 ip", url: "socks5://ADDR", target: "127.0.0.1:PORT", wantSeen: "127.0.0.1:PORT"},
		{name: "socks5 resolves here", url: "socks5://ADDR", target: "localhost:PORT", wantSeen: "IP"},
		{name: "socks5h sends the name", url: "socks5h://ADDR", target: "localhost:PORT", wantSeen: "localhost:PORT"},
		{name: "socks5h a name only the proxy knows", url: "socks5h://ADDR", target: "only-the-proxy.test:PORT", wantSeen: "only-the-proxy.test:PORT"},
		{name: "socks5h ip", url: "SOCKS5H://ADDR", target: "127.0.0.1:PORT", wantSeen: "127.0.0.1:PORT"},
		{name: "socks5h ipv6", url: "socks5h://ADDR", target: "[::1]:PORT", wantSeen: "[::1]:PORT"},
		{name: "auth", creds: creds, url: "socks5://alice:s3cret@ADDR", target: "127.0.0.1:PORT", wantSeen: "127.0.0.1:PORT"},
		{name: "socks5h auth", creds: creds, url: "socks5h://alice:s3cret@ADDR", target: "localhost:PORT", wantSeen: "localhost:PORT"},
		{name: "auth offered, none wanted", url: "socks5h://alice:s3cret@ADDR", target: "localhost:PORT", wantSeen: "localhost:PORT"},
		{
			name: "wrong password", creds: creds, url: "socks5://alice:guess@ADDR", target: "127.0.0.1:PORT",
			wantErr: "transport: SOCKS5 proxy ADDR: rejected the user name and password in the proxy URL: check them",
		},
		{
			name: "auth wanted", creds: creds, url: "socks5h://ADDR", target: "localhost:PORT",
			wantErr: "transport: SOCKS5 proxy ADDR: it wants authentication: write a user name and password in the proxy URL, socks5://user:password@host:port",
		},
		{
			name: "refused", url: "socks5h://ADDR", target: "refused.test:22",
			wantErr: "transport: SOCKS5 proxy ADDR: could not connect to refused.test:22: connection refused (reply 5): check that the server runs and listens on that port",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := startSOCKS(t, tt.creds, echo.Addr().String())
			dial, err := ProxyDialer(mustParseProxy(t, strings.ReplaceAll(tt.url, "ADDR", p.addr)), nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			c, err := dial(ctx, "tcp", strings.ReplaceAll(tt.target, "PORT", echoPort))
			if tt.wantErr != "" {
				want := strings.ReplaceAll(tt.wantErr, "ADDR", p.addr)
				if err == nil {
					c.Close()
					t.Fatalf("dial succeeded, want error %q", want)
				}
				if err.Error() != want {
					t.Fatalf("error\n%q, want\n%q", err, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			roundTrip(t, c)
			seen := p.lastSeen()
			if tt.wantSeen == "IP" {
				host, port, _ := net.SplitHostPort(seen)
				if _, err := netip.ParseAddr(host); err != nil || port != echoPort {
					t.Fatalf("proxy was asked for %q, want an IP address and port %s", seen, echoPort)
				}
			} else if want := strings.ReplaceAll(tt.wantSeen, "PORT", echoPort); seen != want {
				t.Fatalf("proxy was asked for %q, want %q", seen, want)
			}
		})
	}
}

func TestProxyDialerRejects(t *testing.T) {
	dial, err := ProxyDialer(mustParseProxy(t, "socks5h://127.0.0.1:1"), func(context.Context, string, string) (net.Conn, error) {
		t.Fatal("the proxy was dialed for a bad request")
		return nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ network, addr, want string }{
		{"udp", "example.com:53", "a proxy carries TCP only"},
		{"tcp", "example.com", "want host:port"},
		{"tcp", "example.com:0", "not a number from 1 to 65535"},
		{"tcp", "exa mple.com:22", "spaces or control characters"},
		{"tcp", "example.com\r\nX: y:22", "spaces or control characters"},
		{"tcp", strings.Repeat("a", 256) + ":22", "too long for SOCKS5"},
	} {
		t.Run(tt.network+" "+tt.addr, func(t *testing.T) {
			_, err := dial(t.Context(), tt.network, tt.addr)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "transport: ") {
				t.Fatalf("error %v, want one with %q", err, tt.want)
			}
		})
	}
	if _, err := ProxyDialer(nil, nil); err == nil {
		t.Error("ProxyDialer(nil) succeeded")
	}
	if _, err := ProxyDialer(&url.URL{Scheme: "ftp", Host: "x:1"}, nil); err == nil {
		t.Error("ProxyDialer(ftp://) succeeded")
	}
}

func TestParseProxy(t *testing.T) {
	tests := []struct {
		in      string
		want    string // the URL's String; "" when an error is wanted
		wantErr string
	}{
		{in: "proxy.example.com", want: "http://proxy.example.com:1080"},
		{in: "proxy.example.com:3128", want: "http://proxy.example.com:3128"},
		{in: "http://proxy.example.com", want: "http://proxy.example.com:1080"},
		{in: "HTTP://Proxy.example.com:8080/", want: "http://Proxy.example.com:8080"},
		{in: "https://proxy.example.com", want: "https://proxy.example.com:443"},
		{in: "socks5://127.0.0.1", want: "socks5://127.0.0.1:1080"},
		{in: "socks5h://[::1]:9050", want: "socks5h://[::1]:9050"},
		{in: "alice:s3cret@proxy:3128", want: "http://alice:s3cret@proxy:3128"},
		{in: "http://al%40ce:p%3Ass%2F@proxy", want: "http://al%40ce:p%3Ass%2F@proxy:1080"},
		{in: "http://alice@proxy", want: "http://alice@proxy:1080"},
		{in: "", wantErr: "empty"},
		{in: "ftp://proxy", wantErr: `unknown scheme "ftp"`},
		{in: "socks4://proxy", wantErr: "socks4:// is not supported: use socks5:// or socks5h://"},
		{in: "http://", wantErr: "no host"},
		{in: "http://proxy:0", wantErr: `port "0" is not a number from 1 to 65535`},
		{in: "http://proxy:65536", wantErr: `port "65536"`},
		{in: "http://proxy:", wantErr: `port ""`},
		{in: "http://proxy:08", wantErr: `port "08"`},
		{in: "http://proxy/x", wantErr: "a path"},
		{in: "http://proxy?x=1", wantErr: "a query or fragment"},
		{in: "http://@proxy", wantErr: "empty user name"},
		{in: "http://:pw@proxy", wantErr: "empty user name"},
		{in: "http:proxy", wantErr: `invalid port ":proxy"`},
		{in: "http:x://proxy", wantErr: "no // after the scheme"},
		{in: "socks5://" + strings.Repeat("u", 256) + ":p@proxy", wantErr: "at most 255 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			u, err := ParseProxy(tt.in)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("ParseProxy = %v, want an error with %q", u, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) || !strings.HasPrefix(err.Error(), "transport: ") ||
					!strings.Contains(err.Error(), "want http://, https://, socks5:// or socks5h://") {
					t.Fatalf("error %q, want one with %q and what is accepted", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if u.String() != tt.want {
				t.Fatalf("ParseProxy = %q, want %q", u, tt.want)
			}
		})
	}
}

func TestParseProxyHidesPassword(t *testing.T) {
	for _, in := range []string{
		"http://alice:hunter2@proxy:99999",
		"alice:hunter2@proxy/path",
		"ftp://alice:hunter2@proxy",
		"http://alice:hunter2@proxy:1/x?y#z",
	} {
		_, err := ParseProxy(in)
		if err == nil {
			t.Fatalf("ParseProxy(%q) succeeded", in)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error shows the password: %v", err)
		}
	}
}

// fakeConn is a net.Conn that reads from r and discards what is written.
type fakeConn struct{ r io.Reader }

func (c fakeConn) Read(p []byte) (int, error)         { return c.r.Read(p) }
func (c fakeConn) Write(p []byte) (int, error)        { return len(p), nil }
func (c fakeConn) Close() error                       { return nil }
func (c fakeConn) LocalAddr() net.Addr                { return &net.TCPAddr{} }
func (c fakeConn) RemoteAddr() net.Addr               { return &net.TCPAddr{} }
func (c fakeConn) SetDeadline(t time.Time) error      { return nil }
func (c fakeConn) SetReadDeadline(t time.Time) error  { return nil }
func (c fakeConn) SetWriteDeadline(t time.Time) error { return nil }

// FuzzProxyResponse feeds arbitrary bytes to the CONNECT answer reader,
// through httpConnect: what the returned connection reads must be exactly
// what follows the header, and an error must not carry control bytes.
func FuzzProxyResponse(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 Connection established\r\n\r\n"))
	f.Add([]byte("HTTP/1.0 200 OK\r\nVia: x\r\n\r\nSSH-2.0-x\r\n"))
	f.Add([]byte("HTTP/1.1 200 OK\n\nrest"))
	f.Add([]byte("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n"))
	f.Add([]byte("HTTP/1.1 200\r\n\r\n"))
	f.Add([]byte("\x05\x00"))
	// (The 64 KiB limit is in TestReadProxyResponse: a seed that long
	// slows the fuzzer tenfold.)
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := httpConnect(context.Background(), fakeConn{bytes.NewReader(data)}, "proxy:3128", "host:22", nil)
		if err != nil {
			if strings.ContainsAny(err.Error(), "\r\n\x00") {
				t.Fatalf("error has control bytes: %q", err)
			}
			return
		}
		rest, err := io.ReadAll(c)
		if err != nil {
			t.Fatal(err)
		}
		if len(rest) > len(data) || !bytes.Equal(rest, data[len(data)-len(rest):]) {
			t.Fatalf("read %q after the header, which is not the end of the input %q", rest, data)
		}
		header := data[:len(data)-len(rest)]
		if len(header) > maxProxyHeader {
			t.Fatalf("header of %d bytes accepted", len(header))
		}
		if !bytes.HasSuffix(header, []byte("\n\n")) && !bytes.HasSuffix(header, []byte("\n\r\n")) {
			t.Fatalf("header %q does not end in a blank line", header)
		}
		if !bytes.HasPrefix(header, []byte("HTTP/")) || bytes.TrimLeft(header[9:], " ")[0] != '2' {
			t.Fatalf("header %q accepted as 2xx", header)
		}
	})
}

// FuzzSOCKS5Reply feeds arbitrary bytes to the SOCKS5 reply reader: it
// must read exactly one reply and nothing after.
func FuzzSOCKS5Reply(f *testing.F) {
	f.Add([]byte{5, 0, 0, 1, 127, 0, 0, 1, 0, 22})
	f.Add([]byte{5, 5, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 22, 'x'})
	f.Add([]byte{5, 0, 0, 3, 4, 'h', 'o', 's', 't', 0, 80, 'S', 'S', 'H'})
	f.Add([]byte{5, 0, 0, 9})
	f.Add([]byte{4, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bytes.NewReader(data)
		rep, err := readSOCKS5Reply(r)
		if err != nil {
			return
		}
		used := len(data) - r.Len()
		want := 4 + 2
		switch data[3] {
		case socks5IPv4:
			want += 4
		case socks5IPv6:
			want += 16
		case socks5Domain:
			want += 1 + int(data[4])
		default:
			t.Fatalf("address type %d accepted", data[3])
		}
		if used != want {
			t.Fatalf("read %d bytes of %x, want %d", used, data, want)
		}
		if data[0] != 5 || rep != data[1] {
			t.Fatalf("reply %d from %x", rep, data)
		}

		// The method and auth readers take two bytes, whatever they are.
		for _, read := range []func(io.Reader) error{
			func(r io.Reader) error { _, err := readSOCKS5Method(r); return err },
			func(r io.Reader) error { _, err := readSOCKS5AuthReply(r); return err },
		} {
			r := bytes.NewReader(data)
			if err := read(r); err == nil && len(data)-r.Len() != 2 {
				t.Fatalf("read %d bytes, want 2", len(data)-r.Len())
			}
		}
	})
}

// FuzzParseProxy checks that what ParseProxy accepts is a URL it reads
// back to itself, with a scheme it knows and a port.
func FuzzParseProxy(f *testing.F) {
	for _, s := range []string{
		"proxy", "proxy:3128", "http://u:p@proxy:8080/", "https://proxy", "socks5://[::1]:1080",
		"socks5h://a%40b:c%3Ad@host", "http://[fe80::1%25eth0]:1", "ftp://x", "http://x:99999", "://x", "http:///",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseProxy(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "transport: proxy ") {
				t.Fatalf("error %q without the package prefix", err)
			}
			return
		}
		switch u.Scheme {
		case proxyHTTP, proxyHTTPS, proxySOCKS5, proxySOCKS5H:
		default:
			t.Fatalf("ParseProxy(%q) scheme %q", s, u.Scheme)
		}
		if p, err := strconv.ParseUint(u.Port(), 10, 16); err != nil || p == 0 || u.Hostname() == "" {
			t.Fatalf("ParseProxy(%q) host %q", s, u.Host)
		}
		again, err := ParseProxy(u.String())
		if err != nil {
			t.Fatalf("ParseProxy(%q) = %q, which does not parse: %v", s, u, err)
		}
		if again.String() != u.String() || again.User.String() != u.User.String() {
			t.Fatalf("ParseProxy(%q) = %q, read back as %q", s, u, again)
		}
		if _, err := ProxyDialer(u, nil); err != nil {
			t.Fatalf("ProxyDialer(%q): %v", u, err)
		}
	})
}

// TestReadProxyResponse checks the reader on its own, over a small
// buffer, so that long lines span many reads.
func TestReadProxyResponse(t *testing.T) {
	tests := []struct {
		in       string
		code     int
		status   string
		rest     string
		wantFail string
	}{
		{in: "HTTP/1.1 200 Connection established\r\n\r\nrest", code: 200, status: "200 Connection established", rest: "rest"},
		{in: "HTTP/1.0 204\n\n", code: 204, status: "204"},
		{in: "HTTP/1.1 403 Forbidden\r\nX: " + strings.Repeat("y", 1000) + "\r\n\r\n", code: 403, status: "403 Forbidden"},
		{in: "HTTP/1.1 407 Bad\x00\x1b[31m\r\n\r\n", code: 407, status: "407 Bad??[31m"},
		{in: "", wantFail: "closed the connection without an answer"},
		{in: "HTTP/1.1 200 OK\r\n", wantFail: "unexpected EOF"},
		{in: "SSH-2.0-OpenSSH\r\n\r\n", wantFail: "not an HTTP response"},
		{in: "HTTP/1.1 2000 OK\r\n\r\n", wantFail: "not an HTTP response"},
		{in: "HTTP/1.1 099 OK\r\n\r\n", wantFail: "not an HTTP response"},
		{in: "HTTP/1.1 200 OK\r\nX: " + strings.Repeat("y", maxProxyHeader) + "\r\n\r\n", wantFail: "header longer than 65536 bytes"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%.30q", tt.in), func(t *testing.T) {
			br := bufio.NewReaderSize(strings.NewReader(tt.in), 16)
			code, status, err := readProxyResponse(br)
			if tt.wantFail != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantFail) {
					t.Fatalf("error %v, want %q", err, tt.wantFail)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			rest, _ := io.ReadAll(br)
			if code != tt.code || status != tt.status || string(rest) != tt.rest {
				t.Fatalf("got %d %q rest %q, want %d %q rest %q", code, status, rest, tt.code, tt.status, tt.rest)
			}
		})
	}
}
