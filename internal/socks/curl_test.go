package socks

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestCurl runs the real curl against the proxy, in each of the ways it
// can use one.
func TestCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("skipping: curl is not installed (apt-get install curl)")
	}
	const body = "hello through the proxy"
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Proxy-Authorization") != "" {
			t.Errorf("origin got Proxy-Authorization")
		}
		fmt.Fprint(w, body)
	}))
	defer origin.Close()
	_, port, _ := net.SplitHostPort(origin.Listener.Addr().String())
	byIP := "http://127.0.0.1:" + port + "/"
	byName := "http://localhost:" + port + "/" // resolved by the proxy

	open := startServer(t, &Server{})
	authed := startServer(t, &Server{Credentials: StaticCredentials{"alice": "s3cret"}})

	for _, tc := range []struct {
		name string
		args []string
		fail bool   // curl must exit non-zero
		code string // curl's -w output, if checked
	}{
		{"socks4", []string{"--socks4", open, byIP}, false, ""},
		{"socks4a", []string{"--socks4a", open, byName}, false, ""},
		{"socks5", []string{"--socks5", open, byIP}, false, ""},
		{"socks5-hostname", []string{"--socks5-hostname", open, byName}, false, ""},
		{"http", []string{"-x", "http://" + open, byName}, false, ""},
		{"http-connect", []string{"-p", "-x", "http://" + open, byName}, false, ""},
		{"socks5-auth", []string{"--socks5-hostname", authed, "--proxy-user", "alice:s3cret", byName}, false, ""},
		{"http-auth", []string{"-x", "http://" + authed, "--proxy-user", "alice:s3cret", byName}, false, ""},
		{"http-connect-auth", []string{"-p", "-x", "http://" + authed, "--proxy-user", "alice:s3cret", byName}, false, ""},
		{"socks4-auth", []string{"--socks4", authed, byIP}, true, ""},
		{"socks5-wrong", []string{"--socks5-hostname", authed, "--proxy-user", "alice:wrong", byName}, true, ""},
		{"socks5-none", []string{"--socks5-hostname", authed, byName}, true, ""},
		{"http-wrong", []string{"-x", "http://" + authed, "--proxy-user", "alice:wrong", "-w", "%{http_code}", byName}, false, "407"},
		{"http-connect-wrong", []string{"-p", "-x", "http://" + authed, "--proxy-user", "alice:wrong", "-w", "%{http_connect}", byName}, true, "407"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			args := append([]string{"-q", "-sS", "--max-time", "20", "--noproxy", ""}, tc.args...)
			cmd := exec.CommandContext(ctx, curl, args...)
			cmd.Env = []string{"PATH=/usr/bin:/bin"} // no *_proxy variables
			out, err := cmd.Output()
			if tc.fail {
				if err == nil {
					t.Errorf("curl %s succeeded with %q, want failure", strings.Join(args, " "), out)
				}
			} else if err != nil {
				t.Fatalf("curl %s: %v: %s", strings.Join(args, " "), err, stderrOf(err))
			}
			switch {
			case tc.code != "":
				if !strings.HasSuffix(string(out), tc.code) {
					t.Errorf("curl printed %q, want it to end in %s", out, tc.code)
				}
			case !tc.fail && string(out) != body:
				t.Errorf("curl printed %q, want %q", out, body)
			}
		})
	}
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}
