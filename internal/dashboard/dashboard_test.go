package dashboard

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/observe"
	"github.com/pinhole-dev/pinhole/internal/spec"
)

func snap() observe.Snapshot {
	return observe.Snapshot{Role: "server", Time: time.Now(), Sessions: []observe.Session{}, Tunnels: []observe.Tunnel{}, Events: []observe.Event{}}
}

func get(h http.Handler, target, host string, mod func(*http.Request)) *httptest.ResponseRecorder {
	r := httptest.NewRequest("GET", target, nil)
	r.Host = host
	if mod != nil {
		mod(r)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func TestAssetsAndHeaders(t *testing.T) {
	h := &Handler{Snapshot: snap}
	for path, ctype := range map[string]string{"/": "text/html", "/style.css": "text/css", "/app.js": "text/javascript", "/api/snapshot": "application/json"} {
		w := get(h, path, "127.0.0.1:8081", nil)
		if w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), ctype) || w.Body.Len() == 0 {
			t.Errorf("GET %s: %d %q, %d bytes; want 200 %s", path, w.Code, w.Header().Get("Content-Type"), w.Body.Len(), ctype)
		}
		if csp := w.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("GET %s: CSP %q; want everything from the page's own origin", path, csp)
		}
	}
	// Nothing on the page comes from elsewhere.
	// (The SVG namespace is a name, not a place anything loads from.)
	other := regexp.MustCompile(`(https?:)?//[a-z0-9.-]+\.[a-z]{2,}`)
	for _, name := range []string{"index.html", "app.js", "style.css"} {
		b, err := assets.ReadFile("assets/" + name)
		if err != nil {
			t.Fatal(err)
		}
		text := strings.ReplaceAll(string(b), `"http://www.w3.org/2000/svg"`, "")
		if m := other.FindString(text); m != "" {
			t.Errorf("%s names another origin: %s", name, m)
		}
	}
	if w := get(h, "/nothing", "localhost", nil); w.Code != 404 {
		t.Errorf("GET /nothing: %d; want 404", w.Code)
	}
}

// TestHost: without a token only a loopback Host is answered (DNS
// rebinding: a page on evil.example whose name now points at 127.0.0.1).
func TestHost(t *testing.T) {
	h := &Handler{Snapshot: snap}
	for host, want := range map[string]int{"127.0.0.1:8081": 200, "localhost:8081": 200, "[::1]:8081": 200, "evil.example:8081": 403, "192.0.2.1": 403} {
		if w := get(h, "/api/snapshot", host, nil); w.Code != want {
			t.Errorf("Host %s: %d; want %d", host, w.Code, want)
		}
	}
}

func TestToken(t *testing.T) {
	h := &Handler{Snapshot: snap, Token: "s3cret"}
	if w := get(h, "/api/snapshot", "dash.example", nil); w.Code != 401 || !strings.Contains(w.Body.String(), "?token=") {
		t.Errorf("without the token: %d %q; want 401 saying how", w.Code, w.Body)
	}
	if w := get(h, "/?token=wrong", "dash.example", nil); w.Code != 401 {
		t.Errorf("a wrong token: %d; want 401", w.Code)
	}
	w := get(h, "/?token=s3cret&x=1", "dash.example", nil)
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/?x=1" {
		t.Fatalf("the token in the URL: %d to %q; want a redirect to the page without it", w.Code, w.Header().Get("Location"))
	}
	cookie := w.Result().Cookies()[0]
	if !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode {
		t.Errorf("cookie %+v; want HttpOnly, SameSite=Strict", cookie)
	}
	if w := get(h, "/api/snapshot", "dash.example", func(r *http.Request) { r.AddCookie(cookie) }); w.Code != 200 {
		t.Errorf("with the cookie: %d; want 200", w.Code)
	}
	if w := get(h, "/api/snapshot", "dash.example", func(r *http.Request) { r.Header.Set("Authorization", "Bearer s3cret") }); w.Code != 200 {
		t.Errorf("with a bearer token: %d; want 200", w.Code)
	}
}

func TestCheckAddr(t *testing.T) {
	for _, tc := range []struct {
		addr  string
		token bool
		ok    bool
	}{{"127.0.0.1:0", false, true}, {"localhost:8081", false, true}, {"[::1]:8081", false, true},
		{":8081", false, false}, {"0.0.0.0:8081", false, false}, {"0.0.0.0:8081", true, true}, {"nonsense", true, false}, {"127.0.0.1:x", false, false}} {
		if err := CheckAddr(tc.addr, tc.token); (err == nil) != tc.ok {
			t.Errorf("CheckAddr(%q, token %v) = %v; want ok %v", tc.addr, tc.token, err, tc.ok)
		}
	}
}

// TestEvents: the stream sends a snapshot a second, with rates from the
// second on.
func TestEvents(t *testing.T) {
	n := int64(0)
	h := &Handler{Snapshot: func() observe.Snapshot {
		s := snap()
		n += 5000
		s.Totals.BytesToTarget = n
		return s
	}}
	srv := httptest.NewServer(h)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q", ct)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	var got []observe.Snapshot
	for len(got) < 2 && sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			var s observe.Snapshot
			if err := json.Unmarshal([]byte(d), &s); err != nil {
				t.Fatal(err)
			}
			got = append(got, s)
		}
	}
	if len(got) != 2 || got[0].RateSeconds != 0 || got[1].RateSeconds < 0.5 || got[1].Totals.RateToTarget <= 0 {
		t.Fatalf("events %+v; want two snapshots, the second with rates over about a second", got)
	}
}

// FuzzLoopbackHost: any Host header is judged by spec.LoopbackHost, the
// dashboard's check of a request without a token, without a panic, and
// one judged loopback names localhost or a loopback address.
func FuzzLoopbackHost(f *testing.F) {
	for _, s := range []string{"127.0.0.1:8081", "localhost", "[::1]:80", "[::ffff:127.0.0.1]", "evil.example", "127.0.0.1.nip.io", "", "[", "::1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		if !spec.LoopbackHost(host) {
			return
		}
		h := host
		if x, _, err := net.SplitHostPort(host); err == nil {
			h = x
		}
		h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
		if a, err := netip.ParseAddr(h); !strings.EqualFold(h, "localhost") && (err != nil || !a.Unmap().IsLoopback()) {
			t.Fatalf("%q judged loopback", host)
		}
	})
}
