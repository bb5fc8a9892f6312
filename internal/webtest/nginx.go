package webtest

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// NginxConfig is what a test chooses about its nginx. Upstream is
// required; the zero value of every other field means a default.
type NginxConfig struct {
	// Listen is where nginx listens for TLS. The zero value means
	// 127.0.0.1; a port of 0 means one webtest picks (see the package
	// comment). In a Namespace, give an address of that namespace, such
	// as natlab.InternetAddr with port 443.
	Listen netip.AddrPort

	// CertFile and KeyFile are nginx's certificate and key, PEM. Empty
	// means a new one from Cert for "localhost" and Listen's address,
	// kept in Nginx.Cert.
	CertFile, KeyFile string

	// Upstream is where nginx passes requests for Path: an HTTP server,
	// such as a Go listener on 127.0.0.1:0, in nginx's namespace.
	Upstream netip.AddrPort

	// Path is the location nginx passes on (location PATH, which matches
	// PATH and every path that starts with it); every other path gets
	// 404 from nginx itself. Empty means "/ssh".
	Path string

	// Namespace is the network namespace (a natlab lab's LAN, Router or
	// Internet) to run nginx in; "" means the test's own.
	Namespace string

	// Extra holds more lines for the location block, e.g.
	// "proxy_set_header X-Test yes;".
	Extra []string

	// ProxyProtocol makes nginx read a PROXY protocol header (v1 or v2)
	// at the start of each connection (listen ... proxy_protocol), and
	// $proxy_protocol_addr hold the client it names.
	ProxyProtocol bool
}

// Nginx is a running nginx. Its fields are read-only.
type Nginx struct {
	Addr      netip.AddrPort // where it listens for TLS
	Namespace string         // where it runs, "" for the test's own namespace
	Pid       int

	// Cert is the certificate nginx serves when NginxConfig had no
	// CertFile; nil when it had one.
	Cert *Certificate

	Dir           string // holds the config, the pid file, logs, temporary files
	ConfigFile    string
	AccessLogFile string // a line for each request ("GET /ssh HTTP/1.1" 101 ...), written when it ends
	ErrorLogFile  string // nginx's own messages, at level info

	p        *proc
	path     string // nginx's
	listen   netip.AddrPort
	certFile string
	keyFile  string
	upstream netip.AddrPort
	location string
	extra    []string
	pp       bool
}

// StartNginx writes an nginx.conf for cfg, starts
// `nginx -e ERRORLOG -p DIR -c CONF -g 'daemon off;'`, waits until it
// accepts connections, and kills it when the test ends, writing the end of
// its error log to the test's log if the test failed. The config: one
// process (master_process off; as root, user root), a TLS server on
// cfg.Listen with cfg's certificate, and
//
//	location PATH {
//		proxy_pass http://UPSTREAM;
//		proxy_http_version 1.1;
//		proxy_set_header Upgrade $http_upgrade;
//		proxy_set_header Connection "upgrade";
//		proxy_set_header Host $host;
//		proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
//		proxy_set_header X-Forwarded-Proto $scheme;
//		proxy_read_timeout 1h;
//		proxy_send_timeout 1h;
//		proxy_buffering off;
//	}
//
// so that a WebSocket upgrade (101 Switching Protocols) on PATH goes
// through to the upstream and the connection then carries raw bytes both
// ways. Every other path gets 404 from nginx.
//
// It skips the test when nginx is not installed, and fails it when nginx
// does not start or cfg has no Upstream.
func StartNginx(t testing.TB, cfg NginxConfig) *Nginx {
	t.Helper()
	n := newNginx(t, cfg)
	last := startOnSomePort(n.listen, n.tryPort)
	if last == nil {
		return n
	}
	t.Fatalf("webtest: nginx did not start: %v; its error log:\n%s", last, lastLines(n.ErrorLog(), 40))
	return nil
}

// newNginx makes the directory of an nginx for cfg, and kills the nginx
// when the test ends.
func newNginx(t testing.TB, cfg NginxConfig) *Nginx {
	t.Helper()
	Need(t, "nginx")
	path, _ := lookPath("nginx")
	if !cfg.Upstream.IsValid() || cfg.Upstream.Port() == 0 {
		t.Fatal("webtest: NginxConfig needs an Upstream address and port")
	}
	n := &Nginx{
		Namespace: cfg.Namespace,
		path:      path, listen: cfg.Listen, upstream: cfg.Upstream,
		certFile: cfg.CertFile, keyFile: cfg.KeyFile,
		location: cfg.Path, extra: cfg.Extra, pp: cfg.ProxyProtocol,
	}
	if !n.listen.Addr().IsValid() {
		n.listen = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), n.listen.Port())
	}
	if n.location == "" {
		n.location = "/ssh"
	}
	if n.certFile == "" && n.keyFile == "" {
		n.Cert = Cert(t, "localhost", n.listen.Addr().String())
		n.certFile, n.keyFile = n.Cert.CertFile, n.Cert.KeyFile
	}
	n.Dir = t.TempDir()
	n.ConfigFile = filepath.Join(n.Dir, "nginx.conf")
	n.AccessLogFile = filepath.Join(n.Dir, "access.log")
	n.ErrorLogFile = filepath.Join(n.Dir, "error.log")
	if err := os.Mkdir(filepath.Join(n.Dir, "tmp"), 0o700); err != nil {
		t.Fatalf("webtest: %v", err)
	}
	t.Cleanup(func() {
		if n.p != nil {
			n.p.stop()
		}
		if t.Failed() {
			t.Logf("webtest: nginx's error log (%s):\n%s", n.ErrorLogFile, lastLines(n.ErrorLog(), 40))
		}
	})
	return n
}

