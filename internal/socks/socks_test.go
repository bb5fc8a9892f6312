package socks

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/proxy"
)

// listen returns a loopback listener closed at the end of the test.
func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// startServer runs s on a loopback listener and returns its address. At the
// end of the test it closes s and checks that Serve returned net.ErrClosed.
func startServer(t *testing.T, s *Server) string {
	t.Helper()
	ln := listen(t)
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ln) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-errc; !errors.Is(err, net.ErrClosed) {
			t.Errorf("Serve returned %v, want net.ErrClosed", err)
		}
	})
	return ln.Addr().String()
}

// startTarget runs handle for every connection to a loopback listener and
// returns its address. Handlers are waited for at the end of the test.
func startTarget(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln := listen(t)
	var wg sync.WaitGroup
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
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

// echo copies what it reads back until EOF.
func echo(c net.Conn) { io.Copy(c, c) }

// payload returns n pseudo-random bytes, different for each seed.
func payload(n int, seed uint64) []byte {
	r := rand.New(rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}))
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return b
}

// bulkTarget reads until EOF, reports the digest of what it read on got,
// and only then sends reply: the reply can arrive only if the proxy
// half-closed rather than closed.
func bulkTarget(t *testing.T, reply []byte) (addr string, got chan [32]byte) {
	got = make(chan [32]byte, 16)
	addr = startTarget(t, func(c net.Conn) {
		h := sha256.New()
		if _, err := io.Copy(h, c); err != nil {
			t.Errorf("target read: %v", err)
			return
		}
		got <- [32]byte(h.Sum(nil))
		if _, err := c.Write(reply); err != nil {
			t.Errorf("target write: %v", err)
		}
	})
	return addr, got
}

// exchange sends send on c, half-closes, and returns the digest of all
// that c receives until EOF.
func exchange(c net.Conn, send []byte) ([32]byte, error) {
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(send)
		if err == nil {
			err = c.(interface{ CloseWrite() error }).CloseWrite()
		}
		werr <- err
	}()
	h := sha256.New()
	_, rerr := io.Copy(h, c)
	if err := <-werr; err != nil {
		return [32]byte{}, fmt.Errorf("write: %w", err)
	}
	if rerr != nil {
		return [32]byte{}, fmt.Errorf("read: %w", rerr)
	}
	return [32]byte(h.Sum(nil)), nil
}

const bulkSize = 16 << 20

func TestSOCKS5Transfer(t *testing.T) {
	for _, tc := range []struct {
		name  string
		creds Credentials
		auth  *proxy.Auth
		conns int
	}{
		{"noauth", nil, nil, 1},
		{"auth", StaticCredentials{"alice": "s3cret"}, &proxy.Auth{User: "alice", Password: "s3cret"}, 1},
		{"concurrent", nil, nil, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up, down := payload(bulkSize, 1), payload(bulkSize, 2)
			target, got := bulkTarget(t, down)
			addr := startServer(t, &Server{Credentials: tc.creds})
			d, err := proxy.SOCKS5("tcp", addr, tc.auth, proxy.Direct)
			if err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			for range tc.conns {
				wg.Go(func() {
					c, err := d.Dial("tcp", target)
					if err != nil {
						t.Errorf("dial through proxy: %v", err)
						return
					}
					defer c.Close()
					sum, err := exchange(c, up)
					if err != nil {
						t.Errorf("exchange: %v", err)
						return
					}
					if sum != sha256.Sum256(down) {
						t.Errorf("client received different bytes than the target sent")
					}
				})
			}
			wg.Wait()
			for range tc.conns {
				if sum := <-got; sum != sha256.Sum256(up) {
					t.Errorf("target received different bytes than the client sent")
				}
			}
		})
	}
}

