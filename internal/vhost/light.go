package vhost

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"github.com/pinhole-dev/pinhole/internal/httphop"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The light way: most requests to a name (a GET, a HEAD, a small POST
// with a Content-Length) are written to the service by the router itself
// on a stream it keeps open between requests, and the answer's head is
// read with http.ReadResponse and its body copied to the public client,
// all in the request's own goroutine. httputil.ReverseProxy and
// http.Transport, with their read and write loops, the goroutine
// hand-offs between them and the copies of every header, stay for what
// this does not do: upgrades (WebSocket), request bodies of no stated
// length or larger than lightMaxBody, Expect: 100-continue, trailers,
// CONNECT and request targets of unusual forms (lightOK).
//
// The public request was parsed by net/http's server, with its limits
// (the Dispatcher's MaxHeaderBytes, its checks of every header's name
// and value, one Transfer-Encoding, chunked or nothing, and a
// Content-Length it drops when chunked came too); what reaches the
// service is framed here alone: a Content-Length of the bytes that
// follow, or none and no body, so no two readers can disagree on where
// a request ends.

// lightMaxBody is the largest request body the light way carries: one
// written whole before the answer is read, never more than the
// channel's window, so the write cannot wait on a service that answers
// without reading it.
const lightMaxBody = 64 << 10

// maxAnswerHead bounds the status line and header of an answer from a
// service: past it, 502.
const maxAnswerHead = 1 << 20

// maxInformational is how many 1xx answers before the final one a
// service may send (http.Transport's bound).
const maxInformational = 5

// lightIdle is how long a stream to a service is kept idle between two
// requests (as the Transport's IdleConnTimeout): services (Node's, among
// others) close an idle connection after 5 s, and one reused as it
// closes fails a request.
const lightIdle = 4 * time.Second

// lightMaxStreams is how many streams the light way keeps to one name
// at once, in use and idle (as the Transport's MaxConnsPerHost).
const lightMaxStreams = 256

// lightOK reports whether req goes the light way.
func lightOK(req *http.Request) bool {
	if req.Method == http.MethodConnect || req.URL.Opaque != "" {
		return false
	}
	if req.ContentLength < 0 || req.ContentLength > lightMaxBody || len(req.TransferEncoding) > 0 || req.Trailer != nil {
		return false
	}
	if req.ContentLength > 0 && (req.Body == nil || req.Body == http.NoBody) {
		return false
	}
	h := req.Header
	return h["Upgrade"] == nil && h["Expect"] == nil
}

// upstream is one stream to a name's service, kept between requests.
type upstream struct {
	conn  net.Conn
	lim   io.LimitedReader // at maxAnswerHead while a head is read, so a longer one ends in EOF
	br    *bufio.Reader
	bw    *bufio.Writer
	since time.Time // when it went idle
}

var errLongHead = errors.New("vhost: the service's answer has a status line and header over 1 MiB")

// streams is the light way's set of streams to one name's service.
type streams struct {
	mu      sync.Mutex
	idle    []*upstream // the last one went idle last
	open    int         // in use and idle
	waiters []chan *upstream
	closed  bool
}

// errGone is what a request meets when its name's tunnel went.
type errGone struct{ name string }

func (e errGone) Error() string { return "vhost: the tunnel for " + e.name + " is gone" }

// get takes an idle stream (reused true), or opens one, or waits for one
// when lightMaxStreams are in use.
func (l *nameListener) get(ctx context.Context) (up *upstream, reused bool, err error) {
	s := &l.streams
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, false, errGone{l.name}
	}
	if n := len(s.idle); n > 0 {
		up = s.idle[n-1]
		s.idle[n-1] = nil
		s.idle = s.idle[:n-1]
		s.mu.Unlock()
		return up, true, nil
	}
	if s.open < lightMaxStreams {
		s.open++
		s.mu.Unlock()
		return l.open(ctx)
	}
	w := make(chan *upstream, 1)
	s.waiters = append(s.waiters, w)
	s.mu.Unlock()
	select {
	case up = <-w:
	case <-ctx.Done():
		err = ctx.Err()
	case <-l.done:
		err = errGone{l.name}
	}
	if err != nil {
		s.mu.Lock()
		for i, x := range s.waiters {
			if x == w {
				s.waiters = append(s.waiters[:i], s.waiters[i+1:]...)
				s.mu.Unlock()
				return nil, false, err
			}
		}
		s.mu.Unlock()
		// Handed something as we gave up: give it back.
		if up = <-w; up != nil {
			l.put(up)
		} else {
			l.drop(nil)
		}
		return nil, false, err
	}
	if up == nil { // a slot, freed for us
		return l.open(ctx)
	}
	return up, true, nil
}

