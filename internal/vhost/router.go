package vhost

import (
	"context"
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pinhole-dev/pinhole/internal/auth"
)

// Router routes HTTP requests by their Host to the remote forward that
// holds the name, and hands out the listeners those forwards accept on.
// Set its fields before use and do not change them after.
type Router struct {
	// Domain is what names are under: myapp.Domain.
	Domain string
	// Reserved are host names of the server's own (its --ssh-sni names)
	// that no forward may take as a custom domain; Domain and the names
	// under it never are custom domains.
	Reserved []string
	// Store remembers which key holds which name; nil remembers nothing
	// past a connection.
	Store Store
	// MaxNamesPerKey caps the names one key holds at once. 0 means
	// DefaultMaxNamesPerKey; negative, no cap.
	MaxNamesPerKey int
	// Idle bounds the wait between two reads of a request's body and
	// between two writes of its answer, for a public client that is too
	// slow or gone. 0 means 30 s.
	Idle time.Duration
	// UpstreamTimeout bounds how long a service behind a name has to
	// start its answer: then 504. 0 means 30 s.
	UpstreamTimeout time.Duration
	// Logger gets a line per name taken and freed. nil discards.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	mu         sync.RWMutex
	routes     map[string]*nameListener // the names' port-80 forwards
	passRoutes map[string]*passListener // their port-443 forwards (passthrough.go)

	portsMu             sync.Mutex
	httpPort, httpsPort int // 0: 80 and 443
}

// SetPorts says which public ports serve HTTP and HTTPS, for the URLs
// the router gives out; 0 means 80 and 443, the default.
func (r *Router) SetPorts(http, https int) {
	r.portsMu.Lock()
	defer r.portsMu.Unlock()
	r.httpPort, r.httpsPort = http, https
}

// keyNameRE is the form of KeyName's names.
var keyNameRE = regexp.MustCompile(`^k[a-z2-7]{11}$`)

// DefaultMaxNamesPerKey is how many names one key may hold at once.
const DefaultMaxNamesPerKey = 10

// URL is the https:// address of name.
func (r *Router) URL(name string) string {
	r.portsMu.Lock()
	defer r.portsMu.Unlock()
	return "https://" + r.Host(name) + portSuffix(r.httpsPort, 443)
}

// HTTPURL is the http:// address of name.
func (r *Router) HTTPURL(name string) string {
	r.portsMu.Lock()
	defer r.portsMu.Unlock()
	return "http://" + r.Host(name) + portSuffix(r.httpPort, 80)
}

// Host is the host name of name: NAME.Domain for a label, the name itself
// for a custom domain (one with a dot).
func (r *Router) Host(name string) string {
	if IsDomain(name) {
		return name
	}
	return name + "." + r.Domain
}

func portSuffix(p, def int) string {
	if p == 0 || p == def {
		return ""
	}
	return ":" + strconv.Itoa(p)
}

func (r *Router) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Router) logger() *slog.Logger {
	if r.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Logger
}

// Name is the name a remote forward of key asking for bindHost:port
// gets (tunnel.NameListener): on port 80 (HTTP) or 443 (TLS passthrough),
// a bind address that is not an address is the name asked for
// (NAME.Domain in full is NAME; any other name with a dot is a custom
// domain), and "" or "localhost" (ssh -R 80:...) gets the key's own name
// (KeyName); anything else is a plain port.
func (r *Router) Name(bindHost string, port uint32, key string) string {
	if port != 80 && port != 443 {
		return ""
	}
	switch {
	case bindHost == "" || bindHost == "localhost":
		return KeyName(key)
	case IsNameRequest(bindHost):
		if label, ok := strings.CutSuffix(bindHost, "."+r.Domain); ok && label != "" && !IsDomain(label) {
			return label
		}
		return bindHost
	}
	return ""
}

// ListenName gives the remote forward of key that asks for name on port
// its listener: on port 80, each connection it accepts is one request's
// connection to the service (HTTP/1.1, reused for several requests); on
// port 443, each is a public client's TLS connection, ClientHello and all
// (passthrough.go). A name's forward on a port a live connection holds
// is refused with an error wrapping syscall.EADDRINUSE, as a port is
// (tunnel's takeover goes by that); a name another key holds, live or in
// the Store, with ErrHeld.
//
// options gives the forward's tunnel options (tunnel.NameListener): each
// request on port 80 waits for them (up to optionsWait, then 503) and is
// served as they say: allow= (403 for other clients), auth= (401 until
// the right credentials come; the Authorization header is not passed on)
// and host-header=. nil means none. (Port 443's connections are the
// tunnel's, which applies allow= and proxy-protocol= to them as to a
// port's.)
func (r *Router) ListenName(name string, port uint32, key string, options func(context.Context) (auth.TunnelOptions, error)) (net.Listener, error) {
	return r.ListenNameLimit(name, port, key, 0, options)
}

