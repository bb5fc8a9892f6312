package cli

import (
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/config"
	"github.com/pinhole-dev/pinhole/internal/observe"
	"github.com/pinhole-dev/pinhole/internal/portmap"
	"github.com/pinhole-dev/pinhole/internal/ssh"
	"github.com/pinhole-dev/pinhole/internal/streamtest"
	"github.com/pinhole-dev/pinhole/internal/transport"
)

// TestServerFileReload: pinhole server -c FILE through four reloads: a
// listener added, a setting changed (a new server takes new connections,
// the old drains a held stream to its last byte), the listener removed, a
// new authorized_keys file; and a bad file, refused.
func TestServerFileReload(t *testing.T) {
	dir := t.TempDir()
	identity, pub := writeKey(t, dir, "id_ed25519")
	writeFile(t, filepath.Join(dir, "authorized_keys"), string(ssh.MarshalAuthorizedKey(pub)))
	writeFile(t, filepath.Join(dir, "nobody"), "")
	file := filepath.Join(dir, "server.toml")
	conf := func(listen, extra string) string {
		return fmt.Sprintf("listen = [%s]\nhost-key = \"host_key\"\nauthorized-keys = \"authorized_keys\"\ndrain = \"5s\"\n%s\n", listen, extra)
	}
	writeFile(t, file, conf(`"127.0.0.1:0"`, ""))
	reload := make(chan struct{}, 1)
	srv := startReload(t, reload, "server", "-c", file)
	out := collect(srv)
	addr1 := out.wait(t, srv, `^pinhole server: listening on (\S+)`, 1)[1]
	target := streamtest.NewTarget(t).Port()
	known := filepath.Join(dir, "known_hosts")
	connect := func(addr string) (string, *proc) {
		host, port, _ := net.SplitHostPort(addr)
		c := start(t, "connect", "-p", port, "-i", identity, "--known-hosts", known, "--keepalive", "1s", "-L", fmt.Sprintf("0:127.0.0.1:%d", target), "tester@"+host)
		return c.waitLine(t, `-L \S+: listening on (\S+),`)[1], c
	}
	local1, _ := connect(addr1)
	held := hold(t, local1, 1)

	// 1. A second listener.
	writeFile(t, file, conf(`"127.0.0.1:0", "127.0.0.2:0"`, ""))
	reload <- struct{}{}
	out.wait(t, srv, `reloaded \S+: 1 listeners added, 0 removed, authorized_keys changed: false, restarted: false`, 1)
	addr2 := out.wait(t, srv, `^pinhole server: listening on (127\.0\.0\.2:\d+)`, 1)[1]
	local2, _ := connect(addr2)
	exchangeThrough(t, local2, 2)

	// 2. A setting changed: the old server drains, a new one takes over.
	replaceFile(t, file, conf(`"127.0.0.1:0", "127.0.0.2:0"`, `keepalive = "2s"`))
	out.wait(t, srv, `reloaded \S+: 0 listeners added, 0 removed, authorized_keys changed: false, restarted: true`, 1)
	held.finish(t, "a server restarted by a reload, in the old one's drain")
	local3, _ := connect(addr1)
	exchangeThrough(t, local3, 3)

	// 3. The second listener removed.
	writeFile(t, file, conf(`"127.0.0.1:0"`, `keepalive = "2s"`))
	out.wait(t, srv, `reloaded \S+: 0 listeners added, 1 removed`, 1)
	refusedSoon(t, addr2, "the removed listener")

	// 4. An authorized_keys without our key: the next login is refused.
	writeFile(t, file, strings.Replace(conf(`"127.0.0.1:0"`, `keepalive = "2s"`), `"authorized_keys"`, `"nobody"`, 1))
	out.wait(t, srv, `authorized_keys changed: true`, 1)
	_, port, _ := net.SplitHostPort(addr1)
	if code, _, stderr := run(t, "connect", "-p", port, "-i", identity, "--known-hosts", known, "-L", "0:127.0.0.1:9", "tester@127.0.0.1"); code != 1 || !strings.Contains(stderr, "refused our keys") {
		t.Errorf("login after authorized_keys was changed to an empty file: exit %d; stderr:\n%s", code, stderr)
	}

	// 5. A bad file is refused, and the server runs on.
	writeFile(t, file, "listen = [\"127.0.0.1:0\"]\nkeep-alive = \"1s\"\n")
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(srv.stderr.String(), "reload refused") {
		if time.Now().After(deadline) {
			t.Fatalf("no refusal of a bad file; stderr:\n%s", srv.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(srv.stderr.String(), `server.toml:2:1: unknown key \"keep-alive\" in pinhole server's file: did you mean \"keepalive\"?`) {
		t.Errorf("the refusal does not name the line and the key:\n%s", srv.stderr)
	}
	if c, err := net.Dial("tcp", addr1); err != nil {
		t.Errorf("the server stopped listening after a refused reload: %v", err)
	} else {
		c.Close()
	}
}

// TestServerFileErrors: pinhole server -c refuses a bad file at start, and
// other flags beside -c.
func TestServerFileErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	writeFile(t, bad, "listen = \"2222\"\ngateway-ports = \"maybe\"\n[server]\n")
	code, _, stderr := run(t, "server", "-c", bad)
	for _, w := range []string{bad + `:1:10: listen "2222": want host:port`, bad + `:2:17: gateway-ports "maybe"`, bad + ":3:2: [server]: pinhole server's file has no tables"} {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr does not say %q:\n%s", w, stderr)
		}
	}
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	if code, _, stderr := run(t, "check", "-server", "-c", bad); code != 1 || !strings.Contains(stderr, bad+`:2:17: gateway-ports "maybe"`) {
		t.Errorf("check -server of a bad file: exit %d, stderr:\n%s", code, stderr)
	}
	os.WriteFile(bad, []byte("listen = [\"127.0.0.1:0\"]\n"), 0o600)
	if code, stdout, stderr := run(t, "check", "-server", "-c", bad); code != 0 || !strings.Contains(stdout, "ok: pinhole server, listen 127.0.0.1:0") {
		t.Errorf("check -server of a good file: exit %d, stdout %q, stderr:\n%s", code, stdout, stderr)
	}
	if code, _, stderr := run(t, "server", "-c", bad, "--keepalive", "1s"); code != 2 || !strings.Contains(stderr, "put --keepalive there instead") {
		t.Errorf("-c with another flag: exit %d, stderr:\n%s", code, stderr)
	}
}

// TestServerFileDebugAndMapKeys: debug-addr in the server's file serves
// the profiles; the map keys become the portmap.Config that --map-via and
// --map-gateway give (the mapping itself is TestMapLab's, as root).
func TestServerFileDebugAndMapKeys(t *testing.T) {
	dir := t.TempDir()
	_, pub := writeKey(t, dir, "id_ed25519")
	writeFile(t, filepath.Join(dir, "authorized_keys"), string(ssh.MarshalAuthorizedKey(pub)))
	file := filepath.Join(dir, "server.toml")
	writeFile(t, file, "listen = [\"127.0.0.1:0\"]\nhost-key = \"host_key\"\nauthorized-keys = \"authorized_keys\"\ndebug-addr = \"127.0.0.1:0\"\n")
	srv := startReload(t, nil, "server", "-c", file)
	out := collect(srv)
	getGoroutines(t, out.wait(t, srv, `debug: net/http/pprof on (http://\S+/debug/pprof/)`, 1)[1])

	e := &env{stdout: io.Discard, stderr: io.Discard, log: slog.New(slog.DiscardHandler)}
	mc, err := serverMapConfig(e, &config.Server{Map: true, MapVia: "natpmp", MapGateway: "192.168.1.1:5351"})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := portmap.ParseMethod("natpmp")
	if mc == nil || mc.Gateway.String() != "192.168.1.1" || mc.PMPPort != 5351 || !slices.Equal(mc.Methods, want) {
		t.Fatalf("map keys gave %+v", mc)
	}
	if mc, err := serverMapConfig(e, &config.Server{}); mc != nil || err != nil {
		t.Fatalf("map off gave %+v, %v", mc, err)
	}
}

// TestEveryFlagHasAFileKey: each flag of pinhole server is a key of its
// file by the same name, and each flag of pinhole connect is a key of up's
// file (a tunnel's, or the top level's), by its long name; those that
// cannot be are listed with the reason.
func TestEveryFlagHasAFileKey(t *testing.T) {
	server := map[string]bool{}
	for _, k := range config.ServerKeys() {
		server[k] = true
	}
	// --control, --dashboard and its token's flags (watch.go) are the
	// process's, not its settings': server -c and up take them on their
	// command line beside the file, and a reload does not move them.
	watch := func(name string) bool { return slices.Contains(watchFlagNames, name) }
	flagSet(commandNamed(t, "server")).VisitAll(func(f *flag.Flag) {
		// The process's own flags (logs, metrics, status and dashboard)
		// go beside -c instead.
		if f.Name != "c" && !server[f.Name] && !processFlag(f.Name) && !slices.Contains(watchFlagNames, f.Name) {
			t.Errorf("pinhole server --%s has no key in the server's file", f.Name)
		}
	})
	tunnel, top := map[string]bool{}, map[string]bool{}
	for _, k := range config.TunnelKeys() {
		tunnel[k] = true
	}
	for _, k := range config.TopKeys() {
		top[k] = true
	}
	long := map[string]string{"p": "port", "l": "user", "i": "identity", "L": "local", "R": "remote", "D": "dynamic", "J": "jump", "b": "bind", "4": "address-family", "6": "address-family"}
	none := map[string]string{
		"F": "ssh_config's file: a tunnel's table is the whole of its settings",
		"o": "an ssh_config setting, as F",
		"v": "prints what ssh_config gave, as F",
		"W": "stdio forwarding is one stream on stdin and stdout, not a tunnel",
		"N": "accepted for ssh's sake; pinhole runs no remote command",
	}
	flagSet(commandNamed(t, "connect")).VisitAll(func(f *flag.Flag) {
		if none[f.Name] != "" || watch(f.Name) {
			return
		}
		if processFlag(f.Name) || slices.Contains(watchFlagNames, f.Name) {
			return // pinhole up's own flag, for the whole process
		}
		k := cmp.Or(long[f.Name], f.Name)
		if !tunnel[k] && !top[k] {
			t.Errorf("pinhole connect -%s (%s) has no key in up's file", f.Name, k)
		}
	})
}

func commandNamed(t *testing.T, name string) command {
	for _, c := range commands() {
		if c.name == name {
			return c
		}
	}
	t.Fatalf("no command %q", name)
	return command{}
}

// selfSignedPair writes a certificate and its key to one PEM file (for
// tls-cert and tls-key alike) and returns its fingerprint.
func selfSignedPair(t *testing.T, path string) string {
	t.Helper()
	cert, _, err := transport.LoadOrCreateSelfSigned(path, []string{"127.0.0.1", "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	return transport.Fingerprint(cert.Certificate[0])
}

// TestServerFileTLSReload: pinhole server -c with tls-cert, tls-key and
// ws-path serves SSH inside WebSocket over TLS on its listener; a reload
// that changes tls-cert restarts it: the new certificate is printed and
// shown to new clients, and a stream held over wss:// through the old
// generation drains to its last byte. A SIGHUP after the certificate file
// changed (a renewal at the same path) restarts too; one after nothing
// changed does not.
func TestServerFileTLSReload(t *testing.T) {
	dir := t.TempDir()
	identity, pub := writeKey(t, dir, "id_ed25519")
	writeFile(t, filepath.Join(dir, "authorized_keys"), string(ssh.MarshalAuthorizedKey(pub)))
	fp1 := selfSignedPair(t, filepath.Join(dir, "one.pem"))
	fp2 := selfSignedPair(t, filepath.Join(dir, "two.pem"))
	file := filepath.Join(dir, "server.toml")
	conf := func(cert string) string {
		return fmt.Sprintf("listen = [\"127.0.0.1:0\"]\nhost-key = \"host_key\"\nauthorized-keys = \"authorized_keys\"\ndrain = \"10s\"\n"+
			"tls-cert = %q\ntls-key = %q\nws-path = \"/tunnel\"\nssh-sni = [\"ssh.example.com\"]\ntrusted-proxy = [\"127.0.0.1\"]\n", cert, cert)
	}
	writeFile(t, file, conf("one.pem"))
	reload := make(chan struct{}, 1)
	srv := startReload(t, reload, "server", "-c", file)
	out := collect(srv)
	addr := out.wait(t, srv, `^pinhole server: listening on (\S+)`, 1)[1]
	if got := out.wait(t, srv, `^pinhole server: TLS certificate (\S+) \(--tls-cert\)`, 1)[1]; got != fp1 {
		t.Fatalf("the TLS line names %s, want one.pem's %s", got, fp1)
	}
	_, port, _ := net.SplitHostPort(addr)
	target := streamtest.NewTarget(t).Port()
	known := filepath.Join(dir, "known_hosts")
	url := "wss://tester@127.0.0.1:" + port + "/tunnel"
	connect := func(fp string) string {
		c := start(t, "connect", "-F", "none", "-i", identity, "--known-hosts", known, "--keepalive", "1s", "--proxy", "none",
			"--tls-fingerprint", fp, "-L", fmt.Sprintf("0:127.0.0.1:%d", target), url)
		return c.waitLine(t, `-L \S+: listening on (\S+),`)[1]
	}
	held := hold(t, connect(fp1), 1)

	replaceFile(t, file, conf("two.pem"))
	out.wait(t, srv, `reloaded \S+: 0 listeners added, 0 removed, authorized_keys changed: false, restarted: true`, 1)
	if got := out.wait(t, srv, `^pinhole server: TLS certificate (\S+) \(--tls-cert\)`, 2)[1]; got != fp2 {
		t.Fatalf("after the reload the TLS line names %s, want two.pem's %s", got, fp2)
	}
	held.finish(t, "wss:// to a server restarted by a reload, in the old one's drain")
	exchangeThrough(t, connect(fp2), 2)

	// A renewal: another certificate in two.pem, the file as it was; a
	// SIGHUP restarts for it.
	fp3 := selfSignedPair(t, filepath.Join(dir, "three.pem"))
	b, err := os.ReadFile(filepath.Join(dir, "three.pem"))
	if err != nil {
		t.Fatal(err)
	}
	replaceFile(t, filepath.Join(dir, "two.pem"), string(b))
	reload <- struct{}{}
	out.wait(t, srv, `reloaded \S+: 0 listeners added, 0 removed, authorized_keys changed: false, restarted: true`, 2)
	if got := out.wait(t, srv, `^pinhole server: TLS certificate (\S+) \(--tls-cert\)`, 3)[1]; got != fp3 {
		t.Fatalf("after a SIGHUP for the renewed certificate the TLS line names %s, want %s", got, fp3)
	}
	exchangeThrough(t, connect(fp3), 3)
	reload <- struct{}{}
	out.wait(t, srv, `reloaded \S+: 0 listeners added, 0 removed, authorized_keys changed: false, restarted: false`, 1)
	code, _, stderr := run(t, "connect", "-F", "none", "-i", identity, "--known-hosts", known, "--proxy", "none",
		"--tls-fingerprint", fp1, "-L", "0:127.0.0.1:9", url)
	if code == 0 || !strings.Contains(stderr, fp1) {
		t.Errorf("pinned to the old certificate after the reload: exit %d; stderr:\n%s", code, stderr)
	}
}

// TestServerFileRestartKeepsCounts: after a reload that restarts the
// server, the old one's session, still draining a held stream, is in
// pinhole status (as draining) and in the metrics' session count, and
// the byte counters carry on from what the old server carried instead of
// falling back to the new one's zero.
func TestServerFileRestartKeepsCounts(t *testing.T) {
	dir := t.TempDir()
	identity, pub := writeKey(t, dir, "id_ed25519")
	writeFile(t, filepath.Join(dir, "authorized_keys"), string(ssh.MarshalAuthorizedKey(pub)))
	file := filepath.Join(dir, "server.toml")
	conf := func(extra string) string {
		return fmt.Sprintf("listen = [\"127.0.0.1:0\"]\nhost-key = \"host_key\"\nauthorized-keys = \"authorized_keys\"\ndrain = \"30s\"\n%s\n", extra)
	}
	writeFile(t, file, conf(""))
	sock := filepath.Join(dir, "server.sock")
	reload := make(chan struct{}, 1)
	srv := startReload(t, reload, "server", "-c", file, "--metrics", "127.0.0.1:0", "--control", sock)
	out := collect(srv)
	metricsAddr := out.wait(t, srv, `^pinhole server: metrics on http://(\S+)/metrics`, 1)[1]
	addr := out.wait(t, srv, `^pinhole server: listening on (\S+)`, 1)[1]
	target := streamtest.NewTarget(t).Port()
	host, port, _ := net.SplitHostPort(addr)
	c := start(t, "connect", "-p", port, "-i", identity, "--known-hosts", filepath.Join(dir, "known_hosts"), "-L", fmt.Sprintf("0:127.0.0.1:%d", target), "tester@"+host)
	local := c.waitLine(t, `-L \S+: listening on (\S+),`)[1]
	held := hold(t, local, 1)
	exchangeThrough(t, local, 2)

	toTarget := func() float64 {
		return value(t, families(t, scrape(t, metricsAddr, "")), "pinhole_server_bytes_total", "direction", "to_target")
	}
	before := toTarget()
	if before == 0 {
		t.Fatal("pinhole_server_bytes_total{direction=to_target} is 0 after a stream went through")
	}

	replaceFile(t, file, conf(`keepalive = "2s"`))
	out.wait(t, srv, `reloaded \S+: 0 listeners added, 0 removed, authorized_keys changed: false, restarted: true`, 1)

	fams := families(t, scrape(t, metricsAddr, ""))
	if got := value(t, fams, "pinhole_server_bytes_total", "direction", "to_target"); got < before {
		t.Errorf("after the restart pinhole_server_bytes_total{direction=to_target} fell from %.0f to %.0f", before, got)
	}
	if got := value(t, fams, "pinhole_ssh_sessions", "state", "authenticated"); got != 1 {
		t.Errorf("after the restart pinhole_ssh_sessions{state=authenticated} = %.0f, want 1 (the old server's, draining)", got)
	}
	code, status, errOut := run(t, "status", "--json", "--socket", sock)
	if code != 0 {
		t.Fatalf("pinhole status --json: exit %d\n%s", code, errOut)
	}
	var s observe.Snapshot
	if err := json.Unmarshal([]byte(status), &s); err != nil {
		t.Fatalf("pinhole status --json: %v\n%s", err, status)
	}
	if len(s.Sessions) != 1 || s.Sessions[0].State != "draining" {
		t.Errorf("after the restart pinhole status shows sessions %+v, want the old server's one, draining", s.Sessions)
	}
	if float64(s.Totals.BytesToTarget) < before {
		t.Errorf("after the restart pinhole status's bytes to target are %d, fewer than the %.0f before it", s.Totals.BytesToTarget, before)
	}
	held.finish(t, "a server restarted by a reload, in the old one's drain")
}