// open dials a new stream in a slot already counted.
func (l *nameListener) open(ctx context.Context) (*upstream, bool, error) {
	c, err := l.dial(ctx, "tcp", "")
	if err != nil {
		l.drop(nil)
		return nil, false, err
	}
	up := &upstream{conn: c, lim: io.LimitedReader{R: c, N: math.MaxInt64}}
	up.br = bufio.NewReaderSize(&up.lim, 4<<10)
	up.bw = bufio.NewWriterSize(c, 4<<10)
	return up, false, nil
}

// put keeps up for the next request, or hands it to one waiting.
func (l *nameListener) put(up *upstream) {
	s := &l.streams
	s.mu.Lock()
	if s.closed {
		s.open--
		s.mu.Unlock()
		up.conn.Close()
		return
	}
	if len(s.waiters) > 0 {
		w := s.waiters[0]
		s.waiters = s.waiters[1:]
		s.mu.Unlock()
		w <- up
		return
	}
	up.since = time.Now()
	s.idle = append(s.idle, up)
	s.mu.Unlock()
}

// drop closes up (nil: none was opened) and frees its slot, for one
// waiting if any.
func (l *nameListener) drop(up *upstream) {
	if up != nil {
		up.conn.Close()
	}
	s := &l.streams
	s.mu.Lock()
	if len(s.waiters) > 0 && !s.closed {
		w := s.waiters[0]
		s.waiters = s.waiters[1:]
		s.mu.Unlock()
		w <- nil
		return
	}
	s.open--
	s.mu.Unlock()
}

// reap closes the streams idle for lightIdle, every second, until the
// name goes; then all of them.
func (l *nameListener) reap() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-l.done:
			s := &l.streams
			s.mu.Lock()
			s.closed = true
			idle := s.idle
			s.idle = nil
			s.open -= len(idle)
			s.mu.Unlock()
			for _, up := range idle {
				up.conn.Close()
			}
			return
		case now := <-t.C:
			s := &l.streams
			s.mu.Lock()
			var old []*upstream
			keep := s.idle[:0]
			for _, up := range s.idle {
				if now.Sub(up.since) >= lightIdle {
					old = append(old, up)
				} else {
					keep = append(keep, up)
				}
			}
			clear(s.idle[len(keep):])
			s.idle = keep
			s.open -= len(old)
			s.mu.Unlock()
			for _, up := range old {
				up.conn.Close()
			}
		}
	}
}

// forward serves req the light way: see lightOK.
func (l *nameListener) forward(w http.ResponseWriter, req *http.Request) {
	ctx := req.Context()
	up, reused, err := l.get(ctx)
	if err != nil {
		l.proxyError(w, req, err)
		return
	}
	// 1xx answers but 100 Continue (Early Hints) go on to the public
	// client as they come.
	info := func(res *http.Response) {
		h := w.Header()
		copyAnswerHeader(h, res.Header)
		w.WriteHeader(res.StatusCode)
		clear(h)
	}
	res, err := l.roundTrip(up, req, info)
	if err != nil && reused && retryable(req, err) {
		// An idle stream the service closed as it was taken: once more
		// on a new one.
		l.drop(up)
		if up, _, err = l.get(ctx); err != nil {
			l.proxyError(w, req, err)
			return
		}
		res, err = l.roundTrip(up, req, info)
	}
	if err != nil {
		l.drop(up)
		l.proxyError(w, req, err)
		return
	}
	reuse, err := l.answer(w, res)
	switch {
	case err != nil:
		// Broken off in the middle of its body: the public client must
		// not take what it got for a whole answer. ReverseProxy does
		// the same; net/http's server closes the connection.
		l.drop(up)
		l.r.logger().Info("service behind a name broke off its answer", "name", l.name, "err", err)
		panic(http.ErrAbortHandler)
	case reuse:
		l.put(up)
	default:
		l.drop(up)
	}
}

