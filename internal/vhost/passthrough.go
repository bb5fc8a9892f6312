package vhost

import (
	"net"
	"net/http"
	"sync"
	"time"
)

// TLS passthrough: a name's -R NAME:443 forward gets every TLS connection
// whose server name (SNI) is NAME.Domain, raw, ClientHello included, so
// that the user's service ends TLS with its own certificate and the
// server never sees the plaintext. The transport.Dispatcher asks
// Passthrough before it answers a ClientHello.

// Passthrough returns what serves a TLS connection for serverName (its
// SNI) when a name under Domain has a port-443 forward, else nil. serve
// hands the connection to the forward, which owns it from then on; it
// closes the connection when the forward is gone. It is the
// transport.Dispatcher's Passthrough.
func (r *Router) Passthrough(serverName string) (serve func(net.Conn)) {
	name, ok := r.nameOf(serverName)
	if !ok {
		return nil
	}
	r.mu.RLock()
	l := r.passRoutes[name]
	r.mu.RUnlock()
	if l == nil {
		return nil
	}
	return l.hand
}

// servePassOnly answers an HTTP request for a name that has only a
// port-443 forward: plain HTTP is sent to https:// (308, the method and
// body kept); HTTPS that reached here ended TLS on this server's
// certificate (a client that sent no SNI, or another name's), so it is
// misdirected (421).
func (r *Router) servePassOnly(w http.ResponseWriter, req *http.Request, name string) {
	if req.TLS != nil {
		page(w, http.StatusMisdirectedRequest, "Misdirected request", "The service at "+r.Host(name)+" ends TLS itself: connect with that name as the TLS server name (SNI).")
		return
	}
	http.Redirect(w, req, r.URL(name)+req.URL.RequestURI(), http.StatusPermanentRedirect)
}

// liveOn reports whether name's forward on port is live; r.mu is held.
func (r *Router) liveOn(name string, port uint32) bool {
	if port == 443 {
		return r.passRoutes[name] != nil
	}
	return r.routes[name] != nil
}

// liveKey is the key of name's live forwards, if it has any; r.mu is
// held. Both of a name's forwards are one key's.
func (r *Router) liveKey(name string) (string, bool) {
	if l := r.routes[name]; l != nil {
		return l.key, true
	}
	if l := r.passRoutes[name]; l != nil {
		return l.key, true
	}
	return "", false
}

// liveNames are the names key has a live forward for; r.mu is held.
func (r *Router) liveNames(key string) map[string]bool {
	names := map[string]bool{}
	for n, l := range r.routes {
		if l.key == key {
			names[n] = true
		}
	}
	for n, l := range r.passRoutes {
		if l.key == key {
			names[n] = true
		}
	}
	return names
}

// release notes in the Store that one of key's forwards of name ended.
func (r *Router) release(name, key string) {
	if r.Store == nil {
		return
	}
	if err := r.Store.Release(name, key, r.now()); err != nil {
		r.logger().Warn("cannot note a name's release", "name", name, "err", err)
	}
}

// addPass makes and records name's port-443 listener; r.mu is held and
// the name claimed.
func (r *Router) addPass(name, key string) *passListener {
	l := &passListener{r: r, name: name, key: key, conns: make(chan net.Conn), done: make(chan struct{})}
	if r.passRoutes == nil {
		r.passRoutes = map[string]*passListener{}
	}
	r.passRoutes[name] = l
	r.logger().Info("name taken", "name", name, "key", key, "url", r.URL(name), "tls", "passthrough")
	return l
}

// passListener is the listener of one name's port-443 forward: it
// accepts the public clients' TLS connections.
type passListener struct {
	r         *Router
	name, key string
	conns     chan net.Conn
	done      chan struct{}
	once      sync.Once
}

// hand gives c to the forward's accept, or closes it if the forward is
// gone or does not accept within the upstream timeout.
func (l *passListener) hand(c net.Conn) {
	t := time.NewTimer(l.r.upstreamTimeout())
	defer t.Stop()
	select {
	case l.conns <- c:
		return
	case <-l.done:
	case <-t.C:
	}
	c.Close()
}

func (l *passListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close frees the forward (the Store keeps the name for its key until
// the TTL once its other forward, if any, is gone too).
func (l *passListener) Close() error {
	l.once.Do(func() {
		close(l.done)
		l.r.mu.Lock()
		if l.r.passRoutes[l.name] == l {
			delete(l.r.passRoutes, l.name)
		}
		l.r.mu.Unlock()
		l.r.release(l.name, l.key)
		l.r.logger().Info("name freed", "name", l.name, "tls", "passthrough")
	})
	return nil
}

func (l *passListener) Addr() net.Addr { return nameAddr(l.r.URL(l.name)) }
