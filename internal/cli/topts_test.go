package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/sshtest"
	"github.com/pinhole-dev/pinhole/internal/webtest"
)

// optionsWorld is a pinhole server with --domain example.test, the keys
// that log in to it (the second with pinhole-options in
// authorized_keys), and a service that answers with the Host, the
// Authorization and X-Forwarded-Host it was sent.
type optionsWorld struct {
	dir, addr, port, known string
	key, keyed             *sshtest.Key
	cert                   *webtest.Certificate
	srv                    *proc
	service                int
}

func newOptionsWorld(t *testing.T) *optionsWorld {
	t.Helper()
	sshtest.Need(t, sshtest.SSHPath, "curl")
	w := &optionsWorld{dir: t.TempDir()}
	w.key = sshtest.NewKey(t, w.dir, "id_ed25519")
	w.keyed = sshtest.NewKey(t, w.dir, "id_keyed")
	authKeys := filepath.Join(w.dir, "authorized_keys")
	lines := w.key.AuthorizedLine + `pinhole-options="auth=admin:s3cret,host-header=keyed.internal" ` + w.keyed.AuthorizedLine
	if err := os.WriteFile(authKeys, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	w.cert = webtest.Cert(t, "*.example.test", "example.test")
	w.srv = start(t, "server", "--listen", "127.0.0.1:0", "--host-key", filepath.Join(w.dir, "host_key"), "--authorized-keys", authKeys,
		"--domain", "example.test", "--tls-cert", w.cert.CertFile, "--tls-key", w.cert.KeyFile)
	w.addr = w.srv.waitLine(t, `listening on (\S+)`)[1]
	_, w.port, _ = net.SplitHostPort(w.addr)
	w.known = "[127.0.0.1]:" + w.port + " " + (&tlsWorld{world: &world{dir: w.dir}}).hostKeyLine(t)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	svc := &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(rw, "host=%s authorization=%q xfh=%s", r.Host, r.Header.Get("Authorization"), r.Header.Get("X-Forwarded-Host"))
	})}
	go svc.Serve(ln)
	t.Cleanup(func() { svc.Close() })
	w.service = ln.Addr().(*net.TCPAddr).Port
	return w
}

// ssh runs a stock ssh with key forwarding name:80 to the service and
// words as its command (none: -N).
func (w *optionsWorld) ssh(t *testing.T, key *sshtest.Key, name string, words ...string) *sshtest.SSHProc {
	t.Helper()
	return sshtest.StartSSH(t, sshtest.SSHOptions{Addr: w.addr, User: "tester", Key: key, KnownHosts: w.known,
		Args: []string{"-R", fmt.Sprintf("%s:80:127.0.0.1:%d", name, w.service)}, Session: len(words) > 0, Command: words})
}

