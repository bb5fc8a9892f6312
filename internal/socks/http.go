package socks

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"github.com/pinhole-dev/pinhole/internal/httphop"
	"io"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// httpError is a request the proxy answers with an error status.
type httpError struct {
	code int
	msg  string // one line for the client, without the status
}

func (e *httpError) Error() string {
	return fmt.Sprintf("socks: HTTP %d: %s", e.code, e.msg)
}

// readHTTPRequest reads one proxy request: CONNECT host:port, or an
// absolute-form http:// request. It returns io.EOF if the client closed the
// connection before sending anything, and an *httpError for a request the
// client should be told is wrong.
func readHTTPRequest(r *bufio.Reader) (*http.Request, error) {
	req, err := http.ReadRequest(r)
	switch {
	case err == nil:
	case errors.Is(err, errTooLarge):
		return nil, &httpError{http.StatusRequestHeaderFieldsTooLarge, "request header too large"}
	case err == io.EOF:
		return nil, io.EOF
	case errors.Is(err, io.ErrUnexpectedEOF), isNetError(err):
		return nil, fmt.Errorf("socks: reading HTTP request: %w", err)
	default:
		return nil, &httpError{http.StatusBadRequest, "malformed HTTP request: " + err.Error()}
	}
	if req.Method == http.MethodConnect {
		if _, err := splitTarget(req.URL.Host); err != nil || req.URL.Path != "" {
			return nil, &httpError{http.StatusBadRequest, "CONNECT needs a target as host:port"}
		}
		return req, nil
	}
	if !req.URL.IsAbs() {
		return nil, &httpError{http.StatusBadRequest, "this is a proxy (SOCKS4/4a/5 and HTTP), not a web server: configure it as the proxy of your client instead of opening it as a page"}
	}
	switch req.URL.Scheme {
	case "http":
	case "https":
		return nil, &httpError{http.StatusBadRequest, "https:// goes through the proxy with CONNECT: configure this as the proxy for https too"}
	default:
		return nil, &httpError{http.StatusBadRequest, fmt.Sprintf("scheme %q is not supported: only http:// requests and CONNECT", req.URL.Scheme)}
	}
	if req.URL.Host == "" {
		return nil, &httpError{http.StatusBadRequest, "request URL has no host"}
	}
	return req, nil
}

func isNetError(err error) bool {
	var ne net.Error
	return errors.As(err, &ne)
}

// splitTarget checks that hostport is host:port with a non-zero port and
// returns the host.
func splitTarget(hostport string) (string, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return "", fmt.Errorf("socks: bad target %q", hostport)
	}
	return checkHostName(host)
}

// http answers an HTTP proxy client: one CONNECT, or a series of
// absolute-form requests on a kept-alive connection.
func (hs *handshake) http() error {
	for first := true; ; first = false {
		if !first {
			if !hs.s.setIdle(hs.c, true) {
				return nil // shutting down: no next request
			}
			hs.c.SetDeadline(time.Now().Add(hs.timeout))
			hs.lr.n = maxHandshake
		}
		req, err := readHTTPRequest(hs.br)
		if err != nil {
			if he, ok := errors.AsType[*httpError](err); ok {
				writeHTTPError(hs.c, he.code, he.msg, nil)
				return err
			}
			if !first {
				return nil // an idle kept-alive connection ended
			}
			return err
		}
		hs.s.setIdle(hs.c, false)
		hs.c.SetDeadline(time.Time{})
		hs.lr.n = math.MaxInt64 // the body has no cap
		if !hs.httpAuthorized(req) {
			writeHTTPError(hs.c, http.StatusProxyAuthRequired, "proxy authentication required: give the client a proxy user name and password",
				http.Header{"Proxy-Authenticate": {`Basic realm="pinhole"`}})
			return errors.New("socks: HTTP proxy authentication failed")
		}
		if req.Method == http.MethodConnect {
			return hs.httpConnect(req)
		}
		keep, err := hs.httpForward(req)
		if err != nil || !keep {
			return err
		}
	}
}

