package cli

import (
	"bufio"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCheckDebugAddr(t *testing.T) {
	tests := []struct {
		addr    string
		wantErr string // "" for accepted
	}{
		{"127.0.0.1:6060", ""},
		{"127.0.0.1:0", ""},
		{"127.1.2.3:6060", ""},
		{"[::1]:6060", ""},
		{"localhost:6060", ""},
		{"LOCALHOST:6060", ""},
		{"[::ffff:127.0.0.1]:6060", ""},
		{":6060", "only a loopback address"},
		{"0.0.0.0:6060", "only a loopback address"},
		{"[::]:6060", "only a loopback address"},
		{"192.168.1.10:6060", "only a loopback address"},
		{"example.com:6060", "only a loopback address"},
		{"127.0.0.1", "want host:port"},
		{"6060", "want host:port"},
		{"127.0.0.1:", "bad port"},
		{"127.0.0.1:70000", "bad port"},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			err := checkDebugAddr(tt.addr)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("checkDebugAddr(%q) = %v; want it accepted", tt.addr, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("checkDebugAddr(%q) = %v; want an error with %q", tt.addr, err, tt.wantErr)
			}
		})
	}
}

// TestDebugAddrRefused: a non-loopback --debug-addr is a usage error of
// both subcommands, before anything starts.
func TestDebugAddrRefused(t *testing.T) {
	for _, args := range [][]string{
		{"server", "--debug-addr", "0.0.0.0:0", "--listen", "127.0.0.1:0"},
		{"connect", "--debug-addr", ":0", "-L", "1:h:2", "host"},
	} {
		t.Run(args[0], func(t *testing.T) {
			code, _, stderr := run(t, args...)
			if code != 2 || !strings.Contains(stderr, "only a loopback address") {
				t.Fatalf("pinhole %s: exit %d, stderr:\n%s\nwant exit 2 and the loopback refusal", strings.Join(args, " "), code, stderr)
			}
		})
	}
}

// TestDebugAddrServes: pinhole server --debug-addr serves the goroutine
// profile whose first line pinhole-bench -soak reads, and stops serving
// when the server stops.
func TestDebugAddrServes(t *testing.T) {
	dir := t.TempDir()
	srv := start(t, "server", "--debug-addr", "127.0.0.1:0", "--listen", "127.0.0.1:0",
		"--host-key", filepath.Join(dir, "k"), "--authorized-keys", filepath.Join(dir, "missing"))
	url := srv.waitLine(t, `debug: net/http/pprof on (http://127\.0\.0\.1:\d+/debug/pprof/)$`)[1]
	srv.waitLine(t, `listening on 127\.0\.0\.1:\d+`)
	hc := &http.Client{Timeout: 10 * time.Second}
	resp, err := hc.Get(url + "goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	first, err := bufio.NewReader(resp.Body).ReadString('\n')
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || !strings.HasPrefix(first, "goroutine profile: total ") {
		t.Fatalf("GET %sgoroutine?debug=1: %s, first line %q, %v", url, resp.Status, first, err)
	}

	srv.cancel()
	select {
	case <-srv.code:
	case <-time.After(20 * time.Second):
		t.Fatal("pinhole server did not stop")
	}
	srv.code <- 0 // for the cleanup's wait
	if resp, err := hc.Get(url); err == nil {
		resp.Body.Close()
		t.Fatalf("the debug server still answers after pinhole server stopped: %s", resp.Status)
	}
}