func TestSOCKS5WrongPassword(t *testing.T) {
	target := startTarget(t, echo)
	addr := startServer(t, &Server{Credentials: StaticCredentials{"alice": "s3cret"}})
	for _, auth := range []*proxy.Auth{
		{User: "alice", Password: "wrong"},
		{User: "bob", Password: "s3cret"},
		nil,
	} {
		d, err := proxy.SOCKS5("tcp", addr, auth, proxy.Direct)
		if err != nil {
			t.Fatal(err)
		}
		if c, err := d.Dial("tcp", target); err == nil {
			c.Close()
			t.Errorf("auth %+v: dial succeeded, want failure", auth)
		}
	}
}

// rawSOCKS5 connects to the proxy at addr and asks for host:port, with
// username/password authentication if user is not empty. It returns the
// reply code and the connection.
func rawSOCKS5(t *testing.T, addr, host string, port uint16, user, password string) (byte, net.Conn) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	method := byte(methodNoAuth)
	if user != "" {
		method = methodUserPass
	}
	c.Write([]byte{5, 1, method})
	var resp [2]byte
	if _, err := io.ReadFull(c, resp[:]); err != nil {
		t.Fatalf("reading method choice: %v", err)
	}
	if resp != [2]byte{5, method} {
		t.Fatalf("method choice %x, want 05%02x", resp, method)
	}
	if user != "" {
		b := append([]byte{1, byte(len(user))}, user...)
		b = append(append(b, byte(len(password))), password...)
		c.Write(b)
		if _, err := io.ReadFull(c, resp[:]); err != nil {
			t.Fatalf("reading auth reply: %v", err)
		}
		if resp != [2]byte{1, 0} {
			t.Fatalf("auth reply %x, want 0100", resp)
		}
	}
	req := append([]byte{5, cmdConnect, 0, atypDomain, byte(len(host))}, host...)
	c.Write(binary.BigEndian.AppendUint16(req, port))
	br := bufio.NewReader(c)
	var hdr [4]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		t.Fatalf("reading reply: %v", err)
	}
	n := 4 + 2
	if hdr[3] == atypIPv6 {
		n = 16 + 2
	}
	if _, err := io.ReadFull(br, make([]byte, n)); err != nil {
		t.Fatalf("reading reply address: %v", err)
	}
	if br.Buffered() > 0 {
		t.Fatalf("%d bytes after the reply", br.Buffered())
	}
	return hdr[1], c
}

// failingDial returns a Dial function that fails with err.
func failingDial(err error) func(context.Context, string, string) (net.Conn, error) {
	return func(context.Context, string, string) (net.Conn, error) { return nil, err }
}

var dialFailures = []struct {
	name   string
	err    error
	socks5 byte
	status int
}{
	{"refused", fmt.Errorf("dial: %w", syscall.ECONNREFUSED), repConnectionRefused, http.StatusBadGateway},
	{"hostunreach", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.EHOSTUNREACH)}, repHostUnreachable, http.StatusBadGateway},
	{"netunreach", &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ENETUNREACH)}, repNetworkUnreachable, http.StatusBadGateway},
	{"dns", &net.DNSError{Err: "no such host", Name: "nowhere.invalid", IsNotFound: true}, repHostUnreachable, http.StatusBadGateway},
	{"notallowed", fmt.Errorf("tunnel: %w", ErrNotAllowed), repNotAllowed, http.StatusForbidden},
	{"timeout", fmt.Errorf("dial: %w", context.DeadlineExceeded), repTTLExpired, http.StatusGatewayTimeout},
	{"other", errors.New("boom"), repGeneralFailure, http.StatusBadGateway},
}

func TestDialFailureSOCKS5(t *testing.T) {
	for _, tc := range dialFailures {
		t.Run(tc.name, func(t *testing.T) {
			addr := startServer(t, &Server{Dial: failingDial(tc.err)})
			rep, _ := rawSOCKS5(t, addr, "example.com", 80, "", "")
			if rep != tc.socks5 {
				t.Errorf("reply %#x, want %#x", rep, tc.socks5)
			}
		})
	}
}

