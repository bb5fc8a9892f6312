package vhost

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPassthroughOwnership: a name's 443 forward follows the name's
// rules: one key's, beside its 80 forward; one live forward per port;
// the two count as one name toward the per-key cap; only 80 and 443.
func TestPassthroughOwnership(t *testing.T) {
	r := &Router{Domain: "example.test", Store: &FileStore{Path: filepath.Join(t.TempDir(), "names.json")}, MaxNamesPerKey: 1}
	if got := r.Name("secure", 443, "A"); got != "secure" {
		t.Errorf("Name(secure, 443) = %q", got)
	}
	if got := r.Name("secure", 8443, "A"); got != "" {
		t.Errorf("Name(secure, 8443) = %q, want a plain port", got)
	}
	tl, err := r.ListenName("secure", 443, "A", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.ListenName("secure", 443, "A", nil); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("a second 443 forward: %v, want EADDRINUSE", err)
	}
	if _, err := r.ListenName("secure", 80, "B", nil); !errors.Is(err, ErrHeld) {
		t.Errorf("another key's 80 forward: %v, want ErrHeld", err)
	}
	hl, err := r.ListenName("secure", 80, "A", nil)
	if err != nil {
		t.Fatalf("the same key's 80 forward beside its 443 one: %v", err)
	}
	if _, err := r.ListenName("other", 443, "A", nil); err == nil || !strings.Contains(err.Error(), "--max-names-per-key 1") {
		t.Errorf("a second name past the cap: %v", err)
	}
	if _, err := r.ListenName("secure", 22, "A", nil); err == nil || !strings.Contains(err.Error(), "-R secure:443:") {
		t.Errorf("port 22: %v", err)
	}
	for host, want := range map[string]bool{"secure.example.test": true, "SECURE.example.test.": true, "web.example.test": false, "example.test": false, "secure.other.test": false} {
		if got := r.Passthrough(host) != nil; got != want {
			t.Errorf("Passthrough(%q): %v, want %v", host, got, want)
		}
	}

	// A connection handed over arrives at Accept.
	a, b := net.Pipe()
	defer b.Close()
	go r.Passthrough("secure.example.test")(a)
	got, err := tl.Accept()
	if err != nil || got != a {
		t.Fatalf("Accept: %v, %v", got, err)
	}
	tl.Close()
	if r.Passthrough("secure.example.test") != nil {
		t.Error("Passthrough after its forward closed")
	}
	// Its 80 forward still holds the name for A.
	if _, err := r.ListenName("secure", 443, "B", nil); !errors.Is(err, ErrHeld) {
		t.Errorf("another key's 443 forward while A's 80 one lives: %v, want ErrHeld", err)
	}
	hl.Close()
}

// TestPassthroughHTTP: plain HTTP to a name with only a 443 forward is
// sent to https:// with its path and query; HTTPS that ended here for
// it is misdirected.
func TestPassthroughHTTP(t *testing.T) {
	r := &Router{Domain: "example.test"}
	r.SetPorts(8080, 8443)
	l, err := r.ListenName("secure", 443, "A", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	w := httptest.NewRecorder()
	r.ServeHTTP(w, httptest.NewRequest("POST", "http://secure.example.test:8080/a/b?c=d", nil))
	if w.Code != http.StatusPermanentRedirect || w.Header().Get("Location") != "https://secure.example.test:8443/a/b?c=d" {
		t.Errorf("plain HTTP: %d %q", w.Code, w.Header().Get("Location"))
	}
	w = httptest.NewRecorder()
	r.ServeHTTP(w, httptest.NewRequest("GET", "https://secure.example.test/", nil))
	if w.Code != http.StatusMisdirectedRequest {
		t.Errorf("HTTPS ended here: %d", w.Code)
	}
}

// TestPassthroughHandTimesOut: a forward that does not accept gets the
// connection closed after the upstream timeout, not held.
func TestPassthroughHandTimesOut(t *testing.T) {
	r := &Router{Domain: "example.test", UpstreamTimeout: 50 * time.Millisecond}
	l, err := r.ListenName("secure", 443, "A", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a, b := net.Pipe()
	done := make(chan struct{})
	go func() { r.Passthrough("secure.example.test")(a); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("hand did not give up")
	}
	b.SetReadDeadline(time.Now().Add(time.Second))
	if _, err := b.Read(make([]byte, 1)); err == nil {
		t.Error("the connection was not closed")
	}
}