// tryPort writes the config for nginx on addr, runs nginx, and waits until
// it accepts connections; if it does not, nginx has been stopped, and the
// error is errPortTaken when addr was in use.
func (n *Nginx) tryPort(addr netip.AddrPort) error {
	if err := os.WriteFile(n.ConfigFile, []byte(n.conf(addr)), 0o644); err != nil {
		return err
	}
	// A fresh log each try, so that the one kept is about the nginx that
	// runs.
	os.Remove(n.ErrorLogFile)
	os.Remove(n.AccessLogFile)
	stderr, err := os.Create(filepath.Join(n.Dir, "nginx.stderr"))
	if err != nil {
		return err
	}
	defer stderr.Close()
	// -e: the error log from the start, before nginx reads its config
	// (else it opens Debian's /var/log/nginx/error.log).
	cmd := exec.Command(n.path, "-e", n.ErrorLogFile, "-p", n.Dir, "-c", n.ConfigFile, "-g", "daemon off;")
	cmd.Dir = n.Dir
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if cmd.SysProcAttr, err = sysProcAttr("", false); err != nil {
		return err
	}
	p, err := launch(n.Namespace, cmd)
	if err != nil {
		return fmt.Errorf("webtest: starting nginx: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	// Logged at notice once nginx has bound its ports and runs its event
	// loop.
	ready := regexp.MustCompile(`\[notice\] .*using the "\w+" event method`)
	if err := p.waitStarted(ctx, n.ErrorLogFile, ready, n.Namespace, addr); err != nil {
		p.stop()
		return err
	}
	n.p, n.Addr, n.Pid = p, addr, cmd.Process.Pid
	return nil
}

// conf is the nginx.conf of an nginx on addr.
func (n *Nginx) conf(addr netip.AddrPort) string {
	var b strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	tmp := filepath.Join(n.Dir, "tmp")
	line("# nginx.conf written by webtest for one test")
	if os.Geteuid() == 0 {
		line("user root;") // no worker that drops to www-data: one process, root's files
	}
	line("master_process off;") // one process, the one webtest started: Pdeathsig and kill by pid reach all of nginx
	line("pid %s;", filepath.Join(n.Dir, "nginx.pid"))
	line("error_log %s info;", n.ErrorLogFile)
	line("events { worker_connections 1024; }")
	line("http {")
	line("\taccess_log %s;", n.AccessLogFile)
	for _, kind := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		line("\t%s_temp_path %s;", kind, filepath.Join(tmp, kind))
	}
	line("\tserver {")
	if n.pp {
		line("\t\tlisten %s ssl proxy_protocol;", addr)
	} else {
		line("\t\tlisten %s ssl;", addr)
	}
	line("\t\tssl_certificate %s;", n.certFile)
	line("\t\tssl_certificate_key %s;", n.keyFile)
	line("\t\tlocation %s {", n.location)
	line("\t\t\tproxy_pass http://%s;", n.upstream)
	line("\t\t\tproxy_http_version 1.1;")
	line("\t\t\tproxy_set_header Upgrade $http_upgrade;")
	line("\t\t\tproxy_set_header Connection \"upgrade\";")
	line("\t\t\tproxy_set_header Host $host;")
	line("\t\t\tproxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;")
	line("\t\t\tproxy_set_header X-Forwarded-Proto $scheme;")
	line("\t\t\tproxy_read_timeout 1h;")
	line("\t\t\tproxy_send_timeout 1h;")
	line("\t\t\tproxy_buffering off;")
	for _, e := range n.extra {
		line("\t\t\t%s", e)
	}
	line("\t\t}")
	line("\t\tlocation / { return 404; }")
	line("\t}")
	line("}")
	return b.String()
}

// URL returns "https://ADDR" + Path: where a client asks for the upgrade.
func (n *Nginx) URL() string { return "https://" + n.Addr.String() + n.location }

// AccessLog returns nginx's access log so far.
func (n *Nginx) AccessLog() string { return readFile(n.AccessLogFile) }

// ErrorLog returns nginx's error log so far: its own messages.
func (n *Nginx) ErrorLog() string { return readFile(n.ErrorLogFile) }

// WaitAccessLog waits until a line of the access log matches the regular
// expression re, and returns it; it gives up when ctx ends. An upgraded
// connection's line is written when it closes.
func (n *Nginx) WaitAccessLog(ctx context.Context, re string) (string, error) {
	return waitLine(ctx, n.AccessLogFile, re)
}

// Stop kills nginx and waits for it to exit. It is idempotent and runs
// when the test ends.
func (n *Nginx) Stop() { n.p.stop() }