// errNoAnswer is a stream that ended before the first byte of an answer.
var errNoAnswer = errors.New("vhost: the service closed the connection without answering")

// retryable reports whether req may be sent again after err on a reused
// stream: nothing of an answer came, and the request has no body and a
// method that changes nothing.
func retryable(req *http.Request, err error) bool {
	if !errors.Is(err, errNoAnswer) {
		return false
	}
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return req.ContentLength == 0
	}
	return false
}

// roundTrip writes req on up and reads the answer's head, skipping or
// handing 1xx answers but 100 Continue to info, within the upstream
// timeout.
func (l *nameListener) roundTrip(up *upstream, req *http.Request, info func(*http.Response)) (*http.Response, error) {
	writeHead(up.bw, req, l.forwardedFor(req))
	if req.ContentLength > 0 {
		// Read at the public client's pace, bounded by Idle between
		// reads (idleBody); never more than the channel's window, so
		// the writes do not wait for the service.
		if _, err := io.CopyN(up.bw, req.Body, req.ContentLength); err != nil {
			return nil, fmt.Errorf("vhost: reading the request's body: %w", err)
		}
	}
	up.conn.SetDeadline(time.Now().Add(l.r.upstreamTimeout()))
	if err := up.bw.Flush(); err != nil {
		if !isTimeout(err) {
			return nil, fmt.Errorf("%w (%v)", errNoAnswer, err)
		}
		return nil, err
	}
	for i := 0; ; i++ {
		up.lim.N = maxAnswerHead
		if _, err := up.br.Peek(1); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrClosedPipe) {
				return nil, errNoAnswer
			}
			return nil, err
		}
		res, err := http.ReadResponse(up.br, req)
		if err != nil {
			if up.lim.N == 0 {
				return nil, errLongHead
			}
			if errors.Is(err, io.ErrUnexpectedEOF) && !isTimeout(err) {
				return nil, fmt.Errorf("vhost: the service's answer ended in its header: %w", err)
			}
			return nil, err
		}
		up.lim.N = math.MaxInt64
		if res.StatusCode < 100 || res.StatusCode > 599 {
			res.Body.Close()
			return nil, fmt.Errorf("vhost: the service answered with status %d, outside 100-599", res.StatusCode)
		}
		if res.StatusCode >= 200 {
			up.conn.SetDeadline(time.Time{})
			return res, nil
		}
		if res.StatusCode == http.StatusSwitchingProtocols || i >= maxInformational {
			return nil, fmt.Errorf("vhost: the service answered %s to a request that did not ask for it", res.Status)
		}
		// 1xx: 100 Continue needs nothing (the body went already);
		// Early Hints and the like go on to the public client.
		if res.StatusCode != http.StatusContinue {
			info(res)
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// answer writes res to w and reports whether its stream may carry
// another request (its body was read to the end and it stays open), or
// the error of a service that failed in the middle of the body.
func (l *nameListener) answer(w http.ResponseWriter, res *http.Response) (bool, error) {
	h := w.Header()
	copyAnswerHeader(h, res.Header)
	w.WriteHeader(res.StatusCode)
	if res.Body == http.NoBody {
		return !res.Close, nil
	}
	defer res.Body.Close()
	flush := res.ContentLength < 0 || strings.HasPrefix(res.Header.Get("Content-Type"), "text/event-stream")
	buf := copyBuffers.Get()
	defer copyBuffers.Put(buf)
	var f http.Flusher
	if flush {
		f, _ = w.(http.Flusher)
	}
	for {
		n, err := res.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return false, nil // the public client went
			}
			if f != nil {
				f.Flush()
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return false, err
		}
	}
	for k, vv := range res.Trailer {
		h[http.TrailerPrefix+k] = vv
	}
	return !res.Close, nil
}

// requestOwnHeaders are the proxy headers the router sets itself, never
// taken from a public client.
var requestOwnHeaders = map[string]bool{
	"X-Forwarded-For":    true,
	"X-Forwarded-Host":   true,
	"X-Forwarded-Proto":  true,
	"X-Forwarded-Port":   true,
	"X-Forwarded-Server": true,
	"X-Real-Ip":          true,
	"Forwarded":          true,
}

// copyAnswerHeader copies an answer's header from the service into dst,
// without the hop-by-hop ones (Content-Length stays: it is the body's).
func copyAnswerHeader(dst, src http.Header) {
	named := httphop.Named(src)
	for k, vv := range src {
		if httphop.Is(k) || slices.Contains(named, k) {
			continue
		}
		dst[k] = vv
	}
}