// httpAuthorized reports whether req carries valid Basic proxy credentials,
// or none are needed.
func (hs *handshake) httpAuthorized(req *http.Request) bool {
	if hs.s.Credentials == nil {
		return true
	}
	scheme, enc, ok := strings.Cut(req.Header.Get("Proxy-Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Basic") {
		return false
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(enc))
	if err != nil {
		return false
	}
	user, password, ok := strings.Cut(string(raw), ":")
	return ok && hs.s.Credentials.Valid(user, password)
}

// httpConnect answers CONNECT: dial, 200, then raw bytes both ways.
func (hs *handshake) httpConnect(req *http.Request) error {
	addr := req.URL.Host
	t, err := hs.connect(addr)
	if err != nil {
		code, why := httpStatus(classify(err))
		writeHTTPError(hs.c, code, fmt.Sprintf("could not connect to %s: %s", addr, why), nil)
		return err
	}
	if _, err := io.WriteString(hs.c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		t.Close()
		return fmt.Errorf("socks: writing to client: %w", err)
	}
	return hs.relay(t, addr)
}

// httpForward sends an absolute-form request on to its origin server and
// the response back. keep reports whether the client connection can carry
// another request.
func (hs *handshake) httpForward(req *http.Request) (keep bool, err error) {
	out := req.Clone(hs.ctx)
	out.RequestURI = ""
	out.Close = false
	httphop.Remove(out.Header)
	var body *clientBody
	if req.Body != nil && req.Body != http.NoBody {
		body = &clientBody{r: req.Body}
		out.Body = body
		if strings.EqualFold(out.Header.Get("Expect"), "100-continue") {
			// Answer for the origin: waiting for it to ask for the body
			// would need a second writer on the client connection.
			out.Header.Del("Expect")
			if _, err := io.WriteString(hs.c, "HTTP/1.1 100 Continue\r\n\r\n"); err != nil {
				return false, fmt.Errorf("socks: writing to client: %w", err)
			}
		}
	}
	resp, err := hs.s.httpTransport().RoundTrip(out)
	if err != nil {
		code, why := httpStatus(classify(err))
		writeHTTPError(hs.c, code, fmt.Sprintf("could not get %s: %s", req.URL.Redacted(), why), nil)
		return false, fmt.Errorf("socks: forwarding to %s: %w", req.URL.Host, err)
	}
	defer resp.Body.Close()

	httphop.Remove(resp.Header)
	keep = !req.Close
	if !req.ProtoAtLeast(1, 1) {
		// An HTTP/1.0 client cannot read chunks: send the body until close.
		resp.TransferEncoding = nil
		keep = false
	}
	chunked := len(resp.TransferEncoding) > 0 && resp.TransferEncoding[0] == "chunked"
	if resp.ContentLength < 0 && !chunked && req.Method != http.MethodHead &&
		resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusNotModified {
		keep = false // the body ends when the connection does
	}
	resp.Proto, resp.ProtoMajor, resp.ProtoMinor = "HTTP/1.1", 1, 1
	resp.Close = !keep
	bw := bufio.NewWriterSize(hs.c, 32<<10)
	resp.Body = &flushingBody{r: resp.Body, w: bw}
	// Hide bufio.Writer.ReadFrom, which reads into the very buffer that
	// flushingBody flushes.
	err = resp.Write(struct{ io.Writer }{bw})
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return false, fmt.Errorf("socks: writing response from %s: %w", req.URL.Host, err)
	}
	if body != nil && !body.eof.Load() {
		// The origin answered without reading the whole request body;
		// the rest of it is still on the connection.
		keep = false
	}
	return keep, nil
}

// httpTransport returns the Transport that carries absolute-form requests,
// dialing with s.Dial.
func (s *Server) httpTransport() *http.Transport {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.transport == nil {
		s.transport = &http.Transport{
			Proxy:               nil, // never the environment's proxy
			DialContext:         s.dial,
			MaxIdleConnsPerHost: 8,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true, // pass Accept-Encoding as the client sent it
		}
	}
	return s.transport
}

// httpStatus turns a SOCKS5 reply code into an HTTP status and a reason.
func httpStatus(rep byte) (int, string) {
	switch rep {
	case repNotAllowed:
		return http.StatusForbidden, "not allowed by the proxy's rules"
	case repConnectionRefused:
		return http.StatusBadGateway, "connection refused"
	case repNetworkUnreachable:
		return http.StatusBadGateway, "network unreachable"
	case repHostUnreachable:
		return http.StatusBadGateway, "host unreachable or unknown"
	case repTTLExpired:
		return http.StatusGatewayTimeout, "timed out"
	}
	return http.StatusBadGateway, "connection failed"
}

// writeHTTPError writes a response whose body is msg in one line, and
// which closes the connection.
func writeHTTPError(w io.Writer, code int, msg string, h http.Header) {
	body := "pinhole proxy: " + msg + "\n"
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\n", code, http.StatusText(code))
	h.Write(&b)
	fmt.Fprintf(&b, "Content-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
	io.WriteString(w, b.String())
}

// clientBody is a request body read from the client connection. It records
// whether it was read to the end, which decides if the connection can carry
// another request, and its Close does nothing: the Transport may close it
// from another goroutine after the exchange, when the connection is the
// next request's.
type clientBody struct {
	r   io.Reader
	eof atomic.Bool
}

func (b *clientBody) Read(p []byte) (int, error) {
	if b.eof.Load() {
		return 0, io.EOF
	}
	n, err := b.r.Read(p)
	if err == io.EOF {
		b.eof.Store(true)
	}
	return n, err
}

func (b *clientBody) Close() error { return nil }

// flushingBody is a response body that flushes what has been written to
// the client before it may block for more, so that headers and each piece
// of body go out in as few writes as possible without holding back a
// streamed response.
type flushingBody struct {
	r io.ReadCloser
	w *bufio.Writer
}

func (b *flushingBody) Read(p []byte) (int, error) {
	if b.w.Buffered() > 0 {
		if err := b.w.Flush(); err != nil {
			return 0, err
		}
	}
	return b.r.Read(p)
}

func (b *flushingBody) Close() error { return b.r.Close() }
