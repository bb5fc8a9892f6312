package vhost

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/pinhole-dev/pinhole/internal/auth"
)

// optionsWait bounds how long a request waits for its tunnel's options
// to be settled (tunnel settles them within its OptionsWait, 2 s): then
// 503.
const optionsWait = 10 * time.Second

// hostHeaderKey carries host-header= from admit to rewrite in the
// request's context.
type hostHeaderKey struct{}

// admit applies the name's tunnel options to req: it answers 503, 403 or
// 401 itself and reports false, or returns the request to pass on.
func (l *nameListener) admit(w http.ResponseWriter, req *http.Request) (*http.Request, bool) {
	if l.options == nil {
		return req, true
	}
	host := l.name + "." + l.r.Domain
	var (
		o   auth.TunnelOptions
		err error
	)
	if l.settled.Load() {
		// Settled once, settled for good (tunnel's topts): the call
		// does not wait, and needs no timer of its own.
		o, err = l.options(req.Context())
	} else {
		ctx, cancel := context.WithTimeout(req.Context(), optionsWait)
		o, err = l.options(ctx)
		cancel()
		if err == nil {
			l.settled.Store(true)
		}
	}
	if err != nil {
		w.Header().Set("Retry-After", "5")
		page(w, http.StatusServiceUnavailable, "Service unavailable", "The tunnel for "+host+" is connected, but is not ready to serve: try again in a moment.")
		return nil, false
	}
	client, _ := netip.ParseAddrPort(req.RemoteAddr)
	if !o.Allows(client.Addr()) {
		page(w, http.StatusForbidden, "Forbidden", "The tunnel for "+host+" does not admit your address.")
		return nil, false
	}
	if o.User != "" {
		user, pass, _ := req.BasicAuth()
		if equal(user, o.User)&equal(pass, o.Password) != 1 {
			w.Header().Set("WWW-Authenticate", "Basic realm="+strconv.Quote(host)+`, charset="UTF-8"`)
			page(w, http.StatusUnauthorized, "Unauthorized", host+" asks for a user name and password.")
			return nil, false
		}
		// The credentials are the tunnel's, not the service's.
		req.Header.Del("Authorization")
	}
	if o.HostHeader != "" {
		req = req.WithContext(context.WithValue(req.Context(), hostHeaderKey{}, o.HostHeader))
	}
	return req, true
}

// equal is 1 when a and b are the same, in time that does not depend on
// where they differ or on their lengths.
func equal(a, b string) int {
	ha, hb := sha256.Sum256([]byte(a)), sha256.Sum256([]byte(b))
	return subtle.ConstantTimeCompare(ha[:], hb[:])
}
