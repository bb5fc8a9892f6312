package cli

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/sshtest"
	"github.com/pinhole-dev/pinhole/internal/webtest"
)

// tlsService is a web service that ends TLS itself with cert, and
// answers with who it is and the Host it was asked for.
func tlsService(t *testing.T, cert *webtest.Certificate, who string) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "%s host=%s path=%s xff=%q\n", who, r.Host, r.URL.Path, r.Header.Get("X-Forwarded-For"))
		}),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert.TLS}},
	}
	go srv.Serve(tls.NewListener(ln, srv.TLSConfig))
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// stockNames is a pinhole server with --domain example.test and
// pinhole's certificate for *.example.test, and two keys for stock ssh
// clients.
type stockNames struct {
	t          *testing.T
	dir        string
	key, other *sshtest.Key
	cert       *webtest.Certificate
	srv        *proc
	addr, port string
	known      string // the server's known_hosts line
}

// startStockNames starts it, with extra flags; it skips the test without
// ssh or curl.
func startStockNames(t *testing.T, extra ...string) *stockNames {
	t.Helper()
	return startStockNamesOpts(t, "", "", extra...)
}

// startStockNamesOpts is startStockNames with authorized_keys options
// for the key and for the other key (each with a trailing space, or "").
func startStockNamesOpts(t *testing.T, keyOptions, otherOptions string, extra ...string) *stockNames {
	t.Helper()
	sshtest.Need(t, sshtest.SSHPath)
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("skipping: curl is not installed (scripts/test installs it as root)")
	}
	n := &stockNames{t: t, dir: t.TempDir()}
	n.key = sshtest.NewKey(t, n.dir, "id_ed25519")
	n.other = sshtest.NewKey(t, n.dir, "id_other")
	authKeys := filepath.Join(n.dir, "authorized_keys")
	if err := os.WriteFile(authKeys, []byte(keyOptions+n.key.AuthorizedLine+otherOptions+n.other.AuthorizedLine), 0o600); err != nil {
		t.Fatal(err)
	}
	n.cert = webtest.Cert(t, "*.example.test", "example.test")
	n.srv = start(t, append([]string{"server", "--listen", "127.0.0.1:0", "--host-key", filepath.Join(n.dir, "host_key"), "--authorized-keys", authKeys,
		"--domain", "example.test", "--tls-cert", n.cert.CertFile, "--tls-key", n.cert.KeyFile}, extra...)...)
	n.addr = n.srv.waitLine(t, `listening on (\S+)`)[1]
	_, n.port, _ = net.SplitHostPort(n.addr)
	n.known = "[127.0.0.1]:" + n.port + " " + (&tlsWorld{world: &world{dir: n.dir}}).hostKeyLine(t)
	return n
}

