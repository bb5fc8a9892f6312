package cli

import (
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/observe"
)

// TestDashboardTokenFile: --dashboard-token-file gives the dashboard its
// token from a file, as --dashboard-token would from argv: a request
// without it or with another gets 401, one with it the page. Both flags
// at once, or an empty file, are an error before the dashboard serves;
// connect and up take the flag too.
func TestDashboardTokenFile(t *testing.T) {
	dir := t.TempDir()
	base := []string{"server", "--listen", "127.0.0.1:0", "--host-key", filepath.Join(dir, "hk"), "--authorized-keys", filepath.Join(dir, "ak"), "--control", "none"}
	tokenFile := filepath.Join(dir, "dashboard-token")
	if err := os.WriteFile(tokenFile, []byte("  s3cret-dashboard-token \nsecond line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Run("serves", func(t *testing.T) {
		srv := start(t, append(append([]string(nil), base...), "--dashboard", "127.0.0.1:0", "--dashboard-token-file", tokenFile)...)
		addr := srv.waitLine(t, `dashboard on http://(\S+)/`)[1]
		client := &http.Client{Timeout: 10 * time.Second}
		for token, want := range map[string]int{"": http.StatusUnauthorized, "wrong": http.StatusUnauthorized, "second line": http.StatusUnauthorized, "s3cret-dashboard-token": http.StatusOK} {
			req, err := http.NewRequest("GET", "http://"+addr+"/api/snapshot", nil)
			if err != nil {
				t.Fatal(err)
			}
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			res, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != want {
				t.Errorf("token %q: %d, want %d", token, res.StatusCode, want)
			}
		}
	})
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"both", []string{"--dashboard", "127.0.0.1:0", "--dashboard-token", "x", "--dashboard-token-file", tokenFile}, "give one of them"},
		{"empty", []string{"--dashboard", "127.0.0.1:0", "--dashboard-token-file", empty}, "the first line is empty"},
		{"missing", []string{"--dashboard", "127.0.0.1:0", "--dashboard-token-file", filepath.Join(dir, "nothing")}, "--dashboard-token-file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := run(t, append(append([]string(nil), base...), tc.args...)...)
			if code != 1 || !strings.Contains(errOut, tc.want) {
				t.Errorf("exit code %d, stderr %q; want 1 and %q", code, errOut, tc.want)
			}
			if strings.Contains(out, "dashboard on") {
				t.Errorf("the dashboard started: %q", out)
			}
		})
	}
	for _, cmd := range []string{"connect", "up"} {
		_, out, errOut := run(t, cmd, "--help")
		if !strings.Contains(out+errOut, "-dashboard-token-file FILE") {
			t.Errorf("pinhole %s --help does not list --dashboard-token-file FILE:\n%s%s", cmd, out, errOut)
		}
	}
}

// TestDashboardTimeouts: the dashboard's server, like the metrics', lets
// go of a client slow to send its headers and of an idle keep-alive
// connection.
func TestDashboardTimeouts(t *testing.T) {
	e := &env{stdout: io.Discard, stderr: io.Discard, log: slog.New(slog.DiscardHandler)}
	d, err := newDashboard(e, "127.0.0.1:0", "", "server", func() observe.Snapshot { return observe.Snapshot{} })
	if err != nil {
		t.Fatal(err)
	}
	defer d.ln.Close()
	if d.srv.ReadHeaderTimeout <= 0 || d.srv.IdleTimeout <= 0 {
		t.Errorf("the dashboard's http.Server: ReadHeaderTimeout %v, IdleTimeout %v; want both set", d.srv.ReadHeaderTimeout, d.srv.IdleTimeout)
	}
}
