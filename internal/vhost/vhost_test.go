package vhost

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestCheckName(t *testing.T) {
	for _, ok := range []string{"myapp", "a", "x-1", "0a", strings.Repeat("a", 63)} {
		if err := CheckName(ok); err != nil {
			t.Errorf("CheckName(%q): %v", ok, err)
		}
	}
	for _, tc := range []struct{ name, want string }{
		{"", "empty"},
		{strings.Repeat("a", 64), "at most 63"},
		{"MyApp", `ask for "myapp"`},
		{"my.app", "has a dot"},
		{"-app", "hyphen"},
		{"app-", "hyphen"},
		{"my_app", "'_'"},
		{"café", "'é'"},
	} {
		err := CheckName(tc.name)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CheckName(%q): %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
}

func TestName(t *testing.T) {
	r := &Router{Domain: "example.test"}
	key := "SHA256:abc"
	for _, tc := range []struct {
		host string
		port uint32
		want string
	}{
		{"myapp", 80, "myapp"},
		{"", 80, KeyName(key)},
		{"localhost", 80, KeyName(key)},
		{"127.0.0.1", 80, ""},
		{"*", 80, ""},
		{"myapp", 8080, ""},
	} {
		if got := r.Name(tc.host, tc.port, key); got != tc.want {
			t.Errorf("Name(%q, %d) = %q, want %q", tc.host, tc.port, got, tc.want)
		}
	}
	if a, b := KeyName("SHA256:a"), KeyName("SHA256:b"); a == b || CheckName(a) != nil || a != KeyName("SHA256:a") {
		t.Errorf("KeyName: %q and %q: want two different, stable, valid names", a, b)
	}
}

func TestFileStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", "names.json")
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	s := &FileStore{Path: path, TTL: time.Hour}
	if err := s.Claim("myapp", "alice", now); err != nil {
		t.Fatal(err)
	}
	if err := s.Claim("myapp", "bob", now); !errors.Is(err, ErrHeld) || !strings.Contains(err.Error(), "connected now") {
		t.Errorf("bob while alice is connected: %v", err)
	}
	if err := s.Release("myapp", "alice", now); err != nil {
		t.Fatal(err)
	}
	// Across a restart: the file remembers alice.
	s = &FileStore{Path: path, TTL: time.Hour}
	if err := s.Claim("myapp", "bob", now.Add(59*time.Minute)); !errors.Is(err, ErrHeld) || !strings.Contains(err.Error(), "free again from 2026-12-01T13:00:00Z") {
		t.Errorf("bob within the TTL: %v", err)
	}
	if err := s.Claim("myapp", "alice", now.Add(59*time.Minute)); err != nil {
		t.Errorf("alice again: %v", err)
	}
	s.Release("myapp", "alice", now.Add(time.Hour))
	if err := s.Claim("myapp", "bob", now.Add(2*time.Hour+time.Second)); err != nil {
		t.Errorf("bob after the TTL: %v", err)
	}
}