// waitLog waits for the server's log to hold what.
func (w *optionsWorld) waitLog(t *testing.T, what string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(w.srv.stderr.String(), what) {
		if time.Now().After(deadline) {
			t.Fatalf("the server did not log %q:\n%s", what, w.srv.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// get is curl https://NAME.example.test/ with extra flags.
func (w *optionsWorld) get(t *testing.T, name string, extra ...string) (code, body string) {
	t.Helper()
	return curlGet(t, "https://"+name+".example.test/", w.port, w.cert.CertFile, extra...)
}

// TestTunnelOptionsStockSSH: a stock ssh sets per-tunnel options as its
// command (ssh -R name:80:... host -- WORDS): auth= asks curl for the
// credentials and keeps them from the service; allow= admits by address;
// host-header= is the Host the service sees; pinhole-options in
// authorized_keys apply to ssh -N; words that do not parse are an error
// on ssh's stderr with exit status 1.
func TestTunnelOptionsStockSSH(t *testing.T) {
	w := newOptionsWorld(t)
	w.ssh(t, w.key, "locked", "auth=u:p")
	w.ssh(t, w.key, "faraway", "allow=192.0.2.0/24,10.0.0.0/8")
	w.ssh(t, w.key, "near", "allow=127.0.0.0/8", "host-header=internal.local:3000")
	w.ssh(t, w.keyed, "keyed") // ssh -N: authorized_keys' options
	for _, n := range []string{"locked", "faraway", "near", "keyed"} {
		w.waitLog(t, "laddr=https://"+n+".example.test:"+w.port)
	}

	if code, body := w.get(t, "locked"); code != "401" || strings.Contains(body, "authorization=") {
		t.Errorf("auth= without credentials: %s %q, want 401 from the server", code, body)
	}
	if code, _ := w.get(t, "locked", "-u", "u:wrong"); code != "401" {
		t.Errorf("auth= with a wrong password: %s, want 401", code)
	}
	if code, body := w.get(t, "locked", "-u", "u:p"); code != "200" || !strings.Contains(body, `authorization=""`) {
		t.Errorf("auth=: %s %q, want 200 and no Authorization at the service", code, body)
	}
	out, err := exec.Command("curl", "-s", "-o", "/dev/null", "-D", "-", "--max-time", "10", "--resolve", "locked.example.test:"+w.port+":127.0.0.1",
		"--cacert", w.cert.CertFile, "https://locked.example.test:"+w.port+"/").Output()
	if err != nil || !strings.Contains(strings.ToLower(string(out)), `www-authenticate: basic realm="locked.example.test"`) {
		t.Errorf("the 401's header: %v\n%s", err, out)
	}

	if code, body := w.get(t, "faraway"); code != "403" || strings.Contains(body, "host=") {
		t.Errorf("allow= without 127.0.0.1: %s %q, want 403", code, body)
	}
	if code, body := w.get(t, "near"); code != "200" || !strings.Contains(body, "host=internal.local:3000 ") || !strings.Contains(body, "xfh=near.example.test:"+w.port) {
		t.Errorf("allow= with 127.0.0.0/8, host-header=: %s %q", code, body)
	}
	if code, _ := w.get(t, "keyed"); code != "401" {
		t.Errorf("pinhole-options auth= with ssh -N: %s, want 401", code)
	}
	if code, body := w.get(t, "keyed", "-u", "admin:s3cret"); code != "200" || !strings.Contains(body, "host=keyed.internal ") {
		t.Errorf("pinhole-options: %s %q", code, body)
	}
	if strings.Contains(w.srv.stderr.String(), "s3cret") || strings.Contains(w.srv.stderr.String(), "u:p ") {
		t.Errorf("the server logged a password:\n%s", w.srv.stderr)
	}

	// Words that do not parse: the reason on stderr, exit 1, and the
	// name is not served.
	o := sshtest.SSHOptions{Addr: w.addr, User: "tester", Key: w.key, KnownHosts: w.known,
		Args: []string{"-R", fmt.Sprintf("typo:80:127.0.0.1:%d", w.service)}, Session: true, Command: []string{"auht=u:p"}}
	if code, stderr := sshExit(t, o); code != 1 || !strings.Contains(stderr, `unknown tunnel option "auht"`) {
		t.Errorf("ssh -- auht=u:p: exit %d, stderr:\n%s\nwant exit 1 and the unknown option named", code, stderr)
	}
	// A key's authorized_keys options cannot be changed from its session.
	o.Key, o.Command = w.keyed, []string{"auth=me:mine"}
	o.Args = []string{"-R", fmt.Sprintf("clash:80:127.0.0.1:%d", w.service)}
	if code, stderr := sshExit(t, o); code != 1 || !strings.Contains(stderr, "auth= set for this key in authorized_keys") {
		t.Errorf("ssh -- auth= over pinhole-options: exit %d, stderr:\n%s", code, stderr)
	}
}

// sshExit runs a stock ssh until it exits, within 20 s, and returns its
// exit status and stderr.
func sshExit(t *testing.T, o sshtest.SSHOptions) (int, string) {
	t.Helper()
	p := sshtest.StartSSH(t, o)
	select {
	case <-p.Done():
	case <-time.After(20 * time.Second):
		t.Fatalf("ssh did not exit within 20 s:\n%s", p.Stderr())
	}
	var ee *exec.ExitError
	if err := p.Wait(); err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	} else if err != nil {
		return ee.ExitCode(), p.Stderr()
	}
	return 0, p.Stderr()
}

// TestTunnelOptionsRace: OpenSSH asks for its forwards before it sends
// its command, so a name exists a moment before its auth= arrives.
// Requests sent in a tight loop from before the ssh starts until the
// name answers are never served (200) without the credentials: they
// get 404 (no tunnel yet) or wait and get 401.
func TestTunnelOptionsRace(t *testing.T) {
	w := newOptionsWorld(t)
	client := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := range 3 {
		name := fmt.Sprintf("race%d", i)
		done := make(chan map[int]int)
		stop := make(chan struct{})
		go func() {
			seen := map[int]int{}
			defer func() { done <- seen }()
			deadline := time.Now().Add(15 * time.Second)
			for time.Now().Before(deadline) {
				req, _ := http.NewRequest("GET", "http://127.0.0.1:"+w.port+"/", nil)
				req.Host = name + ".example.test"
				resp, err := client.Do(req)
				if err != nil {
					seen[-1]++
					continue
				}
				resp.Body.Close()
				seen[resp.StatusCode]++
				if resp.StatusCode != 404 && seen[resp.StatusCode] >= 3 {
					return
				}
				select {
				case <-stop:
					return
				default:
				}
			}
		}()
		p := w.ssh(t, w.key, name, "auth=u:p")
		seen := <-done
		close(stop)
		p.Stop()
		if seen[200] > 0 || seen[401] == 0 {
			t.Errorf("%s: answers %v: want 404s and 401s, never 200", name, seen)
		}
	}
}

// TestTunnelOptionsPinholeConnect: pinhole connect takes the same words
// after the destination, and sends them before its forwards.
func TestTunnelOptionsPinholeConnect(t *testing.T) {
	w := newOptionsWorld(t)
	c := start(t, "connect", "-F", "none", "-i", w.key.PrivateFile, "--known-hosts", filepath.Join(w.dir, "kh"), "-p", w.port,
		"-R", fmt.Sprintf("pin:80:127.0.0.1:%d", w.service), "tester@127.0.0.1", "--", "auth=u:p", "host-header=svc.local")
	c.waitLine(t, `-R pin:80:\S+: https://pin\.example\.test:`+w.port)
	if code, _ := w.get(t, "pin"); code != "401" {
		t.Errorf("without credentials: %s, want 401", code)
	}
	if code, body := w.get(t, "pin", "-u", "u:p"); code != "200" || !strings.Contains(body, `host=svc.local authorization=""`) {
		t.Errorf("with credentials: %s %q", code, body)
	}
	// A word the server would refuse is refused before connecting.
	if code, _, stderr := run(t, "connect", "-F", "none", "-i", w.key.PrivateFile, "--known-hosts", filepath.Join(w.dir, "kh"), "-p", w.port,
		"-R", "80:127.0.0.1:9", "tester@127.0.0.1", "--", "colour=blue"); code == 0 || !strings.Contains(stderr, `unknown tunnel option "colour"`) {
		t.Errorf("pinhole connect -- colour=blue: exit %d, %s", code, stderr)
	}
	// The server refuses what authorized_keys set for the key.
	code, _, stderr := run(t, "connect", "-F", "none", "-i", w.keyed.PrivateFile, "--known-hosts", filepath.Join(w.dir, "kh"), "-p", w.port,
		"-R", fmt.Sprintf("pin2:80:127.0.0.1:%d", w.service), "tester@127.0.0.1", "--", "auth=me:mine")
	if code == 0 || !strings.Contains(stderr, "auth= set for this key in authorized_keys") {
		t.Errorf("pinhole connect over pinhole-options: exit %d\n%s", code, stderr)
	}
}

// TestTunnelOptionsProxyProtocol: a TCP remote forward with
// proxy-protocol=v1 or v2 starts each stream with the PROXY header, and
// nginx (listen ... proxy_protocol) reads 127.0.0.1, the real client,
// from it; allow= without 127.0.0.1 closes the connection.
func TestTunnelOptionsProxyProtocol(t *testing.T) {
	w := newOptionsWorld(t)
	ng := webtest.StartNginx(t, webtest.NginxConfig{Upstream: netip.MustParseAddrPort("127.0.0.1:9"), Path: "/pp", ProxyProtocol: true,
		Extra: []string{`return 200 "proxied-from=$proxy_protocol_addr\n";`}})
	for _, tc := range []struct{ words, want string }{
		{"proxy-protocol=v1", "proxied-from=127.0.0.1"},
		{"proxy-protocol=v2", "proxied-from=127.0.0.1"},
		{"proxy-protocol=v2 allow=192.0.2.0/24", ""},
	} {
		t.Run(tc.words, func(t *testing.T) {
			o := sshtest.SSHOptions{Addr: w.addr, User: "tester", Key: w.key, KnownHosts: w.known,
				Args: []string{"-R", "0:" + ng.Addr.String()}, Session: true, Command: strings.Fields(tc.words)}
			p := sshtest.StartSSH(t, o)
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			port, err := p.WaitAllocatedPort(ctx)
			if err != nil {
				t.Fatalf("%v\n%s", err, p.Stderr())
			}
			out, err := exec.Command("curl", "-s", "--max-time", "10", "--cacert", ng.Cert.CertFile,
				fmt.Sprintf("https://127.0.0.1:%d/pp", port)).Output()
			got := strings.TrimSpace(string(out))
			if tc.want == "" {
				if err == nil || got != "" {
					t.Errorf("curl through a forward that does not admit 127.0.0.1: %v %q, want the connection closed", err, got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Errorf("curl through nginx: %v %q, want %q\n%s", err, got, tc.want, ng.ErrorLog())
			}
		})
	}
}
