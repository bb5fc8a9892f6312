package vhost

import (
	"bufio"
	"bytes"
	"fmt"
	"github.com/pinhole-dev/pinhole/internal/httphop"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// front serves r over HTTP on loopback, with the Dispatcher's header
// limit, and returns its address.
func front(t *testing.T, r *Router) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: r, MaxHeaderBytes: 64 << 10, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// lightName is a router with the name myapp, whose streams serve
// answers; it returns the front's address and a count of the streams
// the service was given.
func lightName(t *testing.T, serve func(c net.Conn)) (string, *atomic.Int32, *nameListener) {
	t.Helper()
	r := &Router{Domain: "example.test", UpstreamTimeout: 2 * time.Second}
	ln, err := r.ListenName("myapp", 80, "alice", nil)
	if err != nil {
		t.Fatal(err)
	}
	var streams atomic.Int32
	var wg sync.WaitGroup
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			streams.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				serve(c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return front(t, r), &streams, ln.(*nameListener)
}

// goService serves h on each stream, as a Go service behind a tunnel.
func goService(h http.HandlerFunc) func(net.Conn) {
	return func(c net.Conn) {
		srv := &http.Server{Handler: h}
		srv.Serve(&oneConn{c: c, done: make(chan struct{})})
	}
}

// oneConn is a listener of one connection, done when it closes.
type oneConn struct {
	c    net.Conn
	done chan struct{}
	once sync.Once
}

func (l *oneConn) Accept() (net.Conn, error) {
	if c := l.c; c != nil {
		l.c = nil
		return &closeConn{Conn: c, l: l}, nil
	}
	<-l.done
	return nil, net.ErrClosed
}
func (l *oneConn) Close() error   { l.once.Do(func() { close(l.done) }); return nil }
func (l *oneConn) Addr() net.Addr { return nameAddr("one") }

type closeConn struct {
	net.Conn
	l *oneConn
}

func (c *closeConn) Close() error { c.l.Close(); return c.Conn.Close() }

// rawService answers each request head it reads on a stream with what
// answer returns, written raw; a nil answer closes the stream, and so
// does an answer that starts with a space (the space not sent).
func rawService(answer func(req *http.Request, body []byte) []byte) func(net.Conn) {
	return func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			body, _ := io.ReadAll(req.Body)
			out := answer(req, body)
			if out == nil {
				return
			}
			last := out[0] == ' '
			if last {
				out = out[1:]
			}
			if _, err := c.Write(out); err != nil || last {
				return
			}
		}
	}
}

// exchange writes raw on a new connection to addr and reads n answers.
func exchange(t *testing.T, addr, raw string, n int) ([]*http.Response, []string, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var res []*http.Response
	var bodies []string
	for i := 0; i < n; i++ {
		// Each answer is to a GET unless raw says HEAD first.
		method := "GET"
		if strings.HasPrefix(raw, "HEAD") && i == 0 {
			method = "HEAD"
		}
		r, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			return res, bodies, err
		}
		b, err := io.ReadAll(r.Body)
		res, bodies = append(res, r), append(bodies, string(b))
		if err != nil {
			return res, bodies, err
		}
	}
	return res, bodies, nil
}

func TestLightPipelined(t *testing.T) {
	addr, streams, _ := lightName(t, goService(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s %s %s", r.Method, r.RequestURI, r.Host, r.Header.Get("X-Forwarded-For"))
	}))
	raw := "GET /a?x=1 HTTP/1.1\r\nHost: myapp.example.test\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n" +
		"GET /b HTTP/1.1\r\nHost: MyApp.example.test\r\n\r\n" +
		"GET http://myapp.example.test/c HTTP/1.1\r\nHost: myapp.example.test\r\n\r\n"
	res, bodies, err := exchange(t, addr, raw, 3)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"GET /a?x=1 myapp.example.test 127.0.0.1", "GET /b myapp.example.test 127.0.0.1", "GET /c myapp.example.test 127.0.0.1"}
	for i := range want {
		if res[i].StatusCode != 200 || bodies[i] != want[i] {
			t.Errorf("answer %d: %d %q, want 200 %q", i, res[i].StatusCode, bodies[i], want[i])
		}
	}
	if n := streams.Load(); n != 1 {
		t.Errorf("%d streams to the service for three requests one after another, want 1 kept open", n)
	}
}

