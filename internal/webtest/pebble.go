package webtest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// PebbleConfig is what a test chooses about its Pebble, a real ACME CA
// (Let's Encrypt's test server). Pebble validates challenges by
// connecting to the names' addresses, which its DNS server, a
// pebble-challtestsrv webtest starts beside it, answers with 127.0.0.1
// (AddA changes that for one name).
type PebbleConfig struct {
	// HTTPPort and TLSPort are the ports Pebble connects to for HTTP-01
	// and TLS-ALPN-01 validation: the server under test's. Required.
	HTTPPort, TLSPort uint16
	// Validity is how long the certificates Pebble issues are valid, in
	// whole seconds; 0 means Pebble's default (five years).
	Validity time.Duration
}

// Pebble is a running Pebble with its DNS server. Its fields are
// read-only.
type Pebble struct {
	// Directory is the ACME directory URL (https://127.0.0.1:PORT/dir).
	Directory string
	// CAFile is the certificate of Pebble's own HTTPS (PEM): what an
	// ACME client checks Directory against.
	CAFile string
	// RootFile is the root of the certificates Pebble issues (PEM), from
	// its management interface; RootPool holds it.
	RootFile string
	RootPool *x509.CertPool
	// LogFile is Pebble's output: a line per request to its API
	// ("POST /order-plz") and per validation.
	LogFile string

	mgmt, dnsMgmt netip.AddrPort
	p, dns        *proc
	cert          *Certificate
}

