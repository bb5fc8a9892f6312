package cli

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/ssh"
	"github.com/pinhole-dev/pinhole/internal/sshtest"
)

// headerEcho is a web service that answers with what it was sent.
func headerEcho(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "host=%s xff=%s proto=%s path=%s\n", r.Host, r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"), r.URL.Path)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// curlGet runs curl against https:// or http://NAME.example.test on the
// server's port, resolved to 127.0.0.1.
func curlGet(t *testing.T, url, port, ca string, extra ...string) (code, body string) {
	t.Helper()
	host := strings.SplitN(strings.SplitN(url, "://", 2)[1], "/", 2)[0]
	args := append([]string{"-s", "--max-time", "10", "--resolve", host + ":" + port + ":127.0.0.1", "--cacert", ca, "-w", "\n%{http_code}"}, extra...)
	out, err := exec.Command("curl", append(args, strings.Replace(url, host, host+":"+port, 1))...).Output()
	if err != nil {
		t.Fatalf("curl %s: %v\n%s", url, err, out)
	}
	s := strings.TrimSpace(string(out))
	i := strings.LastIndex(s, "\n")
	if i < 0 {
		return s, ""
	}
	return s[i+1:], strings.TrimSpace(s[:i])
}

// TestNamesStockSSH: with --domain, a stock ssh -R myapp:80:... makes
// https://myapp.DOMAIN and http://myapp.DOMAIN reach its service, with
// X-Forwarded-For of the real client (not the one the client claims); a
// name nobody holds is a 404, a service that is down a 502, and another
// key cannot take a held name.
func TestNamesStockSSH(t *testing.T) {
	n := startStockNames(t, "--upstream-timeout", "2s")
	dir, key, other, cert, srv, addr, port, known, waitLog := n.dir, n.key, n.other, n.cert, n.srv, n.addr, n.port, n.known, n.waitLog
	srv.waitLine(t, `names under example\.test: .* gives https://myapp\.example\.test:`+port)
	service := headerEcho(t)

	first := sshtest.StartSSH(t, sshtest.SSHOptions{Addr: addr, User: "tester", Key: key, KnownHosts: known,
		Args: []string{"-R", fmt.Sprintf("myapp:80:127.0.0.1:%d", service), "-R", "down:80:127.0.0.1:1"}})
	waitLog(`laddr=https://myapp.example.test:` + port)
	waitLog(`laddr=https://down.example.test:` + port)

	code, body := curlGet(t, "https://myapp.example.test/hello", port, cert.CertFile, "-H", "X-Forwarded-For: 6.6.6.6")
	if want := fmt.Sprintf("host=myapp.example.test:%s xff=127.0.0.1 proto=https path=/hello", port); code != "200" || body != want {
		t.Errorf("https: %s %q\nwant 200 %q", code, body, want)
	}
	if code, body = curlGet(t, "https://myapp.example.test/ssh", port, cert.CertFile); code != "200" || !strings.Contains(body, "path=/ssh") {
		t.Errorf("/ssh of a name is the service's: %s %q", code, body)
	}
	code, body = curlGet(t, "http://myapp.example.test/", port, cert.CertFile)
	if code != "200" || !strings.Contains(body, "proto=http ") {
		t.Errorf("http: %s %q", code, body)
	}
	if code, body = curlGet(t, "https://nobody.example.test/", port, cert.CertFile); code != "404" || !strings.Contains(body, "No tunnel") {
		t.Errorf("a name nobody holds: %s %q", code, body)
	}
	if code, _ = curlGet(t, "https://down.example.test/", port, cert.CertFile); code != "502" {
		t.Errorf("a service that is down: %s, want 502", code)
	}

	// Another key asking for myapp is refused, with the reason; pinhole
	// connect shows it.
	c := start(t, "connect", "-F", "none", "-i", other.PrivateFile, "--known-hosts", filepath.Join(dir, "kh2"), "-p", port,
		"-R", fmt.Sprintf("myapp:80:127.0.0.1:%d", service), "tester@127.0.0.1")
	c.waitLine(t, `-R myapp:80:\S+: refused by the server for now \(.*myapp is already forwarded by another client; pick another name`)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://127.0.0.1:"+port+"/", nil)
	req.Host = "myapp.example.test"
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "xff=127.0.0.1") {
		t.Errorf("myapp after the refused claim: %s %q; want the first tunnel still serving", resp.Status, b)
	}

	// The first client goes: the name stays its key's (names.json), so
	// the other key, still asking, is refused for that reason; the
	// first key, back, gets it.
	first.Stop()
	waitLog(`msg="name freed" name=myapp`)
	waitLog(`belongs to another key; it is free again from`)
	sshtest.StartSSH(t, sshtest.SSHOptions{Addr: addr, User: "tester", Key: key, KnownHosts: known,
		Args: []string{"-R", fmt.Sprintf("myapp:80:127.0.0.1:%d", service)}})
	deadline := time.Now().Add(15 * time.Second)
	for {
		if code, _ := curlGet(t, "https://myapp.example.test/", port, cert.CertFile); code == "200" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("myapp did not come back to its key:\n%s", srv.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "names.json")); err != nil || !strings.Contains(string(b), `"myapp"`) {
		t.Errorf("names.json: %s, %v", b, err)
	}

	// pinhole connect prints the URL a name got, and -R 80 with no name
	// gets one made from the key.
	p := start(t, "connect", "-F", "none", "-i", key.PrivateFile, "--known-hosts", filepath.Join(dir, "kh3"), "-p", port,
		"-R", fmt.Sprintf("pin:80:127.0.0.1:%d", service), "-R", fmt.Sprintf("80:127.0.0.1:%d", service), "tester@127.0.0.1")
	p.waitLine(t, `-R pin:80:\S+: https://pin\.example\.test:`+port+`, connecting to 127\.0\.0\.1:`)
	keyURL := p.waitLine(t, `-R 80:\S+: (https://k[a-z2-7]{11}\.example\.test:`+port+`),`)[1]
	if code, body := curlGet(t, strings.TrimSuffix(strings.Replace(keyURL, ":"+port, "", 1), "/")+"/", port, cert.CertFile); code != "200" || !strings.Contains(body, "proto=https") {
		t.Errorf("%s: %s %q", keyURL, code, body)
	}
}