func TestDialFailureSOCKS4(t *testing.T) {
	for _, tc := range dialFailures {
		t.Run(tc.name, func(t *testing.T) {
			addr := startServer(t, &Server{Dial: failingDial(tc.err)})
			req := []byte{4, cmdConnect, 0, 80, 0, 0, 0, 1, 'u', 0}
			req = append(append(req, "example.com"...), 0)
			if got := rawSOCKS4(t, addr, req); got != socks4Rejected {
				t.Errorf("reply %#x, want %#x", got, socks4Rejected)
			}
		})
	}
}

// rawSOCKS4 sends req to the proxy at addr and returns the reply code.
func rawSOCKS4(t *testing.T, addr string, req []byte) byte {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	c.Write(req)
	var resp [8]byte
	if _, err := io.ReadFull(c, resp[:]); err != nil {
		t.Fatalf("reading SOCKS4 reply: %v", err)
	}
	if resp[0] != 0 {
		t.Errorf("reply version %d, want 0", resp[0])
	}
	return resp[1]
}

func TestDialFailureHTTP(t *testing.T) {
	for _, tc := range dialFailures {
		for _, req := range []string{
			"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
			"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n",
		} {
			method, _, _ := strings.Cut(req, " ")
			t.Run(tc.name+"/"+method, func(t *testing.T) {
				addr := startServer(t, &Server{Dial: failingDial(tc.err)})
				resp, body := rawHTTP(t, addr, req)
				if resp.StatusCode != tc.status {
					t.Errorf("status %d, want %d", resp.StatusCode, tc.status)
				}
				if strings.Count(body, "\n") != 1 || !strings.HasPrefix(body, "pinhole proxy: ") {
					t.Errorf("body %q, want one line saying why", body)
				}
			})
		}
	}
}

// rawHTTP sends req to the proxy at addr and returns the response and its
// body.
func rawHTTP(t *testing.T, addr, req string) (*http.Response, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return resp, string(body)
}

// TestRefusedTarget dials a real closed port with the default dialer.
func TestRefusedTarget(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	ln.Close()
	addr := startServer(t, &Server{})
	rep, _ := rawSOCKS5(t, addr, "127.0.0.1", port, "", "")
	if rep != repConnectionRefused {
		t.Errorf("reply %#x, want %#x (connection refused)", rep, repConnectionRefused)
	}
}

func TestSOCKS5ReplyAddress(t *testing.T) {
	target := startTarget(t, echo)
	host, port, _ := net.SplitHostPort(target)
	var p uint16
	fmt.Sscan(port, &p)
	var dialed net.Addr
	addr := startServer(t, &Server{Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		if err == nil {
			dialed = c.LocalAddr()
		}
		return c, err
	}})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	c.Write([]byte{5, 1, 0})
	ip := net.ParseIP(host).To4()
	req := append([]byte{5, 1, 0, atypIPv4}, ip...)
	c.Write(binary.BigEndian.AppendUint16(req, p))
	var resp [2 + 10]byte
	if _, err := io.ReadFull(c, resp[:]); err != nil {
		t.Fatal(err)
	}
	want := appendSOCKS5Reply([]byte{5, 0}, 0, dialed)
	if !bytes.Equal(resp[:], want) {
		t.Errorf("reply %x, want %x (bound address %v)", resp, want, dialed)
	}
	c.Write([]byte("ping"))
	var b [4]byte
	if _, err := io.ReadFull(c, b[:]); err != nil || string(b[:]) != "ping" {
		t.Errorf("echo: %q, %v", b, err)
	}
}

func TestUnsupported(t *testing.T) {
	for _, tc := range []struct {
		name string
		send []byte
		want []byte // the reply's first bytes
	}{
		{"bind", []byte{5, 1, 0, 5, cmdBind, 0, 1, 127, 0, 0, 1, 0, 80}, []byte{5, 0, 5, repCommandUnsupported}},
		{"atyp", []byte{5, 1, 0, 5, cmdConnect, 0, 9, 0, 0}, []byte{5, 0, 5, repAddressUnsupported}},
		{"nomethod", []byte{5, 1, 0x80}, []byte{5, methodNoAcceptable}},
		{"socks4bind", []byte{4, cmdBind, 0, 80, 127, 0, 0, 1, 0}, []byte{0, socks4Rejected}},
		{"socks4longuser", append(append([]byte{4, 1, 0, 80, 127, 0, 0, 1}, bytes.Repeat([]byte{'u'}, 300)...), 0), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := startServer(t, &Server{Dial: failingDial(errors.New("must not dial"))})
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			c.Write(tc.send)
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(got, tc.want) || (tc.want == nil && len(got) != 0) {
				t.Errorf("got %x, want it to start with %x", got, tc.want)
			}
		})
	}
}

