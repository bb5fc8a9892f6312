// Package httphop knows the HTTP headers meant for one connection only,
// which a proxy does not pass on (RFC 9110, section 7.6.1): pinhole's
// HTTP proxy (internal/socks) and its name router (internal/vhost) both
// leave them out.
package httphop

import (
	"net/http"
	"strings"
)

// headers are the hop-by-hop headers, in canonical form: those of RFC
// 9110 section 7.6.1 and Proxy-Connection, which old clients send, and
// the proxy's credentials.
var headers = map[string]bool{
	"Connection":          true,
	"Proxy-Connection":    true,
	"Keep-Alive":          true,
	"Proxy-Authenticate":  true,
	"Proxy-Authorization": true,
	"Te":                  true,
	"Trailer":             true,
	"Transfer-Encoding":   true,
	"Upgrade":             true,
}

// Is reports whether name, in canonical form, is a hop-by-hop header.
func Is(name string) bool { return headers[name] }

// Named are the headers h's Connection header names, which are hop-by-hop
// for this message too, in canonical form; nil when it names none.
func Named(h http.Header) []string {
	var names []string
	for _, v := range h["Connection"] {
		for f := range strings.SplitSeq(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				names = append(names, http.CanonicalHeaderKey(f))
			}
		}
	}
	return names
}

// Remove deletes from h every hop-by-hop header and every header its
// Connection header names.
func Remove(h http.Header) {
	for _, k := range Named(h) {
		h.Del(k)
	}
	for k := range headers {
		h.Del(k)
	}
}