func TestLightChunkedBothWays(t *testing.T) {
	addr, _, _ := lightName(t, goService(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		// Flushed in two pieces and of no stated length: chunked.
		fmt.Fprintf(w, "%s cl=%d te=%v body=%q;", r.Method, r.ContentLength, r.TransferEncoding, b)
		w.(http.Flusher).Flush()
		io.WriteString(w, "end")
	}))
	for _, tc := range []struct{ name, raw, want string }{
		{"GET", "GET / HTTP/1.1\r\nHost: myapp.example.test\r\n\r\n", `GET cl=0 te=[] body="";end`},
		{"POST with a length", "POST / HTTP/1.1\r\nHost: myapp.example.test\r\nContent-Length: 5\r\n\r\nhello", `POST cl=5 te=[] body="hello";end`},
		{"POST chunked", "POST / HTTP/1.1\r\nHost: myapp.example.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n", `POST cl=-1 te=[chunked] body="hello";end`},
		{"POST empty", "POST / HTTP/1.1\r\nHost: myapp.example.test\r\n\r\n", `POST cl=0 te=[] body="";end`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, bodies, err := exchange(t, addr, tc.raw, 1)
			if err != nil {
				t.Fatal(err)
			}
			if res[0].StatusCode != 200 || bodies[0] != tc.want || len(res[0].TransferEncoding) != 1 {
				t.Errorf("%d %q %v, want 200 %q chunked", res[0].StatusCode, bodies[0], res[0].TransferEncoding, tc.want)
			}
		})
	}
}

func TestLightTrailers(t *testing.T) {
	addr, _, _ := lightName(t, rawService(func(*http.Request, []byte) []byte {
		return []byte("HTTP/1.1 200 OK\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-Sum: 42\r\n\r\n")
	}))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: myapp.example.test\r\n\r\n")
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(res.Body)
	if err != nil || string(b) != "ok" || res.Trailer.Get("X-Sum") != "42" {
		t.Errorf("%q %v, trailer %v: want \"ok\" and X-Sum: 42 after it", b, err, res.Trailer)
	}
}

func TestLightHEAD(t *testing.T) {
	addr, streams, _ := lightName(t, rawService(func(req *http.Request, _ []byte) []byte {
		if req.Method == "HEAD" {
			return []byte("HTTP/1.1 200 OK\r\nContent-Length: 10\r\nContent-Type: text/plain\r\n\r\n")
		}
		return []byte("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nget")
	}))
	res, bodies, err := exchange(t, addr, "HEAD / HTTP/1.1\r\nHost: myapp.example.test\r\n\r\nGET / HTTP/1.1\r\nHost: myapp.example.test\r\n\r\n", 2)
	if err != nil {
		t.Fatal(err)
	}
	if res[0].StatusCode != 200 || res[0].ContentLength != 10 || bodies[0] != "" {
		t.Errorf("HEAD: %d length %d body %q, want 200, 10, none", res[0].StatusCode, res[0].ContentLength, bodies[0])
	}
	if res[1].StatusCode != 200 || bodies[1] != "get" {
		t.Errorf("GET after HEAD: %d %q", res[1].StatusCode, bodies[1])
	}
	if n := streams.Load(); n != 1 {
		t.Errorf("%d streams, want 1: HEAD's answer has no body to wait for", n)
	}
}

func TestLightInformational(t *testing.T) {
	addr, _, _ := lightName(t, rawService(func(req *http.Request, body []byte) []byte {
		if req.Header.Get("Expect") != "" {
			return []byte("HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n")
		}
		return []byte("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n" +
			"HTTP/1.1 200 OK\r\nContent-Length: " + fmt.Sprint(len(body)+2) + "\r\n\r\nok" + string(body))
	}))
	var hints []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		hints = append(hints, fmt.Sprint(code, h["Link"]))
		return nil
	}}
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	req.Host = "myapp.example.test"
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || string(b) != "ok" || len(hints) != 1 || hints[0] != "103 [</style.css>; rel=preload]" {
		t.Errorf("%d %q, 1xx %q: want 200 \"ok\" after one 103 with its Link (100 Continue kept back)", res.StatusCode, b, hints)
	}
	// Expect: 100-continue goes through ReverseProxy, to the service
	// with the header.
	tr := &http.Transport{ExpectContinueTimeout: time.Second}
	defer tr.CloseIdleConnections()
	req, _ = http.NewRequest("PUT", "http://"+addr+"/", strings.NewReader("data"))
	req.Host = "myapp.example.test"
	req.Header.Set("Expect", "100-continue")
	res, err = (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 417 {
		t.Errorf("Expect: 100-continue: %d, want the service's 417", res.StatusCode)
	}
}