// forwarded is what the router tells a service of a request: the Host
// it sends, the public name, and the proxy headers' values.
type forwarded struct {
	host, public, client, proto, forwarded string
}

// forwardedFor is the forwarded of req, which admit has let through.
func (l *nameListener) forwardedFor(req *http.Request) forwarded {
	public := l.r.Host(l.name)
	if _, port, err := net.SplitHostPort(req.Host); err == nil {
		public = net.JoinHostPort(public, port)
	}
	f := forwarded{host: public, public: public, proto: "http"}
	if h, _ := req.Context().Value(hostHeaderKey{}).(string); h != "" {
		f.host = h // host-header=
	}
	if req.TLS != nil {
		f.proto = "https"
	}
	client, _, err := net.SplitHostPort(req.RemoteAddr)
	if err == nil {
		f.client = client
	} else {
		client = req.RemoteAddr
	}
	if strings.Contains(client, ":") {
		client = `"[` + client + `]"`
	}
	f.forwarded = "for=" + client + ";host=" + strconv.Quote(public) + ";proto=" + f.proto
	return f
}

// writeHead writes req's request line and header, as the service gets
// them, to w: HTTP/1.1, the header without hop-by-hop and proxy headers,
// then the router's own, then Content-Length when there is a body (or
// the method is one that has one).
func writeHead(w *bufio.Writer, req *http.Request, f forwarded) {
	uri := req.URL.RequestURI()
	if req.URL.Scheme != "" || req.URL.Host != "" {
		// The absolute form (GET http://NAME.DOMAIN/x): the service
		// gets the origin form, as from ReverseProxy.
		uri = (&url.URL{Path: req.URL.Path, RawPath: req.URL.RawPath, RawQuery: req.URL.RawQuery, ForceQuery: req.URL.ForceQuery}).RequestURI()
	}
	w.WriteString(req.Method)
	w.WriteByte(' ')
	w.WriteString(uri)
	w.WriteString(" HTTP/1.1\r\nHost: ")
	writeValue(w, f.host)
	w.WriteString("\r\n")
	named := httphop.Named(req.Header)
	for k, vv := range req.Header {
		// Host is ours, written above (net/http's servers keep it out
		// of the map; this holds if one does not), and so is the
		// framing: Content-Length below, never Transfer-Encoding.
		if httphop.Is(k) || requestOwnHeaders[k] || k == "Host" || k == "Content-Length" || slices.Contains(named, k) {
			continue
		}
		for _, v := range vv {
			w.WriteString(k)
			w.WriteString(": ")
			writeValue(w, v)
			w.WriteString("\r\n")
		}
	}
	for _, v := range req.Header["Te"] {
		if strings.Contains(strings.ToLower(v), "trailers") {
			w.WriteString("Te: trailers\r\n")
			break
		}
	}
	if f.client != "" {
		w.WriteString("X-Forwarded-For: ")
		writeValue(w, f.client)
		w.WriteString("\r\n")
	}
	w.WriteString("X-Forwarded-Host: ")
	writeValue(w, f.public)
	w.WriteString("\r\nX-Forwarded-Proto: ")
	w.WriteString(f.proto)
	w.WriteString("\r\nForwarded: ")
	writeValue(w, f.forwarded)
	w.WriteString("\r\n")
	switch {
	case req.ContentLength > 0:
		w.WriteString("Content-Length: ")
		w.WriteString(strconv.FormatInt(req.ContentLength, 10))
		w.WriteString("\r\n")
	case req.Method != http.MethodGet && req.Method != http.MethodHead:
		// As http.Transport: many services expect one for POST and
		// the like.
		w.WriteString("Content-Length: 0\r\n")
	}
	w.WriteString("\r\n")
}

// writeValue writes a header value with any CR, LF or NUL as a space:
// net/http's server refuses them in a request already, and a Host from
// host-header= was checked when it was set; this holds if either fails.
func writeValue(w *bufio.Writer, v string) {
	if !strings.ContainsAny(v, "\r\n\x00") {
		w.WriteString(v)
		return
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '\r' || c == '\n' || c == 0 {
			c = ' '
		}
		w.WriteByte(c)
	}
}