func TestSOCKS4(t *testing.T) {
	target := startTarget(t, echo)
	_, port, _ := net.SplitHostPort(target)
	var p uint16
	fmt.Sscan(port, &p)
	for _, tc := range []struct {
		name  string
		creds Credentials
		req   []byte
		want  byte
	}{
		{"socks4", nil, append(binary.BigEndian.AppendUint16([]byte{4, 1}, p), 127, 0, 0, 1, 'u', 0), socks4Granted},
		{"socks4a", nil, append(binary.BigEndian.AppendUint16([]byte{4, 1}, p), 0, 0, 0, 1, 'u', 0, '1', '2', '7', '.', '0', '.', '0', '.', '1', 0), socks4Granted},
		{"auth", StaticCredentials{"a": "b"}, append(binary.BigEndian.AppendUint16([]byte{4, 1}, p), 127, 0, 0, 1, 0), socks4Rejected},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := startServer(t, &Server{Credentials: tc.creds})
			if got := rawSOCKS4(t, addr, tc.req); got != tc.want {
				t.Errorf("reply %#x, want %#x", got, tc.want)
			}
		})
	}
}

func TestHandshakeTimeout(t *testing.T) {
	for _, tc := range []struct {
		name string
		send string
	}{
		{"silent", ""},
		{"socks5partial", "\x05\x02\x00"},
		{"socks4partial", "\x04\x01\x00\x50\x7f\x00\x00\x01user"},
		{"httppartial", "CONNECT example.com:443 HTTP/1.1\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := startServer(t, &Server{
				HandshakeTimeout: 200 * time.Millisecond,
				Dial:             failingDial(errors.New("must not dial")),
			})
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, tc.send)
			// The proxy must hang up by itself; our own deadline is only
			// there so that a broken proxy fails rather than hangs.
			c.SetReadDeadline(time.Now().Add(30 * time.Second))
			_, err = io.ReadAll(c)
			if err != nil {
				t.Errorf("read: %v, want EOF from the proxy closing the connection", err)
			}
		})
	}
}

func TestHTTPForward(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, h := range []string{"Proxy-Authorization", "Proxy-Connection", "X-Hop"} {
			if v := r.Header.Get(h); v != "" {
				t.Errorf("origin got %s: %q", h, v)
			}
		}
		if r.Header.Get("X-End") != "kept" {
			t.Errorf("origin got X-End %q, want kept", r.Header.Get("X-End"))
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("origin reading body: %v", err)
		}
		w.Header().Set("Connection", "X-Reply-Hop")
		w.Header().Set("X-Reply-Hop", "1")
		fmt.Fprintf(w, "%s %s %d", r.Method, r.URL.Path, len(body))
	}))
	defer origin.Close()

	for _, tc := range []struct {
		name  string
		creds Credentials
		user  *url.Userinfo
	}{
		{"noauth", nil, nil},
		{"auth", StaticCredentials{"alice": "s3cret"}, url.UserPassword("alice", "s3cret")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := startServer(t, &Server{Credentials: tc.creds})
			proxyURL := &url.URL{Scheme: "http", Host: addr, User: tc.user}
			tr := &http.Transport{Proxy: http.ProxyURL(proxyURL)}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}

			big := payload(1<<20, 3)
			for i, rq := range []struct {
				method string
				body   io.Reader
				want   string
			}{
				{"GET", nil, "GET /a 0"},
				{"POST", bytes.NewReader(big), fmt.Sprintf("POST /a %d", len(big))},
				{"POST", io.MultiReader(strings.NewReader("chunked"), strings.NewReader(" body")), "POST /a 12"}, // no length: chunked
				{"GET", nil, "GET /a 0"},
			} {
				req, _ := http.NewRequest(rq.method, origin.URL+"/a", rq.body)
				req.Header.Set("Connection", "X-Hop")
				req.Header.Set("X-Hop", "1")
				req.Header.Set("X-End", "kept")
				var reused bool
				req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
					GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused },
				}))
				resp, err := client.Do(req)
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(body) != rq.want {
					t.Errorf("request %d: body %q, want %q", i, body, rq.want)
				}
				if resp.Header.Get("X-Reply-Hop") != "" {
					t.Errorf("request %d: hop-by-hop response header passed on", i)
				}
				if i > 0 && !reused {
					t.Errorf("request %d: proxy connection not kept alive", i)
				}
			}
		})
	}
}