// ListenNameLimit is ListenName with key's own cap on its names (its
// authorized_keys line's pinhole-limits names=N) in place of
// MaxNamesPerKey: > 0 a cap, negative none, 0 MaxNamesPerKey
// (tunnel.NameLimiter).
func (r *Router) ListenNameLimit(name string, port uint32, key string, max int, options func(context.Context) (auth.TunnelOptions, error)) (net.Listener, error) {
	check := CheckName
	if IsDomain(name) {
		check = CheckDomain
	}
	if err := check(name); err != nil {
		return nil, err
	}
	if IsDomain(name) {
		if d := strings.ToLower(r.Domain); name == d || strings.HasSuffix(name, "."+d) {
			return nil, fmt.Errorf("vhost: %s is this server's domain or under it, where a name is one label: ask for -R LABEL:%d:HOST:PORT", name, port)
		}
		if slices.ContainsFunc(r.Reserved, func(n string) bool { return strings.EqualFold(strings.TrimSuffix(n, "."), name) }) {
			return nil, fmt.Errorf("vhost: %s is one of this server's own names (--ssh-sni): pick another", name)
		}
	}
	if keyNameRE.MatchString(name) && name != KeyName(key) {
		return nil, fmt.Errorf("vhost: %q has the form of the names the server makes for keys (k and 11 letters and digits), and it is not this key's: pick another name, or ask for none (-R 80:...) to get this key's", name)
	}
	if port != 80 && port != 443 {
		return nil, fmt.Errorf("vhost: a name takes port 80 (HTTP, served as http:// and https://%s) or 443 (TLS that the service ends itself); ask for -R %s:80:HOST:PORT or -R %s:443:HOST:PORT", r.Host(name), name, name)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.liveOn(name, port) {
		return nil, fmt.Errorf("vhost: %s is served by a live connection: %w", r.Host(name), syscall.EADDRINUSE)
	}
	if k, ok := r.liveKey(name); ok && k != key {
		return nil, fmt.Errorf("vhost: %s: %w, which is connected now: pick another name", r.Host(name), ErrHeld)
	}
	limit, src := r.maxNames(), "--max-names-per-key %d"
	if max != 0 {
		limit, src = max, "pinhole-limits names=%d in authorized_keys"
	}
	if limit > 0 {
		live := r.liveNames(key)
		held := len(live)
		if hs, ok := r.Store.(interface {
			Held(key string, now time.Time) []string
		}); ok {
			// Names kept for the key within the TTL count too, so that
			// claiming and dropping names cannot reserve many.
			for _, n := range hs.Held(key, r.now()) {
				if !live[n] && n != name {
					held++
				}
			}
		}
		if held >= limit && !live[name] {
			return nil, fmt.Errorf("vhost: this key holds %d names already, the most it may ("+src+"): stop one of its forwards first, or ask the server's admin to raise it", held, limit)
		}
	}
	if r.Store != nil {
		if err := r.Store.Claim(name, key, r.now()); err != nil {
			return nil, fmt.Errorf("vhost: %s: %w", r.Host(name), err)
		}
	}
	if port == 443 {
		return r.addPass(name, key), nil
	}
	l := &nameListener{r: r, name: name, key: key, options: options, conns: make(chan net.Conn), done: make(chan struct{})}
	l.proxy = &httputil.ReverseProxy{
		Rewrite: l.rewrite,
		// A few seconds idle: services (Node's, among others) close an
		// idle connection after 5 s, and one reused as it closes fails a
		// POST. At most 256 streams to one name at once, and as many kept
		// idle: with 32, 64 requests at a time kept closing connections
		// and opening new ones (a channel and a dial by the tunnel's
		// client each: a fifth of pinhole connect's CPU in pinhole-bench).
		// FlushInterval 0: ReverseProxy still flushes every write of an
		// answer without a length (streamed) or of server-sent events;
		// one with a Content-Length goes out through the server's
		// buffer, a small one in one write (-1 took a timer and two).
		Transport:      &http.Transport{DialContext: l.dial, MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256, IdleConnTimeout: 4 * time.Second, ResponseHeaderTimeout: r.upstreamTimeout()},
		FlushInterval:  0,
		ErrorHandler:   l.proxyError,
		ModifyResponse: upgraded,
		// Without a pool, each answer's copy allocated and cleared a
		// 32 KiB buffer: 7 % of the server's CPU under pinhole-bench's
		// http64.
		BufferPool: copyBuffers,
	}
	if r.routes == nil {
		r.routes = map[string]*nameListener{}
	}
	r.routes[name] = l
	go l.reap()
	r.logger().Info("name taken", "name", name, "key", key, "url", r.URL(name))
	return l, nil
}

func (r *Router) maxNames() int {
	if r.MaxNamesPerKey == 0 {
		return DefaultMaxNamesPerKey
	}
	return r.MaxNamesPerKey
}

func (r *Router) upstreamTimeout() time.Duration {
	if r.UpstreamTimeout <= 0 {
		return 30 * time.Second
	}
	return r.UpstreamTimeout
}

// Owns reports whether host (a request's Host) is a name under Domain,
// or a custom domain a tunnel serves now: every path of it is the name's
// service's, none the server's own.
func (r *Router) Owns(host string) bool {
	_, ok := r.nameOf(host)
	return ok
}

// Has reports whether host (a request's Host or a TLS server name) is
// NAME.Domain for a name a tunnel serves now, or a custom domain a tunnel
// serves now.
func (r *Router) Has(host string) bool {
	name, ok := r.nameOf(host)
	if !ok {
		return false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.routes[name] != nil
}

// nameOf is the name a Host asks for, and whether it is one: under Domain,
// or a custom domain with a route.
func (r *Router) nameOf(host string) (string, bool) {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if name, ok := strings.CutSuffix(host, "."+strings.ToLower(r.Domain)); ok && name != "" && !IsDomain(name) {
		return name, true
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return host, IsDomain(host) && (r.routes[host] != nil || r.passRoutes[host] != nil)
}

// ServeHTTP answers a request for NAME.Domain from the forward holding
// NAME, and any other with 404.
func (r *Router) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	name, ok := r.nameOf(req.Host)
	host := r.Host(name)
	if !ok {
		page(w, http.StatusNotFound, "Not found", "There is nothing here.")
		return
	}
	r.mu.RLock()
	l, pass := r.routes[name], r.passRoutes[name]
	r.mu.RUnlock()
	if l == nil && pass != nil {
		r.servePassOnly(w, req, name)
		return
	}
	if l == nil {
		page(w, http.StatusNotFound, "No tunnel here", "No tunnel is connected for "+host+" now.")
		return
	}
	req, ok = l.admit(w, req)
	if !ok {
		return
	}
	// The HTTP server's deadlines are for the whole request; a proxied
	// one may stream for long (server-sent events, a download, an
	// upload). It is bounded instead by Idle between reads of its body
	// and between writes of its answer. An upgraded connection (a
	// WebSocket) is the service's to time out.
	rc := http.NewResponseController(w)
	idle := r.idle()
	rc.SetReadDeadline(time.Now().Add(idle))
	rc.SetWriteDeadline(time.Now().Add(idle))
	if req.Body != nil && req.Body != http.NoBody {
		req.Body = &idleBody{ReadCloser: req.Body, rc: rc, idle: idle}
	}
	w = &idleWriter{ResponseWriter: w, rc: rc, idle: idle}
	if req.Header.Get("Upgrade") != "" {
		// Bounded as any request until the service agrees to the
		// upgrade (upgraded, below): a request that merely says
		// Upgrade does not get to trickle forever.
		req = req.WithContext(context.WithValue(req.Context(), upgradeKey{}, rc))
	}
	if lightOK(req) {
		l.forward(w, req) // light.go
		return
	}
	l.proxy.ServeHTTP(w, req)
}

// upgradeKey is the context key of an upgrade request's
// ResponseController.
type upgradeKey struct{}

// upgraded is the proxies' ModifyResponse: once the service has answered
// 101 Switching Protocols, the connection (a WebSocket) is the service's
// to time out, and the public side's deadlines are lifted.
func upgraded(res *http.Response) error {
	if res.StatusCode != http.StatusSwitchingProtocols {
		return nil
	}
	if rc, ok := res.Request.Context().Value(upgradeKey{}).(*http.ResponseController); ok {
		rc.SetReadDeadline(time.Time{})
		rc.SetWriteDeadline(time.Time{})
	}
	return nil
}

// idleBody pushes the read deadline on at each read of a request body.
type idleBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	idle time.Duration
}

func (b *idleBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.rc.SetReadDeadline(time.Now().Add(b.idle))
	return n, err
}

// idleWriter pushes the write deadline on at each write of an answer.
type idleWriter struct {
	http.ResponseWriter
	rc   *http.ResponseController
	idle time.Duration
}

func (w *idleWriter) Write(p []byte) (int, error) {
	w.rc.SetWriteDeadline(time.Now().Add(w.idle))
	return w.ResponseWriter.Write(p)
}

func (w *idleWriter) Flush() { w.rc.Flush() }

// Unwrap lets http.ResponseController reach the writer underneath.
func (w *idleWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (r *Router) idle() time.Duration {
	if r.Idle <= 0 {
		return 30 * time.Second
	}
	return r.Idle
}

// page writes a small HTML page.
func page(w http.ResponseWriter, code int, title, text string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	fmt.Fprintf(w, "<!doctype html>\n<title>%d %s</title>\n<h1>%s</h1>\n<p>%s</p>\n", code, html.EscapeString(title), html.EscapeString(title), html.EscapeString(text))
}

// nameListener is the listener of one name's remote forward.
type nameListener struct {
	direct    atomic.Pointer[func(ctx context.Context) (net.Conn, error)] // SetDial's
	r         *Router
	name, key string
	options   func(context.Context) (auth.TunnelOptions, error) // nil: none
	settled   atomic.Bool                                       // options returned once: they no longer wait
	proxy     *httputil.ReverseProxy                            // for what the light way does not do (light.go)
	streams   streams                                           // the light way's
	conns     chan net.Conn
	done      chan struct{}
	once      sync.Once
}

// copyBuffers are the ReverseProxies' copy buffers, shared by all names.
var copyBuffers = &bufferPool{pool: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}

// bufferPool is an httputil.BufferPool over a sync.Pool.
type bufferPool struct{ pool sync.Pool }

func (p *bufferPool) Get() []byte  { return *p.pool.Get().(*[]byte) }
func (p *bufferPool) Put(b []byte) { p.pool.Put(&b) }

// SetDial gives the listener a way to open a stream to the service
// directly (tunnel's: a channel to the client), which the proxy then uses
// instead of a pipe that Accept hands out: one copy and two goroutines
// less per request. Call it before the first request; nil keeps the pipe.
func (l *nameListener) SetDial(dial func(ctx context.Context) (net.Conn, error)) {
	l.direct.Store(&dial)
}

// dial is the proxy's way to the service: the tunnel's direct dial, or a
// pipe whose far end the remote forward accepts and carries through the
// tunnel.
func (l *nameListener) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	if d := l.direct.Load(); d != nil && *d != nil {
		select {
		case <-l.done:
			return nil, fmt.Errorf("vhost: the tunnel for %s is gone", l.name)
		default:
		}
		return (*d)(ctx)
	}
	near, far := net.Pipe()
	select {
	case l.conns <- far:
		return near, nil
	case <-l.done:
	case <-ctx.Done():
	}
	near.Close()
	far.Close()
	return nil, fmt.Errorf("vhost: the tunnel for %s is gone", l.name)
}

// rewrite sends the request on to the service with the public name (or
// the tunnel's host-header=) as its Host, and X-Forwarded-For, -Host,
// -Proto and Forwarded of our own, which name the public name: any the
// public client sent are dropped, never trusted. The light way
// (light.go's writeHead) sends the same.
func (l *nameListener) rewrite(pr *httputil.ProxyRequest) {
	f := l.forwardedFor(pr.In)
	pr.SetURL(&url.URL{Scheme: "http", Host: f.public})
	pr.Out.Host = f.host // as the server names it, whatever case or dot the client sent, or host-header=
	for h := range requestOwnHeaders {
		pr.Out.Header.Del(h)
	}
	if f.client != "" {
		pr.Out.Header.Set("X-Forwarded-For", f.client)
	}
	pr.Out.Header.Set("X-Forwarded-Host", f.public)
	pr.Out.Header.Set("X-Forwarded-Proto", f.proto)
	pr.Out.Header.Set("Forwarded", f.forwarded)
}

// proxyError answers a request the service could not: 504 when it was
// too slow to start its answer, 502 otherwise.
func (l *nameListener) proxyError(w http.ResponseWriter, req *http.Request, err error) {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		page(w, http.StatusGatewayTimeout, "Gateway timeout", fmt.Sprintf("The service behind %s did not answer within %v.", l.r.Host(l.name), l.r.upstreamTimeout()))
		return
	}
	l.r.logger().Info("service behind a name did not answer", "name", l.name, "err", err)
	page(w, http.StatusBadGateway, "Bad gateway", fmt.Sprintf("The tunnel for %s is connected, but its service did not answer: is it running on the tunnel client's side?", l.r.Host(l.name)))
}

func (l *nameListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close frees the name (the Store keeps it for its key until the TTL).
func (l *nameListener) Close() error {
	l.once.Do(func() {
		close(l.done)
		l.r.mu.Lock()
		if l.r.routes[l.name] == l {
			delete(l.r.routes, l.name)
		}
		l.r.mu.Unlock()
		l.r.release(l.name, l.key)
		l.proxy.Transport.(*http.Transport).CloseIdleConnections()
		l.r.logger().Info("name freed", "name", l.name)
	})
	return nil
}

func (l *nameListener) Addr() net.Addr { return nameAddr(l.r.URL(l.name)) }

// nameAddr is a name's listening "address": its URL.
type nameAddr string

func (a nameAddr) Network() string { return "vhost" }
func (a nameAddr) String() string  { return string(a) }
