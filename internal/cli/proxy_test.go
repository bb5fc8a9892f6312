package cli

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestProxyRefusesOpen(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"any", []string{"proxy", "--listen", "0.0.0.0:0"}},
		{"emptyhost", []string{"proxy", "--listen", ":0"}},
		{"ipv6any", []string{"proxy", "--listen", "[::]:0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var out, errOut syncBuffer
			code := Main(ctx, tc.args, &out, &errOut)
			if code != 1 {
				t.Errorf("exit code %d, want 1", code)
			}
			msg := errOut.String()
			for _, want := range []string{"pinhole proxy: ", "--proxy-auth", "--allow-open-proxy"} {
				if !strings.Contains(msg, want) {
					t.Errorf("stderr %q does not contain %q", msg, want)
				}
			}
			if out.String() != "" {
				t.Errorf("stdout %q, want nothing: the proxy must not have started", out.String())
			}
		})
	}
}

func TestProxyBadUsage(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		code int
	}{
		{"flag", []string{"proxy", "--no-such-flag"}, 2},
		{"arg", []string{"proxy", "extra"}, 2},
		{"auth", []string{"proxy", "--proxy-auth", "nocolon"}, 1},
		{"authfile", []string{"proxy", "--proxy-auth-file", "/nonexistent/pinhole-creds"}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := run(t, tc.args...)
			if code != tc.code {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, tc.code, errOut)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
		})
	}
}

func TestProxyRuns(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "through pinhole proxy")
	}))
	defer origin.Close()
	creds := filepath.Join(t.TempDir(), "creds")
	if err := os.WriteFile(creds, []byte("# users\nbob:hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		args []string
		user *url.Userinfo
	}{
		{"noauth", nil, nil},
		{"auth", []string{"--proxy-auth", "alice:s3cret"}, url.UserPassword("alice", "s3cret")},
		{"authfile", []string{"--proxy-auth-file", creds}, url.UserPassword("bob", "hunter2")},
		// Authentication makes a wildcard address acceptable.
		{"openwithauth", []string{"--listen", ":0", "--proxy-auth", "alice:s3cret"}, url.UserPassword("alice", "s3cret")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := start(t, append([]string{"proxy", "--listen", "127.0.0.1:0"}, tc.args...)...)
			m := p.waitLine(t, `^pinhole proxy: listening on (\S+) \(SOCKS4/4a/5 and HTTP\)$`)
			_, port, err := net.SplitHostPort(m[1])
			if err != nil {
				t.Fatal(err)
			}
			proxyURL := &url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", port), User: tc.user}
			tr := &http.Transport{Proxy: http.ProxyURL(proxyURL)}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr, Timeout: 20 * time.Second}).Get(origin.URL)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != "through pinhole proxy" {
				t.Errorf("body %q", body)
			}

			if tc.user != nil {
				// Without the user and password the proxy must refuse.
				noAuth := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: proxyURL.Host})}
				defer noAuth.CloseIdleConnections()
				resp, err := (&http.Client{Transport: noAuth, Timeout: 20 * time.Second}).Get(origin.URL)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusProxyAuthRequired {
					t.Errorf("without credentials: status %d, want 407", resp.StatusCode)
				}
			}

			p.cancel()
			select {
			case code := <-p.code:
				if code != 0 {
					t.Errorf("exit code %d after cancel, want 0; stderr:\n%s", code, p.stderr)
				}
				p.code <- code // for the cleanup of start
			case <-time.After(20 * time.Second):
				t.Fatal("pinhole proxy did not stop within 20 s of its context ending")
			}
		})
	}
}