// wsNameClient is python3-websockets opening wss://NAME.example.test on
// loopback and echoing three messages through the name's WebSocket.
const wsNameClient = `
import asyncio, ssl, sys, websockets
async def main():
    url, port, ca, name = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    ctx = ssl.create_default_context(cafile=ca)
    async with websockets.connect(url, host="127.0.0.1", port=port, ssl=ctx, server_hostname=name, open_timeout=5) as ws:
        for m in ["one", "two", "three" * 1000]:
            await ws.send(m)
            got = await asyncio.wait_for(ws.recv(), 5)
            if got != m:
                raise SystemExit("sent %r, got %r" % (m[:20], got[:20]))
    print("ok")
asyncio.run(main())
`

// TestNamesConcurrentAndWebSocket: 100 concurrent HTTPS requests spread
// over three names of one pinhole connect each get their own answer, and
// a WebSocket (python3-websockets) echoes through a name.
func TestNamesConcurrentAndWebSocket(t *testing.T) {
	// With the default SSH limits: HTTP connections have their own.
	port, cert := startThreeNames(t)
	getThreeNames(t, namesClient(cert, port, false), port, 100, 1)

	if out, err := exec.Command(debianPython, "-c", "import websockets").CombinedOutput(); err != nil {
		t.Skipf("skipping the WebSocket part: python3-websockets is not installed (scripts/test installs it as root): %s", out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, debianPython, "-c", wsNameClient, "wss://b.example.test:"+port+"/echo", port, cert.CertFile, "b.example.test").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Errorf("python3-websockets through b.example.test: %v\n%s", err, out)
	}
}