// waitLog waits for the server to log what.
func (n *stockNames) waitLog(what string) {
	n.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(n.srv.stderr.String(), what) {
		if time.Now().After(deadline) {
			n.t.Fatalf("the server did not log %q:\n%s", what, n.srv.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestNamesTLSPassthrough: a stock ssh -R secure:443:... gets every TLS
// connection for secure.DOMAIN raw: curl sees the service's own
// certificate (pinhole's is refused by a curl that trusts only the
// service's), plain HTTP to it is sent to https://, the same key adds an
// HTTP forward to the name, another key cannot take either, and a name
// with only an HTTP forward still ends TLS on pinhole's certificate;
// pinhole connect's -R NAME:443 works as stock ssh's.
func TestNamesTLSPassthrough(t *testing.T) {
	serviceCert := webtest.Cert(t, "secure.example.test", "pin.example.test")
	n := startStockNames(t)
	dir, key, other, pinholeCert, addr, port, known, waitLog := n.dir, n.key, n.other, n.cert, n.addr, n.port, n.known, n.waitLog
	secure := tlsService(t, serviceCert, "service")
	plain := headerEcho(t)
	sshtest.StartSSH(t, sshtest.SSHOptions{Addr: addr, User: "tester", Key: key, KnownHosts: known,
		Args: []string{"-R", fmt.Sprintf("secure:443:127.0.0.1:%d", secure), "-R", fmt.Sprintf("web:80:127.0.0.1:%d", plain)}})
	waitLog(`laddr=https://secure.example.test:` + port)
	waitLog(`laddr=https://web.example.test:` + port)

	code, body := curlGet(t, "https://secure.example.test/hello", port, serviceCert.CertFile, "-H", "X-Forwarded-For: 6.6.6.6")
	if want := fmt.Sprintf(`service host=secure.example.test:%s path=/hello xff="6.6.6.6"`, port); code != "200" || body != want {
		t.Errorf("passthrough: %s %q\nwant 200 %q (the service's answer, untouched)", code, body, want)
	}
	// Trusting only pinhole's certificate, curl refuses the service's:
	// pinhole did not end this TLS.
	out, err := exec.Command("curl", "-s", "--max-time", "10", "--resolve", "secure.example.test:"+port+":127.0.0.1",
		"--cacert", pinholeCert.CertFile, "https://secure.example.test:"+port+"/").CombinedOutput()
	if err == nil {
		t.Errorf("curl trusting only pinhole's certificate reached the passthrough service: %s", out)
	}
	// The other name still ends TLS here, on pinhole's certificate.
	if code, body := curlGet(t, "https://web.example.test/", port, pinholeCert.CertFile); code != "200" || !strings.Contains(body, "proto=https") {
		t.Errorf("an HTTP name over TLS: %s %q", code, body)
	}
	// Plain HTTP to a name with only a 443 forward: to https://.
	code, _ = curlGet(t, "http://secure.example.test/x?y=1", port, serviceCert.CertFile, "-w", "\n%{redirect_url}\n%{http_code}")
	if code != "308" {
		t.Errorf("http to a passthrough-only name: %s, want 308", code)
	}
	loc, _ := curlGet(t, "http://secure.example.test/x?y=1", port, serviceCert.CertFile, "-o", "/dev/null", "-w", "%{redirect_url}")
	if want := "https://secure.example.test:" + port + "/x?y=1"; !strings.Contains(loc, want) {
		t.Errorf("redirect to %q, want %q", loc, want)
	}

	// Another key can take neither of the name's ports.
	c := start(t, "connect", "-F", "none", "-i", other.PrivateFile, "--known-hosts", filepath.Join(dir, "kh2"), "-p", port,
		"-R", fmt.Sprintf("secure:80:127.0.0.1:%d", plain), "-R", fmt.Sprintf("secure:443:127.0.0.1:%d", secure), "tester@127.0.0.1")
	c.waitLine(t, `-R secure:80:\S+: refused by the server for now \(.*belongs to another key`)
	c.waitLine(t, `-R secure:443:\S+: refused by the server for now \(.*already forwarded by another client; pick another name`)

	// The same key adds an HTTP forward to the name: http:// goes there,
	// https:// still through to the service; pinhole connect prints the
	// URL of both.
	p := start(t, "connect", "-F", "none", "-i", key.PrivateFile, "--known-hosts", filepath.Join(dir, "kh3"), "-p", port,
		"-R", fmt.Sprintf("secure:80:127.0.0.1:%d", plain), "tester@127.0.0.1")
	p.waitLine(t, `-R secure:80:\S+: https://secure\.example\.test:`+port+`, connecting to`)
	if code, body := curlGet(t, "http://secure.example.test/p", port, serviceCert.CertFile); code != "200" || !strings.Contains(body, "proto=http path=/p") {
		t.Errorf("http with both forwards: %s %q", code, body)
	}
	if code, body := curlGet(t, "https://secure.example.test/s", port, serviceCert.CertFile); code != "200" || !strings.HasPrefix(body, "service ") {
		t.Errorf("https with both forwards: %s %q", code, body)
	}

	// pinhole connect's -R NAME:443 is passed through too.
	q := start(t, "connect", "-F", "none", "-i", key.PrivateFile, "--known-hosts", filepath.Join(dir, "kh4"), "-p", port,
		"-R", fmt.Sprintf("pin:443:127.0.0.1:%d", secure), "tester@127.0.0.1")
	q.waitLine(t, `-R pin:443:\S+: https://pin\.example\.test:`+port+`, connecting to`)
	if code, body := curlGet(t, "https://pin.example.test/q", port, serviceCert.CertFile); code != "200" || body != fmt.Sprintf(`service host=pin.example.test:%s path=/q xff=""`, port) {
		t.Errorf("pinhole connect -R pin:443: %s %q", code, body)
	}
}