// StartPebble starts pebble-challtestsrv (DNS only) and pebble with
// PEBBLE_VA_NOSLEEP=1, PEBBLE_WFE_NONCEREJECT=0 and PEBBLE_AUTHZREUSE=0
// (fast, and each order validated afresh), on loopback ports webtest
// picks, and kills both when the test ends. It skips the test when pebble
// is not installed.
func StartPebble(t testing.TB, cfg PebbleConfig) *Pebble {
	t.Helper()
	Need(t, "pebble", "pebble-challtestsrv")
	if cfg.HTTPPort == 0 || cfg.TLSPort == 0 {
		t.Fatal("webtest: PebbleConfig needs HTTPPort and TLSPort")
	}
	dir := t.TempDir()
	pb := &Pebble{LogFile: filepath.Join(dir, "pebble.log"), cert: Cert(t, "127.0.0.1", "localhost")}
	pb.CAFile = pb.cert.CertFile
	t.Cleanup(func() {
		if pb.p != nil {
			pb.p.stop()
		}
		if pb.dns != nil {
			pb.dns.stop()
		}
		if t.Failed() {
			t.Logf("webtest: pebble's log (%s):\n%s", pb.LogFile, lastLines(readFile(pb.LogFile), 40))
		}
	})
	loopback := netip.MustParseAddr("127.0.0.1")
	dnsLog := filepath.Join(dir, "challtestsrv.log")
	var dnsAddr netip.AddrPort
	err := startOnSomePort(netip.AddrPortFrom(loopback, 0), func(mgmt netip.AddrPort) error {
		dnsAddr = netip.AddrPortFrom(loopback, randomPort())
		p, err := startLogged(dnsLog, []listening{
			{regexp.MustCompile(`Starting management server`), mgmt},
			{regexp.MustCompile(`Creating TCP and UDP DNS-01 challenge server`), dnsAddr},
		}, nil, "pebble-challtestsrv",
			"-dns01", dnsAddr.String(), "-http01", "", "-https01", "", "-tlsalpn01", "",
			"-management", mgmt.String(), "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "")
		if err == nil {
			pb.dns, pb.dnsMgmt = p, mgmt
		}
		return err
	})
	if err != nil {
		t.Fatalf("webtest: pebble-challtestsrv did not start: %v\n%s", err, lastLines(readFile(dnsLog), 20))
	}
	conf := filepath.Join(dir, "pebble-config.json")
	err = startOnSomePort(netip.AddrPortFrom(loopback, 0), func(listen netip.AddrPort) error {
		mgmt := netip.AddrPortFrom(loopback, randomPort())
		c := map[string]any{
			"listenAddress":           listen.String(),
			"managementListenAddress": mgmt.String(),
			"certificate":             pb.cert.CertFile,
			"privateKey":              pb.cert.KeyFile,
			"httpPort":                cfg.HTTPPort,
			"tlsPort":                 cfg.TLSPort,
			"ocspResponderURL":        "",
		}
		if cfg.Validity > 0 {
			c["certificateValidityPeriod"] = int(cfg.Validity / time.Second)
		}
		b, _ := json.Marshal(map[string]any{"pebble": c})
		if err := os.WriteFile(conf, b, 0o644); err != nil {
			return err
		}
		env := []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0"}
		p, err := startLogged(pb.LogFile, []listening{
			{regexp.MustCompile(`ACME directory available`), listen},
			{regexp.MustCompile(`Management interface listening`), mgmt},
		}, env, "pebble",
			"-config", conf, "-dnsserver", dnsAddr.String())
		if err == nil {
			pb.p, pb.mgmt = p, mgmt
			pb.Directory = "https://" + listen.String() + "/dir"
		}
		return err
	})
	if err != nil {
		t.Fatalf("webtest: pebble did not start: %v\n%s", err, lastLines(readFile(pb.LogFile), 20))
	}
	root, err := pb.get(context.Background(), "https://"+pb.mgmt.String()+"/roots/0")
	if err != nil {
		t.Fatalf("webtest: pebble's root: %v", err)
	}
	pb.RootFile = filepath.Join(dir, "pebble-root.pem")
	if err := os.WriteFile(pb.RootFile, root, 0o644); err != nil {
		t.Fatal(err)
	}
	pb.RootPool = x509.NewCertPool()
	if !pb.RootPool.AppendCertsFromPEM(root) {
		t.Fatalf("webtest: pebble's root is not PEM: %q", root)
	}
	return pb
}

// listening is a log line that a program logs as it starts listening on
// addr (pebble logs before its listener is up).
type listening struct {
	ready *regexp.Regexp
	addr  netip.AddrPort
}

// startLogged runs program with args (and env added), its output in log,
// and waits until, for each of ls, log matches its ready and its addr
// accepts connections.
func startLogged(log string, ls []listening, env []string, program string, args ...string) (*proc, error) {
	path, err := lookPath(program)
	if err != nil {
		return nil, err
	}
	out, err := os.Create(log)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd := exec.Command(path, args...)
	cmd.Dir = filepath.Dir(log)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = out, out
	if cmd.SysProcAttr, err = sysProcAttr("", false); err != nil {
		return nil, err
	}
	p, err := launch("", cmd)
	if err != nil {
		return nil, fmt.Errorf("webtest: starting %s: %w", program, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	for _, l := range ls {
		if err := p.waitStarted(ctx, log, l.ready, "", l.addr); err != nil {
			p.stop()
			return nil, err
		}
	}
	return p, nil
}

// client is an HTTP client that trusts Pebble's own HTTPS.
func (pb *Pebble) client() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		Proxy:           nil,
		TLSClientConfig: &tls.Config{RootCAs: pb.cert.Pool},
	}}
}

func (pb *Pebble) get(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := pb.client().Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("webtest: GET %s: %s %q", url, resp.Status, b)
	}
	return b, err
}

// AddA makes Pebble's DNS answer host's A queries with addr (for a name
// whose validation should fail: an address where nothing listens).
func (pb *Pebble) AddA(t testing.TB, host string, addr netip.Addr) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"host": strings.TrimSuffix(host, ".") + ".", "addresses": []string{addr.String()}})
	resp, err := (&http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}).Post("http://"+pb.dnsMgmt.String()+"/add-a", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("webtest: pebble-challtestsrv add-a: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("webtest: pebble-challtestsrv add-a: %s", resp.Status)
	}
}

// Log returns Pebble's output so far.
func (pb *Pebble) Log() string { return readFile(pb.LogFile) }

// Orders counts the orders Pebble was asked for so far (its API's
// newOrder requests).
func (pb *Pebble) Orders() int { return strings.Count(pb.Log(), "POST /order-plz") }
