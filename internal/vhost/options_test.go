package vhost

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/auth"
)

// TestRouterOptions: a name's tunnel options are applied to each request:
// allow= (403), auth= (401 until the credentials; the Authorization
// header not passed on), host-header=; a request waits for options not
// settled yet, and gets 503 when they are refused.
func TestRouterOptions(t *testing.T) {
	r := &Router{Domain: "example.test"}
	settled := make(chan struct{})
	var opts auth.TunnelOptions
	var refused error
	ln, err := r.ListenName("myapp", 80, "alice", func(ctx context.Context) (auth.TunnelOptions, error) {
		select {
		case <-settled:
			return opts, refused
		case <-ctx.Done():
			return auth.TunnelOptions{}, ctx.Err()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	serve(t, ln)

	// Before the options settle, a request waits; auth= then applies to it.
	answer := make(chan int)
	go func() {
		code, _ := get(t, r, "myapp.example.test", nil)
		answer <- code
	}()
	select {
	case code := <-answer:
		t.Fatalf("answered %d before the options settled", code)
	case <-time.After(100 * time.Millisecond):
	}
	opts, _ = auth.ParseTunnelOptions("auth=u:p host-header=inside:8080 allow=192.0.2.0/24")
	close(settled)
	if code := <-answer; code != 401 {
		t.Errorf("a request waiting for auth=: %d, want 401", code)
	}

	basic := map[string]string{"Authorization": "Basic dTpw"} // u:p
	code, body := get(t, r, "myapp.example.test", basic)
	if want := "inside:8080|192.0.2.7|http|myapp.example.test|"; code != 200 || !strings.HasPrefix(body, want) {
		t.Errorf("with the credentials: %d %q, want 200 %q...", code, body, want)
	}
	if code, _ := get(t, r, "myapp.example.test", map[string]string{"Authorization": "Basic dTpx"}); code != 401 {
		t.Errorf("a wrong password: %d", code)
	}
	opts, _ = auth.ParseTunnelOptions("allow=10.0.0.0/8")
	if code, _ := get(t, r, "myapp.example.test", basic); code != 403 {
		t.Errorf("allow= without the client: %d, want 403", code)
	}
	refused = errors.New("refused")
	if code, _ := get(t, r, "myapp.example.test", basic); code != 503 {
		t.Errorf("refused options: %d, want 503", code)
	}
}