// serve accepts the name's connections and answers each request with
// what it saw, as a service behind a tunnel would.
func serve(t *testing.T, ln net.Listener) {
	t.Helper()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, strings.Join([]string{r.Host, r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Forwarded-Host"), r.Header.Get("Forwarded")}, "|"))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

func get(t *testing.T, h http.Handler, host string, header map[string]string) (int, string) {
	t.Helper()
	req := httptest.NewRequest("GET", "http://"+host+"/x", nil)
	req.RemoteAddr = "192.0.2.7:5555"
	for k, v := range header {
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w.Code, w.Body.String()
}

func TestRouter(t *testing.T) {
	r := &Router{Domain: "example.test", Store: &FileStore{Path: filepath.Join(t.TempDir(), "names.json")}}
	ln, err := r.ListenName("myapp", 80, "alice", nil)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, ln)
	if ln.Addr().String() != "https://myapp.example.test" {
		t.Errorf("Addr %s", ln.Addr())
	}
	code, body := get(t, r, "MyApp.Example.Test.", map[string]string{"X-Forwarded-For": "6.6.6.6", "Forwarded": "for=6.6.6.6", "X-Real-IP": "6.6.6.6"})
	if want := "myapp.example.test|192.0.2.7|http|myapp.example.test|for=192.0.2.7;host=\"myapp.example.test\";proto=http"; code != 200 || body != want {
		t.Errorf("got %d %q\nwant 200 %q", code, body, want)
	}
	for _, host := range []string{"other.example.test", "example.test", "a.b.example.test", "myapp.example.org", ""} {
		if code, _ := get(t, r, host, nil); code != 404 {
			t.Errorf("%q: %d, want 404", host, code)
		}
	}
	if _, err := r.ListenName("myapp", 80, "alice", nil); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("a second listener for a live name: %v, want EADDRINUSE", err)
	}
	if _, err := r.ListenName("myapp", 8080, "alice", nil); err == nil {
		t.Error("a name on port 8080: no error")
	}
	ln.Close()
	if code, body := get(t, r, "myapp.example.test", nil); code != 404 || !strings.Contains(body, "No tunnel") {
		t.Errorf("after Close: %d %q", code, body)
	}
	if _, err := r.ListenName("myapp", 80, "bob", nil); !errors.Is(err, ErrHeld) {
		t.Errorf("bob after alice left: %v, want ErrHeld", err)
	}
}

func TestRouterServiceDown(t *testing.T) {
	r := &Router{Domain: "example.test", UpstreamTimeout: 200 * time.Millisecond}
	ln, err := r.ListenName("down", 80, "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the client refuses: the forward closes what it accepted
		defer wg.Done()
		c, err := ln.Accept()
		if err == nil {
			c.Close()
		}
	}()
	if code, body := get(t, r, "down.example.test", nil); code != 502 || !strings.Contains(body, "did not answer") {
		t.Errorf("refused: %d %q, want 502", code, body)
	}
	wg.Wait()
	go func() { // the service takes the connection and never answers
		c, err := ln.Accept()
		if err == nil {
			defer c.Close()
			io.Copy(io.Discard, c)
		}
	}()
	if code, _ := get(t, r, "down.example.test", nil); code != 504 {
		t.Errorf("silent: %d, want 504", code)
	}
}

// FuzzRoute: whatever Host a public client sends, the router answers
// without a panic, and only a live name reaches a service.
func FuzzRoute(f *testing.F) {
	for _, s := range []string{"myapp.example.test", "x.example.test:443", "[::1]:80", ".example.test", "example.test.", "\x00"} {
		f.Add(s)
	}
	r := &Router{Domain: "example.test"}
	f.Fuzz(func(t *testing.T, host string) {
		req := httptest.NewRequest("GET", "http://placeholder/", nil)
		req.Host = host
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)
		if w.Code != 404 {
			t.Fatalf("%q: %d with no names held", host, w.Code)
		}
		// A single label under the domain (any case, any port, one
		// trailing dot) is a name with no tunnel; anything else is not
		// the router's. Worked out here without the router's own code.
		h := strings.ToLower(host)
		if i := strings.LastIndex(h, ":"); i >= 0 && !strings.Contains(h[i:], "]") {
			if _, _, err := net.SplitHostPort(h); err == nil {
				h = h[:i]
			}
		}
		h = strings.TrimSuffix(h, ".")
		label, under := strings.CutSuffix(h, ".example.test")
		wantName := under && label != "" && !strings.Contains(label, ".")
		if got := strings.Contains(w.Body.String(), "No tunnel"); got != wantName {
			t.Fatalf("%q: the no-tunnel page %v, want %v (label %q)", host, got, wantName, label)
		}
	})
}

func TestMaxNamesPerKey(t *testing.T) {
	r := &Router{Domain: "example.test", MaxNamesPerKey: 2}
	for i, name := range []string{"a", "b"} {
		ln, err := r.ListenName(name, 80, "alice", nil)
		if err != nil {
			t.Fatalf("name %d: %v", i, err)
		}
		defer ln.Close()
	}
	if _, err := r.ListenName("c", 80, "alice", nil); err == nil || !strings.Contains(err.Error(), "--max-names-per-key 2") {
		t.Errorf("a third name: %v, want the limit named", err)
	}
	ln, err := r.ListenName("c", 80, "bob", nil)
	if err != nil {
		t.Errorf("another key at alice's limit: %v", err)
	} else {
		ln.Close()
	}
}

func TestKeyNamesAndHeldNames(t *testing.T) {
	r := &Router{Domain: "example.test", MaxNamesPerKey: 2, Store: &FileStore{Path: filepath.Join(t.TempDir(), "names.json")}}
	// A name of the key-name form is only its own key's.
	if _, err := r.ListenName(KeyName("bob"), 80, "alice", nil); err == nil || !strings.Contains(err.Error(), "not this key's") {
		t.Errorf("alice asking for bob's key name: %v", err)
	}
	ln, err := r.ListenName(KeyName("alice"), 80, "alice", nil)
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	// Names dropped but kept within the TTL count toward the cap.
	ln, err = r.ListenName("a", 80, "alice", nil)
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
	if _, err := r.ListenName("b", 80, "alice", nil); err == nil || !strings.Contains(err.Error(), "max-names-per-key") {
		t.Errorf("a third name while two are kept: %v", err)
	}
	if ln, err := r.ListenName("a", 80, "alice", nil); err != nil {
		t.Errorf("one of its kept names again: %v", err)
	} else {
		ln.Close()
	}
}

// TestCustomDomain: a name with a dot is a domain of its own, routed by
// its whole Host; NAME.Domain in full is the name NAME.
func TestCustomDomain(t *testing.T) {
	r := &Router{Domain: "example.test"}
	for host, want := range map[string]string{"shop.example.org": "shop.example.org", "myapp.example.test": "myapp", "x.y.example.test": "x.y.example.test"} {
		if got := r.Name(host, 80, "k"); got != want {
			t.Errorf("Name(%q) = %q, want %q", host, got, want)
		}
	}
	for _, bad := range []string{"shop..example.org", "Shop.example.org", "-a.example.org", strings.Repeat("a.", 127) + "org"} {
		if err := CheckDomain(bad); err == nil {
			t.Errorf("CheckDomain(%q): no error", bad)
		}
	}
	// The server's own names are no one's custom domain.
	r.Reserved = []string{"ssh.example.org"}
	for _, own := range []string{"example.test", "x.myapp.example.test", "ssh.example.org"} {
		for _, port := range []uint32{80, 443} {
			if _, err := r.ListenName(own, port, "k", nil); err == nil || !strings.Contains(err.Error(), "this server's") {
				t.Errorf("ListenName(%q, %d): %v, want refused as the server's own", own, port, err)
			}
		}
	}
	if r.Owns("example.test") || r.Passthrough("example.test") != nil {
		t.Error("the domain itself is routed to a tunnel")
	}
	if _, err := r.ListenName("shop..example.org", 80, "k", nil); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("ListenName of a domain with an empty label: %v", err)
	}
	ln, err := r.ListenName("shop.example.org", 80, "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	serve(t, ln)
	if ln.Addr().String() != "https://shop.example.org" || !r.Owns("Shop.Example.Org:8080") {
		t.Errorf("Addr %s, Owns %v", ln.Addr(), r.Owns("shop.example.org"))
	}
	if code, body := get(t, r, "shop.example.org", nil); code != 200 || !strings.HasPrefix(body, "shop.example.org|192.0.2.7|http|shop.example.org|") {
		t.Errorf("the custom domain: %d %q", code, body)
	}
	ln.Close()
	if r.Owns("shop.example.org") {
		t.Error("Owns a custom domain with no tunnel")
	}
	if code, _ := get(t, r, "shop.example.org", nil); code != 404 {
		t.Errorf("after Close: %d, want 404", code)
	}
}

// TestRouterStreams: an answer without a length (server-sent events, a
// stream) reaches the public client as the service writes it, not when
// it ends; one with a Content-Length comes whole.
func TestRouterStreams(t *testing.T) {
	r := &Router{Domain: "example.test"}
	ln, err := r.ListenName("live", 80, "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	release := make(chan struct{})
	svc := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/sized" {
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "sized")
			return
		}
		w.Header().Set("Content-Type", req.URL.Query().Get("type"))
		io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		<-release // the rest only once the client has had the first part
		io.WriteString(w, "data: two\n\n")
	})}
	go svc.Serve(ln)
	defer svc.Close()
	public := httptest.NewServer(r)
	defer public.Close()
	defer close(release)
	get := func(path string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", public.URL+path, nil)
		req.Host = "live.example.test"
		resp, err := public.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	for _, typ := range []string{"text/event-stream", "application/octet-stream"} {
		resp := get("/events?type=" + typ)
		buf := make([]byte, len("data: one\n\n"))
		done := make(chan error, 1)
		go func() { _, err := io.ReadFull(resp.Body, buf); done <- err }()
		select {
		case err := <-done:
			if err != nil || string(buf) != "data: one\n\n" {
				t.Errorf("%s: %q, %v", typ, buf, err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%s: the first event did not come through before the answer ended", typ)
		}
		release <- struct{}{}
		resp.Body.Close()
	}
	resp := get("/sized")
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(b) != "sized" || resp.ContentLength != 5 {
		t.Errorf("sized: %q, length %d, %v", b, resp.ContentLength, err)
	}
}