const debianPython = "/usr/bin/python3"

// TestNamesPermitListen: a key whose permitlisten allows only loopback
// cannot publish a name, not even its own (a name is public); one
// allowed "*:80" can.
func TestNamesPermitListen(t *testing.T) {
	dir := t.TempDir()
	identity, pub := writeKey(t, dir, "id_ed25519")
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
	authKeys := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authKeys, []byte(`permitlisten="localhost:80",permitlisten="8080" `+line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := start(t, "server", "--listen", "127.0.0.1:0", "--host-key", filepath.Join(dir, "host_key"), "--authorized-keys", authKeys, "--domain", "example.test")
	_, port, _ := net.SplitHostPort(srv.waitLine(t, `listening on (\S+)`)[1])
	c := start(t, "connect", "-F", "none", "-i", identity, "--known-hosts", filepath.Join(dir, "known_hosts"), "-p", port,
		"-R", "80:127.0.0.1:9", "-R", "myapp:80:127.0.0.1:9", "tester@127.0.0.1")
	c.waitLine(t, `-R 80:\S+: refused by the server for now \(.*listening on k[a-z2-7]{11}:80 is not allowed for this key`)
	c.waitLine(t, `-R myapp:80:\S+: refused by the server for now \(.*listening on myapp:80 is not allowed for this key`)
}

// TestNamesCustomDomain: a key whose permitlisten names a domain of its
// own (shop.example.org) takes it with a stock ssh -R, and requests for
// that Host reach its service; a key with only permitlisten="*:80" is
// refused the same domain, with the option to ask for, and a name under
// the server's domain given in full (other.example.test) is the name
// other.
func TestNamesCustomDomain(t *testing.T) {
	n := startStockNamesOpts(t, `permitlisten="shop.example.org:80" `, `permitlisten="*:80" `)
	dir, key, other, cert, addr, port, known := n.dir, n.key, n.other, n.cert, n.addr, n.port, n.known
	service := headerEcho(t)

	sshtest.StartSSH(t, sshtest.SSHOptions{Addr: addr, User: "tester", Key: key, KnownHosts: known,
		Args: []string{"-R", fmt.Sprintf("shop.example.org:80:127.0.0.1:%d", service)}})
	n.waitLog(`laddr=https://shop.example.org:` + port)
	code, body := curlGet(t, "http://shop.example.org/cart", port, cert.CertFile)
	if want := fmt.Sprintf("host=shop.example.org:%s xff=127.0.0.1 proto=http path=/cart", port); code != "200" || body != want {
		t.Errorf("the custom domain: %s %q\nwant 200 %q", code, body, want)
	}
	if code, body = curlGet(t, "http://elsewhere.example.org/", port, cert.CertFile); code != "404" {
		t.Errorf("a domain nobody holds: %s %q, want 404", code, body)
	}

	c := start(t, "connect", "-F", "none", "-i", other.PrivateFile, "--known-hosts", filepath.Join(dir, "kh2"), "-p", port,
		"-R", fmt.Sprintf("shop.example.org:80:127.0.0.1:%d", service), "-R", fmt.Sprintf("other.example.test:80:127.0.0.1:%d", service), "tester@127.0.0.1")
	c.waitLine(t, `-R shop\.example\.org:80:\S+: refused by the server for now \(.*shop\.example\.org is a domain of its own.*permitlisten="shop\.example\.org:80"`)
	c.waitLine(t, `-R other\.example\.test:80:\S+: https://other\.example\.test:`+port)
	if code, body = curlGet(t, "https://other.example.test/", port, cert.CertFile); code != "200" || !strings.Contains(body, "host=other.example.test:"+port) {
		t.Errorf("a name given in full: %s %q", code, body)
	}
}
