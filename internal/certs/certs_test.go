package certs

import (
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"

	"github.com/pinhole-dev/pinhole/internal/webtest"
)

// newTest is a Manager whose CA is nowhere (nothing listens on port 1):
// these tests must never reach it.
func newTest(t *testing.T, fallback *webtest.Certificate, wins bool, allow func(string) bool) *Manager {
	t.Helper()
	m, err := New(Config{Dir: t.TempDir(), Directory: "https://127.0.0.1:1/dir", Domain: "Example.Test.", Allow: allow, Fallback: &fallback.TLS, FallbackWins: wins})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestFallback: a handshake for a name ACME does not serve gets the
// fallback certificate, and Allow is asked only about names one label
// under the domain and custom domains: never for addresses, names without
// a dot, nor for one two labels under the domain.
func TestFallback(t *testing.T) {
	self := webtest.Cert(t, "localhost")
	var mu sync.Mutex
	var asked []string
	m := newTest(t, self, false, func(host string) bool {
		mu.Lock()
		defer mu.Unlock()
		asked = append(asked, host)
		return false
	})
	for _, name := range []string{"", "127.0.0.1", "localhost", "example.test.evil", "other.test", "a.b.example.test", "nobody.example.test", "NoBody.Example.Test."} {
		c, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: name})
		if err != nil || c != &self.TLS {
			t.Errorf("%q: %v, %v; want the fallback", name, c, err)
		}
	}
	if want := []string{"example.test.evil", "other.test", "nobody.example.test", "nobody.example.test"}; !slices.Equal(asked, want) {
		t.Errorf("Allow was asked about %q, want %q", asked, want)
	}
}

// TestFallbackWins: with FallbackWins, a name the fallback covers gets it
// without Allow being asked (no ACME for it); with it off, Allow decides.
func TestFallbackWins(t *testing.T) {
	wild := webtest.Cert(t, "*.example.test")
	calls := 0
	allow := func(string) bool { calls++; return false }
	m := newTest(t, wild, true, allow)
	if c, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: "myapp.example.test"}); err != nil || c != &wild.TLS || calls != 0 {
		t.Errorf("covered by the file: %v, %v, Allow asked %d times; want the file's, never asked", c, err, calls)
	}
	m.Prefetch("myapp.example.test")
	m = newTest(t, wild, false, allow)
	if _, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: "myapp.example.test"}); err != nil || calls != 1 {
		t.Errorf("without FallbackWins: %v, Allow asked %d times; want once", err, calls)
	}
}

// TestHTTPHandler: a challenge path with no pending token, over HTTPS,
// or for a name Allow refuses goes to the next handler, as does every
// other path; the next handler's Owns is kept.
func TestHTTPHandler(t *testing.T) {
	m := newTest(t, webtest.Cert(t, "localhost"), false, func(host string) bool { return host == "myapp.example.test" })
	next := &owns{}
	h := m.HTTPHandler(next)
	if o, ok := h.(interface{ Owns(string) bool }); !ok || !o.Owns("x") {
		t.Fatalf("the handler does not keep next's Owns: %T", h)
	}
	for _, tc := range []struct {
		host, path string
		tls        bool
	}{
		{"myapp.example.test", "/.well-known/acme-challenge/none", false},
		{"myapp.example.test:8080", "/.well-known/acme-challenge/none", false},
		{"myapp.example.test", "/.well-known/acme-challenge/none", true},
		{"other.example.test", "/.well-known/acme-challenge/none", false},
		{"myapp.example.test", "/", false},
	} {
		next.served = 0
		r := httptest.NewRequest("GET", "http://"+tc.host+tc.path, nil)
		if tc.tls {
			r.TLS = &tls.ConnectionState{}
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if next.served != 1 || w.Code != http.StatusTeapot {
			t.Errorf("%s%s (TLS %v): %d, next served %d times; want next's answer", tc.host, tc.path, tc.tls, w.Code, next.served)
		}
	}
	if _, ok := m.HTTPHandler(http.NotFoundHandler()).(interface{ Owns(string) bool }); ok {
		t.Error("a handler without Owns gained one")
	}
}

type owns struct{ served int }

func (o *owns) Owns(string) bool { return true }
func (o *owns) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.served++
	w.WriteHeader(http.StatusTeapot)
}

// TestNew: the required fields.
func TestNew(t *testing.T) {
	if _, err := New(Config{Dir: t.TempDir()}); err == nil {
		t.Error("New without Allow, Domain and Fallback: no error")
	}
}

// TestCASaid: the ACME client's transport notes each challenge type's
// error from an authorization the CA sends, passes the body on whole, and
// forgets a name once asked.
func TestCASaid(t *testing.T) {
	const authz = `{"identifier":{"type":"dns","value":"Bad.Example.Test"},"status":"invalid","challenges":[` +
		`{"type":"http-01","status":"invalid","error":{"detail":"connection refused"}},{"type":"dns-01","status":"pending"}]}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, authz)
	}))
	defer srv.Close()
	c := &caSaid{next: srv.Client().Transport, last: map[string]map[string]string{}}
	resp, err := (&http.Client{Transport: c}).Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != authz {
		t.Errorf("body %q, want it whole", body)
	}
	if got := c.take("bad.example.test"); got != "http-01: connection refused" {
		t.Errorf("take: %q", got)
	}
	if got := c.take("bad.example.test"); got != "" {
		t.Errorf("take again: %q, want nothing", got)
	}
}