func TestLightServiceBreaksOff(t *testing.T) {
	var n atomic.Int32
	addr, _, l := lightName(t, rawService(func(req *http.Request, _ []byte) []byte {
		switch req.URL.Path {
		case "/short": // says 100 bytes, sends 10, closes
			return []byte(" HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
		case "/chunk": // a chunk, then closes
			return []byte(" HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
		case "/none":
			return nil
		case "/head":
			return []byte(" HTTP/1.1 200 OK\r\nContent-")
		case "/huge":
			return append([]byte("HTTP/1.1 200 OK\r\nX: "), bytes.Repeat([]byte("a"), 2<<20)...)
		}
		n.Add(1)
		return []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	}))
	for _, path := range []string{"/short", "/chunk"} {
		// Broken off: the public connection closes before the answer is
		// whole (with its header still buffered, before it is sent).
		_, bodies, err := exchange(t, addr, "GET "+path+" HTTP/1.1\r\nHost: myapp.example.test\r\n\r\n", 1)
		if err == nil {
			t.Errorf("%s: a whole answer %q, want it broken off", path, bodies)
		}
	}
	for _, path := range []string{"/none", "/head", "/huge"} {
		res, bodies, err := exchange(t, addr, "GET "+path+" HTTP/1.1\r\nHost: myapp.example.test\r\n\r\n", 1)
		if err != nil || res[0].StatusCode != 502 || !strings.Contains(bodies[0], "did not answer") {
			t.Errorf("%s: %v, want 502", path, err)
		}
	}
	// Nothing else is disturbed, and no stream is left counted.
	res, bodies, err := exchange(t, addr, "GET / HTTP/1.1\r\nHost: myapp.example.test\r\n\r\n", 1)
	if err != nil || res[0].StatusCode != 200 || bodies[0] != "ok" || n.Load() != 1 {
		t.Errorf("after them: %v %q", err, bodies)
	}
	l.streams.mu.Lock()
	open, idle := l.streams.open, len(l.streams.idle)
	l.streams.mu.Unlock()
	if open != idle || open > 1 {
		t.Errorf("%d streams counted open, %d of them idle: want only the last one, idle", open, idle)
	}
}

func TestLightStaleStream(t *testing.T) {
	// A service that closes each connection after its answer, without
	// saying so: the kept stream is dead when the next request takes it,
	// and a GET is sent again on a new one.
	addr, streams, _ := lightName(t, func(c net.Conn) {
		rawService(func(*http.Request, []byte) []byte { return []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") })(&onceConn{Conn: c})
	})
	res, bodies, err := exchange(t, addr, "GET / HTTP/1.1\r\nHost: myapp.example.test\r\n\r\nGET / HTTP/1.1\r\nHost: myapp.example.test\r\n\r\n", 2)
	if err != nil || res[0].StatusCode != 200 || res[1].StatusCode != 200 || bodies[1] != "ok" {
		t.Fatalf("%v %q", err, bodies)
	}
	if n := streams.Load(); n != 2 {
		t.Errorf("%d streams, want 2", n)
	}
	// A POST is not sent twice.
	res, _, err = exchange(t, addr, "GET / HTTP/1.1\r\nHost: myapp.example.test\r\n\r\nPOST / HTTP/1.1\r\nHost: myapp.example.test\r\nContent-Length: 1\r\n\r\nx", 2)
	if err != nil || res[1].StatusCode != 502 {
		t.Errorf("POST on a dead stream: %v, want 502", err)
	}
}

// onceConn ends after its first write.
type onceConn struct{ net.Conn }

func (c *onceConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.Conn.Close()
	return n, err
}

func TestLightMalformed(t *testing.T) {
	var seen atomic.Int32
	addr, _, _ := lightName(t, goService(func(w http.ResponseWriter, r *http.Request) {
		seen.Add(1)
		io.WriteString(w, "ok")
	}))
	for _, raw := range []string{
		"GET / HTTP/1.1\r\nHost: myapp.example.test\r\nBad Header\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: myapp.example.test\r\nX: a\x00b\r\n\r\n",
		"GET /\x7f HTTP/1.1\r\nHost: myapp.example.test\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: myapp.example.test\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
		"GET / HTTP/1.1\r\nHost: myapp.example.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: myapp.example.test\r\nX: " + strings.Repeat("a", 70<<10) + "\r\n\r\n",
	} {
		res, _, err := exchange(t, addr, raw, 1)
		if err != nil || (res[0].StatusCode != 400 && res[0].StatusCode != 431 && res[0].StatusCode != 501) {
			t.Errorf("%.60q: %v, want a 4xx or 501 from the front", raw, err)
		}
	}
	if n := seen.Load(); n != 0 {
		t.Errorf("the service saw %d of the malformed requests", n)
	}
	res, bodies, err := exchange(t, addr, "GET / HTTP/1.1\r\nHost: myapp.example.test\r\n\r\n", 1)
	if err != nil || res[0].StatusCode != 200 || bodies[0] != "ok" {
		t.Errorf("a good request after them: %v %q", err, bodies)
	}
}

// TestLightSmuggling: a request with both Content-Length and
// Transfer-Encoding is read by its chunked framing (net/http's server
// drops the Content-Length, RFC 9112 section 6.3), and the service gets
// it framed once, by the router: never both headers, never a second
// request out of the first's body.
func TestLightSmuggling(t *testing.T) {
	type got struct {
		method, path string
		cl           []string
		te           []string
		body         string
	}
	var mu sync.Mutex
	var seen []got
	addr, _, _ := lightName(t, rawService(func(req *http.Request, body []byte) []byte {
		mu.Lock()
		seen = append(seen, got{req.Method, req.URL.Path, req.Header["Content-Length"], req.TransferEncoding, string(body)})
		mu.Unlock()
		return []byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	}))
	// TE.CL: a front that believed Content-Length would pass on
	// "8\r\nSMUGG"... as a second request.
	raw := "POST /a HTTP/1.1\r\nHost: myapp.example.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"1c\r\nGET /smuggled HTTP/1.1\r\nX: y\r\n0\r\n\r\n"
	res, _, err := exchange(t, addr, raw, 1)
	if err != nil || res[0].StatusCode != 200 {
		t.Fatalf("%v", err)
	}
	// CL.TE: "X" after the empty chunked body is the start of a next
	// request on the public connection, malformed: 400 there, nothing
	// at the service.
	raw = "POST /b HTTP/1.1\r\nHost: myapp.example.test\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX\r\n\r\n"
	res, _, err = exchange(t, addr, raw, 2)
	if err != nil || res[0].StatusCode != 200 || res[1].StatusCode != 400 {
		t.Errorf("CL.TE: %v, want 200 and then 400", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 2 {
		t.Fatalf("the service saw %d requests, want 2: %+v", len(seen), seen)
	}
	want := []got{
		{method: "POST", path: "/a", body: "GET /smuggled HTTP/1.1\r\nX: y"},
		{method: "POST", path: "/b", body: ""},
	}
	for i, w := range want {
		g := seen[i]
		if g.method != w.method || g.path != w.path || g.body != w.body || (len(g.cl) > 0 && len(g.te) > 0) {
			t.Errorf("request %d at the service: %+v, want %s %s with body %q, framed by one header", i, g, w.method, w.path, w.body)
		}
	}
}

func TestLightManyAtOnce(t *testing.T) {
	addr, streams, _ := lightName(t, goService(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.URL.Path)
	}))
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	errs := make(chan error, 16*20)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				path := fmt.Sprintf("/%d/%d", i, j)
				req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
				req.Host = "myapp.example.test"
				res, err := client.Do(req)
				if err != nil {
					errs <- err
					return
				}
				b, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if string(b) != path {
					errs <- fmt.Errorf("%s: got %q", path, b)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := streams.Load(); n > 16 {
		t.Errorf("%d streams for 16 clients, want at most 16", n)
	}
}

// FuzzLightAnswer: whatever a service answers, the router answers the
// public client without a panic (but the one that aborts an answer
// broken off), with the service's status or 502.
func FuzzLightAnswer(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-T: 1\r\n\r\n",
		"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\nuntil the end",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nConnection: X-Secret\r\nX-Secret: 1\r\n\r\n",
		"garbage",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, answer string) {
		r := &Router{Domain: "example.test", UpstreamTimeout: 2 * time.Second}
		ln, err := r.ListenName("myapp", 80, "alice", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			go io.Copy(io.Discard, c)
			io.WriteString(c, answer)
		}()
		req := httptest.NewRequest("GET", "/", nil)
		req.Host = "myapp.example.test"
		w := &finalRecorder{httptest.NewRecorder()}
		func() {
			defer func() {
				if p := recover(); p != nil && p != http.ErrAbortHandler {
					t.Fatalf("%q: panic %v", answer, p)
				}
			}()
			r.ServeHTTP(w, req)
		}()
		if w.Code < 200 || w.Code > 599 {
			t.Fatalf("%q: status %d", answer, w.Code)
		}
		hop := []string{"Connection", "Keep-Alive", "Transfer-Encoding", "Upgrade", "Trailer"}
		if res, err := http.ReadResponse(bufio.NewReader(strings.NewReader(answer)), req); err == nil {
			for _, v := range res.Header["Connection"] {
				for _, f := range strings.Split(v, ",") {
					hop = append(hop, strings.TrimSpace(f))
				}
			}
		}
		for _, h := range hop {
			if h != "" && w.Header().Get(h) != "" && !strings.EqualFold(h, "Content-Length") {
				t.Fatalf("%q: hop-by-hop header %s passed on: %v", answer, h, w.Header())
			}
		}
	})
}

// FuzzWriteHead: whatever request net/http's server lets through, what
// the light way sends the service is one request, read back as the same
// method, target and body, with nothing after it.
func FuzzWriteHead(f *testing.F) {
	for _, s := range []string{
		"GET /a?b HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: X-A, keep-alive\r\nX-A: 1\r\n\r\nabc",
		"GET http://x/%2F/y HTTP/1.1\r\nHost: x\r\nTe: trailers\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
		"DELETE //x HTTP/1.0\r\nHost: x\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		in, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil || !lightOK(in) {
			return
		}
		body, err := io.ReadAll(in.Body)
		if err != nil || int64(len(body)) != in.ContentLength {
			return
		}
		in.RemoteAddr = "192.0.2.1:1"
		if len(raw)%2 == 1 {
			in.Header.Set("Host", "other.example") // as a server that left it in the map
		}
		var out bytes.Buffer
		bw := bufio.NewWriter(&out)
		writeHead(bw, in, forwarded{host: "myapp.example.test", public: "myapp.example.test", client: "192.0.2.1", proto: "http", forwarded: "for=192.0.2.1"})
		bw.Write(body)
		bw.Flush()
		wire := out.String()
		br := bufio.NewReader(&out)
		got, err := http.ReadRequest(br)
		if err != nil {
			t.Fatalf("%q became %q, unreadable: %v", raw, wire, err)
		}
		gotBody, err := io.ReadAll(got.Body)
		if err != nil || !bytes.Equal(gotBody, body) || got.Method != in.Method || got.Host != "myapp.example.test" || strings.Count(strings.ToLower(wire), "\r\nhost:") != 1 {
			t.Fatalf("%q became %q: %s %q host %q, %v", raw, wire, got.Method, gotBody, got.Host, err)
		}
		if br.Buffered() != 0 {
			t.Fatalf("%q became %q: bytes after the request", raw, wire)
		}
		for _, h := range []string{"Connection", "Transfer-Encoding", "Upgrade", "Keep-Alive"} {
			if got.Header[h] != nil {
				t.Fatalf("%q: %s passed on", raw, h)
			}
		}
		if xff := got.Header["X-Forwarded-For"]; len(xff) != 1 || xff[0] != "192.0.2.1" {
			t.Fatalf("%q: X-Forwarded-For %q", raw, xff)
		}
		for _, h := range httphop.Named(in.Header) {
			if h != "Host" && got.Header[h] != nil && !strings.HasPrefix(h, "X-Forwarded") && h != "Forwarded" {
				t.Fatalf("%q: %s, named by Connection, passed on", raw, h)
			}
		}
	})
}

// finalRecorder records the final answer, not 1xx ones.
type finalRecorder struct{ *httptest.ResponseRecorder }

func (w *finalRecorder) WriteHeader(code int) {
	if code >= 200 {
		w.ResponseRecorder.WriteHeader(code)
	}
}