func TestHTTPErrors(t *testing.T) {
	for _, tc := range []struct {
		name   string
		creds  Credentials
		req    string
		status int
		body   string
	}{
		{"originform", nil, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 400, "proxy"},
		{"https", nil, "GET https://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n", 400, "CONNECT"},
		{"ftp", nil, "GET ftp://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n", 400, "ftp"},
		{"connectnoport", nil, "CONNECT example.com HTTP/1.1\r\n\r\n", 400, "host:port"},
		{"garbage", nil, "\x00\x01\x02\r\n\r\n", 400, "malformed"},
		{"toolarge", nil, "GET http://example.com/ HTTP/1.1\r\nX: " + strings.Repeat("a", 70<<10) + "\r\n\r\n", 431, "too large"},
		{"noauth", StaticCredentials{"a": "b"}, "CONNECT example.com:443 HTTP/1.1\r\n\r\n", 407, "authentication"},
		{"wrongauth", StaticCredentials{"a": "b"}, "GET http://example.com/ HTTP/1.1\r\nProxy-Authorization: Basic YTpj\r\n\r\n", 407, "authentication"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := startServer(t, &Server{Credentials: tc.creds, Dial: failingDial(errors.New("must not dial"))})
			resp, body := rawHTTP(t, addr, tc.req)
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if !strings.Contains(body, tc.body) {
				t.Errorf("body %q does not mention %q", body, tc.body)
			}
			if tc.status == 407 && resp.Header.Get("Proxy-Authenticate") != `Basic realm="pinhole"` {
				t.Errorf("Proxy-Authenticate %q", resp.Header.Get("Proxy-Authenticate"))
			}
		})
	}
}

