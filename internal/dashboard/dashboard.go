// Package dashboard serves pinhole's live web page: what a server or a
// client does now (observe.Snapshot), updated every second by server-sent
// events. Every asset is embedded in the binary; the page loads nothing
// from elsewhere, and its Content-Security-Policy says so.
//
//	GET /              the page (assets/index.html, style.css, app.js)
//	GET /api/snapshot  one snapshot, JSON (docs/watching.md)
//	GET /api/events    text/event-stream: a "snapshot" event a second,
//	                   each with its rates since the one before
//
// With a Token, every request must carry it: ?token=TOKEN (which sets a
// cookie and redirects to the same page without it), the cookie, or
// "Authorization: Bearer TOKEN". Without one, only requests whose Host is
// a loopback address or localhost are answered, so that a web page
// elsewhere cannot reach the dashboard through DNS rebinding.
package dashboard

import (
	"crypto/subtle"
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/pinhole-dev/pinhole/internal/observe"
	"github.com/pinhole-dev/pinhole/internal/spec"
)

//go:embed assets
var assets embed.FS

// Every is how often the event stream sends a snapshot.
const Every = time.Second

// Handler is the dashboard as an http.Handler.
type Handler struct {
	// Snapshot is what the process does now. Required.
	Snapshot func() observe.Snapshot
	// Token, if set, is what every request must carry.
	Token string
}

const cookieName = "pinhole_dashboard"

// ServeHTTP answers the dashboard's paths.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("Cache-Control", "no-store")
	if !h.allowed(w, r) {
		return
	}
	switch r.URL.Path {
	case "/api/snapshot":
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(h.Snapshot())
	case "/api/events":
		h.events(w, r)
	case "/", "/index.html":
		h.asset(w, r, "index.html", "text/html; charset=utf-8")
	case "/style.css":
		h.asset(w, r, "style.css", "text/css; charset=utf-8")
	case "/app.js":
		h.asset(w, r, "app.js", "text/javascript; charset=utf-8")
	default:
		http.NotFound(w, r)
	}
}

// allowed checks the token or, without one, the Host; it answers the
// request itself when it returns false.
func (h *Handler) allowed(w http.ResponseWriter, r *http.Request) bool {
	if h.Token == "" {
		if !spec.LoopbackHost(r.Host) {
			http.Error(w, "this dashboard answers only at a loopback address (http://127.0.0.1:PORT/); to open it to others, start it with --dashboard-token-file FILE", http.StatusForbidden)
			return false
		}
		return true
	}
	if t := r.URL.Query().Get("token"); t != "" && h.match(t) {
		http.SetCookie(w, &http.Cookie{Name: cookieName, Value: h.Token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
		q := r.URL.Query()
		q.Del("token")
		u := *r.URL
		u.RawQuery = q.Encode()
		http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther)
		return false
	}
	if c, err := r.Cookie(cookieName); err == nil && h.match(c.Value) {
		return true
	}
	if t, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && h.match(t) {
		return true
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="pinhole dashboard"`)
	http.Error(w, "this dashboard needs its token: open it as /?token=TOKEN (the token of --dashboard-token-file or --dashboard-token it was started with)", http.StatusUnauthorized)
	return false
}

func (h *Handler) match(t string) bool {
	return subtle.ConstantTimeCompare([]byte(t), []byte(h.Token)) == 1
}

func (h *Handler) asset(w http.ResponseWriter, r *http.Request, name, ctype string) {
	b, err := fs.ReadFile(assets, "assets/"+name)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", ctype)
	w.Write(b)
}

// events streams a snapshot a second until the client goes.
func (h *Handler) events(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	rc := http.NewResponseController(w)
	own := &observe.Sampler{Take: h.Snapshot}
	t := time.NewTicker(Every)
	defer t.Stop()
	for {
		b, err := json.Marshal(own.Sample())
		if err != nil {
			return
		}
		if _, err := fmt.Fprintf(w, "event: snapshot\ndata: %s\n\n", b); err != nil {
			return
		}
		if rc.Flush() != nil {
			return
		}
		select {
		case <-r.Context().Done():
			return
		case <-t.C:
		}
	}
}

// CheckAddr refuses an address the dashboard may not listen on: a
// non-loopback one needs a token.
func CheckAddr(addr string, token bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("dashboard: %q: want host:port, such as 127.0.0.1:8081", addr)
	}
	if _, err := net.LookupPort("tcp", port); err != nil || port == "" {
		return fmt.Errorf("dashboard: %q: bad port %q", addr, port)
	}
	if token || spec.LoopbackHost(host) {
		return nil
	}
	return fmt.Errorf("dashboard: %q is not a loopback address: anyone who reaches it would see your sessions and tunnels; give --dashboard-token-file FILE to open it to the network, or listen on 127.0.0.1", addr)
}
