package cli

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/proxy"

	"github.com/pinhole-dev/pinhole/internal/sshtest"
	"github.com/pinhole-dev/pinhole/internal/streamtest"
)

// curlThrough checks every way curl uses a proxy against the -D port at
// proxyAddr, fetching origin's page by IP and by a name the far end
// resolves.
func curlThrough(t *testing.T, proxyAddr, originURLByIP, originURLByName, body string) {
	t.Helper()
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("skipping: curl is not installed (apt-get install curl, or run scripts/test)")
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"socks4", []string{"--socks4", proxyAddr, originURLByIP}},
		{"socks4a", []string{"--socks4a", proxyAddr, originURLByName}},
		{"socks5", []string{"--socks5", proxyAddr, originURLByIP}},
		{"socks5-hostname", []string{"--socks5-hostname", proxyAddr, originURLByName}},
		{"http", []string{"-x", "http://" + proxyAddr, originURLByName}},
		{"http-connect", []string{"-p", "-x", "http://" + proxyAddr, originURLByName}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, curl, append([]string{"-sS", "--max-time", "20"}, tc.args...)...).CombinedOutput()
			if err != nil || string(out) != body {
				t.Fatalf("curl %s: %v; got %q, want %q", strings.Join(tc.args, " "), err, out, body)
			}
		})
	}
}

func origin(t *testing.T, body string) (byIP, byName string) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, body)
	}))
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	return "http://127.0.0.1:" + port + "/", "http://localhost:" + port + "/"
}

// TestDynamicThroughPinhole: -D through pinhole server, with curl in every
// proxy mode, a 16 MiB byte-exact exchange with x/net/proxy's SOCKS5
// client, and a permitopen refusal answered fast with the right codes.
func TestDynamicThroughPinhole(t *testing.T) {
	const body = "hello from the far side"
	byIP, byName := origin(t, body)
	target := streamtest.NewTarget(t)
	_, originPort, _ := net.SplitHostPort(strings.TrimPrefix(strings.TrimSuffix(byIP, "/"), "http://"))
	w := newWorld(t, fmt.Sprintf(`permitopen="127.0.0.1:%s",permitopen="localhost:%s",permitopen="127.0.0.1:%d"`, originPort, originPort, target.Port()))
	c := start(t, w.connectArgs("-D", "0")...)
	addr := c.waitLine(t, `-D \S+: SOCKS4/4a/5 and HTTP proxy on (\S+),`)[1]

	curlThrough(t, addr, byIP, byName, body)

	t.Run("16MiB", func(t *testing.T) {
		d, err := proxy.SOCKS5("tcp", addr, nil, proxy.Direct)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := d.Dial("tcp", target.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := streamtest.Exchange(ctx, conn, 11, 16<<20, 16<<20); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("refused", func(t *testing.T) {
		// 127.0.0.1:9 is outside permitopen: SOCKS5 reply 0x02, HTTP 403.
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		began := time.Now()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		conn.Write([]byte{5, 1, 0})
		reply := make([]byte, 2)
		if _, err := conn.Read(reply); err != nil || reply[1] != 0 {
			t.Fatalf("SOCKS5 greeting: %v %v", reply, err)
		}
		conn.Write([]byte{5, 1, 0, 1, 127, 0, 0, 1, 0, 9})
		reply = make([]byte, 10)
		if _, err := conn.Read(reply); err != nil || reply[1] != 0x02 {
			t.Fatalf("SOCKS5 CONNECT outside permitopen: reply %v, %v; want code 0x02 (not allowed by ruleset)", reply, err)
		}
		if d := time.Since(began); d > 5*time.Second {
			t.Fatalf("a refusal took %v", d)
		}
		curl, err := exec.LookPath("curl")
		if err != nil {
			return
		}
		out, _ := exec.Command(curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "20", "-x", "http://"+addr, "http://127.0.0.1:9/").Output()
		if string(out) != "403" {
			t.Fatalf("HTTP proxy GET outside permitopen: status %q, want 403", out)
		}
	})
}

// TestDynamicThroughOpenSSHD: -D through a stock sshd, with curl.
func TestDynamicThroughOpenSSHD(t *testing.T) {
	const body = "hello through sshd"
	byIP, byName := origin(t, body)
	dir := t.TempDir()
	key := sshtest.NewKey(t, dir, "client")
	d := sshtest.StartSSHD(t, sshtest.SSHDConfig{AuthorizedKeys: key.AuthorizedLine})
	known := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(known, []byte(d.KnownHostsLine()), 0o600); err != nil {
		t.Fatal(err)
	}
	c := start(t, "connect", "-p", fmt.Sprint(d.Port), "-i", key.PrivateFile, "--known-hosts", known, "-D", "0", d.User+"@127.0.0.1")
	addr := c.waitLine(t, `-D \S+: SOCKS4/4a/5 and HTTP proxy on (\S+),`)[1]
	curlThrough(t, addr, byIP, byName, body)
}