// TestHTTPConnectEarlyData: bytes sent right behind the CONNECT header, in
// the same write, must reach the target.
func TestHTTPConnectEarlyData(t *testing.T) {
	target := startTarget(t, echo)
	addr := startServer(t, &Server{Credentials: StaticCredentials{"a": "b"}})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %[1]s\r\nProxy-Authorization: Basic YTpi\r\n\r\nearly bytes", target)
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	want := "HTTP/1.1 200 Connection established\r\n\r\nearly bytes"
	if string(got) != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestClose: Close ends relays in progress and waits for them, and the
// Server refuses work afterwards.
func TestClose(t *testing.T) {
	target := startTarget(t, echo)
	s := &Server{}
	ln := listen(t)
	serveErr := make(chan error, 1)
	go func() { serveErr <- s.Serve(ln) }()

	d, err := proxy.SOCKS5("tcp", ln.Addr().String(), nil, proxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	const n = 3
	var clients []net.Conn
	for range n {
		c, err := d.Dial("tcp", target)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		io.WriteString(c, "x") // make sure the relay runs
		if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	// One more through ServeConn, which must return once Close is done.
	a, b := net.Pipe()
	defer a.Close()
	connDone := make(chan error, 1)
	go func() { connDone <- s.ServeConn(context.Background(), b) }()
	a.Write([]byte{5}) // so that the handshake has begun

	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Close has waited for ServeConn's work; its return and the send
	// above may still be a moment behind, so wait for them, boundedly.
	select {
	case <-connDone:
	case <-time.After(10 * time.Second):
		t.Error("ServeConn still running 10 s after Close returned")
	}
	if err := <-serveErr; !errors.Is(err, net.ErrClosed) {
		t.Errorf("Serve: %v, want net.ErrClosed", err)
	}
	for i, c := range clients {
		if _, err := io.ReadAll(c); err != nil {
			t.Errorf("client %d: %v, want EOF", i, err)
		}
	}
	if err := s.ServeConn(context.Background(), b); !errors.Is(err, net.ErrClosed) {
		t.Errorf("ServeConn after Close: %v, want net.ErrClosed", err)
	}
	if err := s.Serve(listen(t)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Serve after Close: %v, want net.ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestServeConnContext: cancelling the context of ServeConn ends it.
func TestServeConnContext(t *testing.T) {
	s := &Server{}
	defer s.Close()
	a, b := net.Pipe()
	defer a.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ServeConn(ctx, b) }()
	cancel()
	if err := <-done; err == nil {
		t.Error("ServeConn returned nil for a cancelled client that sent nothing")
	}
}

// TestHTTPExpectContinue: a client that waits for 100 Continue before it
// sends its body gets it from the proxy.
func TestHTTPExpectContinue(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "got %s", b)
	}))
	defer origin.Close()
	addr := startServer(t, &Server{})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(c, "POST %s/ HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n", origin.URL)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusContinue {
		t.Fatalf("status %d, want 100", resp.StatusCode)
	}
	io.WriteString(c, "body")
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "got body" {
		t.Errorf("body %q, want %q", b, "got body")
	}
}

// TestShutdown: a relay in flight when Shutdown starts carries on to its
// end, a new client is refused at once, and Shutdown returns when the
// relay is done; one that outlasts ctx is cut.
func TestShutdown(t *testing.T) {
	target := startTarget(t, echo)
	s := &Server{}
	ln := listen(t)
	go s.Serve(ln)
	d, err := proxy.SOCKS5("tcp", ln.Addr().String(), nil, proxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	c, err := d.Dial("tcp", target)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))

	done := make(chan error, 1)
	go func() { done <- s.Shutdown(context.Background()) }()
	// Shutdown has closed the listener once a new client is refused.
	for i := 0; ; i++ {
		nc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			break
		}
		nc.Close()
		if i == 100 {
			t.Fatal("the listener still accepts 1 s into Shutdown")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned (%v) with a relay still open", err)
	default:
	}
	// The open relay still works both ways.
	msg := bytes.Repeat([]byte("drain "), 10000)
	go c.Write(msg)
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("relay during Shutdown: %v", err)
	}
	c.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Shutdown = %v after the last client left", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return after the last client left")
	}

	// A client that stays past ctx is cut.
	s2 := &Server{}
	ln2 := listen(t)
	go s2.Serve(ln2)
	d2, _ := proxy.SOCKS5("tcp", ln2.Addr().String(), nil, proxy.Direct)
	c2, err := d2.Dial("tcp", target)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s2.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v with a client that stays, want DeadlineExceeded", err)
	}
	c2.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c2.Read(make([]byte, 1)); err == nil {
		t.Fatal("the client that stayed still reads after Shutdown gave up")
	}
}

// TestShutdownClosesIdle: a kept-alive HTTP proxy connection waiting for
// its next request, and a client that has not sent its request, do not
// hold Shutdown up.
func TestShutdownClosesIdle(t *testing.T) {
	s := &Server{}
	ln := listen(t)
	go s.Serve(ln)
	silent, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	origin := startTarget(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			req.Body.Close()
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	kept, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Close()
	fmt.Fprintf(kept, "GET http://%s/ HTTP/1.1\r\nHost: %s\r\n\r\n", origin, origin)
	kept.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(kept), nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	for s.active() != 2 { // silent and kept; both now idle
		time.Sleep(5 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown = %v with only idle clients", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Shutdown took %v with only idle clients", d)
	}
}
