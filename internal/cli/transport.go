package cli

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pinhole-dev/pinhole/internal/auth"
	"github.com/pinhole-dev/pinhole/internal/certs"
	"github.com/pinhole-dev/pinhole/internal/transport"
	"github.com/pinhole-dev/pinhole/internal/tunnel"
	"github.com/pinhole-dev/pinhole/internal/vhost"
)

// transportFlags are the flags of connect and stdio that say how the SSH
// stream leaves this machine: --tls-ca, --tls-fingerprint and --proxy.
type transportFlags struct {
	tlsCA, fingerprint, proxy string
}

func (t *transportFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&t.tlsCA, "tls-ca", "", "check a tls:// or wss:// server's certificate against the CA certificates in `FILE` (PEM) instead of the system's")
	fs.StringVar(&t.fingerprint, "tls-fingerprint", "", "trust a tls:// or wss:// server whose certificate has this `SHA256:...` fingerprint (what pinhole server printed for its self-signed one), whatever its issuer and names")
	fs.StringVar(&t.proxy, "proxy", "", "reach the server (or the first -J host) through the proxy `URL`: http://[user:pass@]host:port (CONNECT) or socks5://, socks5h://; none: no proxy (default: for a URL destination, HTTPS_PROXY, ALL_PROXY and NO_PROXY as curl reads them)")
}

// clientTLS loads --tls-ca and checks --tls-fingerprint.
func (t transportFlags) clientTLS() (transport.ClientTLS, error) {
	var c transport.ClientTLS
	if t.fingerprint != "" {
		if _, err := transport.ParseFingerprint(t.fingerprint); err != nil {
			return c, err
		}
		c.Fingerprint = t.fingerprint
	}
	if t.tlsCA != "" {
		path, err := expandHome(t.tlsCA)
		if err != nil {
			return c, err
		}
		if c.RootCAs, err = transport.LoadCertPool(path); err != nil {
			return c, err
		}
	}
	return c, nil
}

// checkProxy reports a malformed --proxy early.
func checkProxy(s string) error {
	if s == "" || s == "none" {
		return nil
	}
	_, err := transport.ParseProxy(s)
	return err
}

// proxyFor is the proxy to reach host:port with over scheme: --proxy
// (given), none for "none", else from the environment as curl reads it
// when fromEnv (the destination was written as a URL), else none.
func proxyFor(given string, fromEnv bool, getenv func(string) string, scheme transport.Scheme, host string, port uint16) (*url.URL, error) {
	switch {
	case given == "none":
		return nil, nil
	case given != "":
		return transport.ParseProxy(given)
	case fromEnv:
		u, err := transport.ProxyFromEnv(getenv, scheme, host, port)
		if err != nil {
			return nil, fmt.Errorf("proxy from the environment: %w (fix or unset it, or pass --proxy none)", err)
		}
		return u, nil
	}
	return nil, nil
}

// serverTransportSettings are pinhole server's --tls-cert, --tls-key,
// --ws-path, --ssh-sni and --trusted-proxy.
type serverTransportSettings struct {
	// HostKey is the host key's file: the self-signed certificate is
	// kept beside it. "" means the state directory.
	HostKey                 string
	TLSCert, TLSKey, WSPath string
	SSHSNI, TrustedProxy    []string
	// LoginGrace, if positive, also bounds how long an HTTP request's
	// header may take.
	LoginGrace time.Duration
	// Domain, if set, serves names under it (--domain), remembered
	// for NameTTL; UpstreamTimeout is --upstream-timeout.
	Domain          string
	NameTTL         time.Duration
	UpstreamTimeout time.Duration
	MaxNamesPerKey  int // 0: no limit
	// ACME gets certificates for Domain and its names from ACMEDirectory
	// (--acme, --acme-directory, --acme-email, --acme-ca).
	ACME                             bool
	ACMEDirectory, ACMEEmail, ACMECA string
	// MaxHTTPConns and MaxHTTPConnsPerSource are --max-http-conns and
	// --per-source-max-http-conns; 0: no limit.
	MaxHTTPConns, MaxHTTPConnsPerSource int
}

// stateDirOf is where the server keeps its state: beside its host key,
// else the state directory.
func stateDirOf(e *env, s serverTransportSettings) (string, error) {
	if s.HostKey != "" {
		return filepath.Dir(s.HostKey), nil
	}
	return stateDir(e.getenv)
}

// serverDisp is the Dispatcher of pinhole server's listeners, with what
// it says at start about its certificate.
type serverDisp struct {
	*transport.Dispatcher
	router        *vhost.Router  // nil without --domain
	acme          *certs.Manager // nil without --acme
	acmeDir       string         // where acme keeps its certificates
	acmeDirectory string         // --acme-directory
	fingerprint   string
	selfSigned    string // the file of the self-signed certificate; "" for --tls-cert
	created       bool
}

// serverDispatcher makes the Dispatcher for s: TLS from --tls-cert and
// --tls-key, else from the self-signed certificate in the state
// directory, beside the host key (made on the first start); with --acme,
// from ACME for the domain and its tunnels' names, that certificate
// serving every other handshake.
func serverDispatcher(e *env, s serverTransportSettings) (*serverDisp, error) {
	if s.ACME && s.Domain == "" {
		return nil, errors.New("--acme needs --domain: certificates are asked for the domain and the names of tunnels under it")
	}
	if !s.ACME && (s.ACMEDirectory != "" || s.ACMEEmail != "" || s.ACMECA != "") {
		return nil, errors.New("--acme-directory, --acme-email and --acme-ca go with --acme: add it, or drop them")
	}
	if (s.TLSCert == "") != (s.TLSKey == "") {
		return nil, errors.New("--tls-cert and --tls-key go together: give both, or neither for a self-signed certificate")
	}
	if s.WSPath == "" {
		s.WSPath = transport.DefaultPath
	}
	if !strings.HasPrefix(s.WSPath, "/") {
		return nil, fmt.Errorf("--ws-path %q: want a path starting with /, such as %s", s.WSPath, transport.DefaultPath)
	}
	var trusted []netip.Prefix
	for _, t := range s.TrustedProxy {
		p, err := netip.ParsePrefix(t)
		if err != nil {
			a, aerr := netip.ParseAddr(t)
			if aerr != nil {
				return nil, fmt.Errorf("--trusted-proxy %q: want an address or CIDR, such as 127.0.0.1/32", t)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		trusted = append(trusted, p.Masked())
	}
	d := &serverDisp{}
	var (
		cert tls.Certificate
		err  error
	)
	if s.TLSCert != "" {
		certFile, err := expandHome(s.TLSCert)
		if err != nil {
			return nil, err
		}
		keyFile, err := expandHome(s.TLSKey)
		if err != nil {
			return nil, err
		}
		if cert, err = transport.LoadKeyPair(certFile, keyFile); err != nil {
			return nil, err
		}
	} else {
		dir, err := stateDirOf(e, s)
		if err != nil {
			return nil, err
		}
		names := []string{"localhost"}
		if h, err := os.Hostname(); err == nil && h != "" && h != "localhost" {
			names = append([]string{h}, names...)
		}
		d.selfSigned = filepath.Join(dir, transport.SelfSignedFile)
		if cert, d.created, err = transport.LoadOrCreateSelfSigned(d.selfSigned, names); err != nil {
			return nil, err
		}
	}
	d.fingerprint = transport.Fingerprint(cert.Certificate[0])
	if s.Domain != "" {
		if d.router, err = newRouter(e, s); err != nil {
			return nil, err
		}
	}
	tlsConfig := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if s.ACME {
		if d.acme, d.acmeDir, err = newACME(e, s, d.router, cert); err != nil {
			return nil, err
		}
		tlsConfig = d.acme.TLSConfig()
		d.acmeDirectory = s.ACMEDirectory
	}
	d.Dispatcher = &transport.Dispatcher{
		TLS:            tlsConfig,
		SSHNames:       s.SSHSNI,
		Path:           s.WSPath,
		TrustedProxies: trusted,
		LoginGrace:     s.LoginGrace,
		Logger:         e.log,
		// 0, no limit, is the Dispatcher's negative.
		MaxHTTPConns:          cmp.Or(s.MaxHTTPConns, -1),
		MaxHTTPConnsPerSource: cmp.Or(s.MaxHTTPConnsPerSource, -1),
	}
	if e.cores != nil {
		d.Dispatcher.Hold = e.cores.Hold
	}
	if d.router != nil {
		d.Dispatcher.HTTP = d.router
		d.Dispatcher.Passthrough = d.router.Passthrough
	}
	if d.acme != nil {
		d.Dispatcher.HTTP = d.acme.HTTPHandler(d.router)
	}
	return d, nil
}

// newACME is --acme's certificate manager: for the domain itself and
// the names that have a tunnel now, kept in the state directory's acme
// directory; every other handshake gets fallback.
func newACME(e *env, s serverTransportSettings, router *vhost.Router, fallback tls.Certificate) (*certs.Manager, string, error) {
	dir, err := stateDirOf(e, s)
	if err != nil {
		return nil, "", err
	}
	dir = filepath.Join(dir, "acme")
	var pool *x509.CertPool
	if s.ACMECA != "" {
		path, err := expandHome(s.ACMECA)
		if err != nil {
			return nil, "", err
		}
		if pool, err = transport.LoadCertPool(path); err != nil {
			return nil, "", fmt.Errorf("--acme-ca: %w", err)
		}
	}
	if s.ACMEDirectory != "" {
		if u, err := url.Parse(s.ACMEDirectory); err != nil || u.Scheme != "https" || u.Host == "" {
			return nil, "", fmt.Errorf("--acme-directory %q: want the https:// URL of an ACME directory, such as %s", s.ACMEDirectory, certs.LetsEncrypt)
		}
	}
	domain := router.Domain
	m, err := certs.New(certs.Config{
		Dir:       dir,
		Directory: s.ACMEDirectory,
		Email:     s.ACMEEmail,
		RootCAs:   pool,
		Domain:    domain,
		Allow:     func(host string) bool { return host == domain || router.Has(host) },
		Fallback:  &fallback,
		// A --tls-cert file wins for the names it covers.
		FallbackWins: s.TLSCert != "",
		Logger:       e.log,
	})
	return m, dir, err
}

// listening tells the router the ports its URLs name: 443 and 80 where
// a listener has them, else the first listener's.
func (d *serverDisp) listening(addrs []net.Addr) {
	if d.router == nil {
		return
	}
	var ports []int
	for _, a := range addrs {
		if ta, ok := a.(*net.TCPAddr); ok {
			ports = append(ports, ta.Port)
		}
	}
	pick := func(want int) int {
		if len(ports) == 0 || slices.Contains(ports, want) {
			return want
		}
		return ports[0]
	}
	d.router.SetPorts(pick(80), pick(443))
}

// names is the tunnel.ServerConfig.Names of d: its router, or nil.
func (d *serverDisp) names() tunnel.NameListener {
	if d.router == nil {
		return nil
	}
	if d.acme != nil {
		return prefetchNames{d.router, d.acme}
	}
	return d.router
}

// prefetchNames is a router that asks for a name's certificate as soon as
// its tunnel is up.
type prefetchNames struct {
	*vhost.Router
	acme *certs.Manager
}

func (p prefetchNames) ListenName(name string, port uint32, key string, options func(context.Context) (auth.TunnelOptions, error)) (net.Listener, error) {
	return p.ListenNameLimit(name, port, key, 0, options)
}

// ListenNameLimit is tunnel.NameLimiter's, for a key with its own cap on
// names: the embedded Router's would skip the prefetch.
func (p prefetchNames) ListenNameLimit(name string, port uint32, key string, max int, options func(context.Context) (auth.TunnelOptions, error)) (net.Listener, error) {
	ln, err := p.Router.ListenNameLimit(name, port, key, max, options)
	if err == nil {
		p.acme.Prefetch(p.Host(name))
	}
	return ln, err
}

// newRouter is --domain's: names remembered beside the host key.
func newRouter(e *env, s serverTransportSettings) (*vhost.Router, error) {
	domain := strings.ToLower(strings.Trim(s.Domain, "."))
	for _, label := range strings.Split(domain, ".") {
		if err := vhost.CheckName(label); err != nil {
			return nil, fmt.Errorf("--domain %q: want a domain name such as tunnels.example.com (%v)", s.Domain, err)
		}
	}
	dir, err := stateDirOf(e, s)
	if err != nil {
		return nil, err
	}
	return &vhost.Router{
		Domain:          domain,
		Reserved:        s.SSHSNI,
		Store:           &vhost.FileStore{Path: filepath.Join(dir, "names.json"), TTL: s.NameTTL},
		UpstreamTimeout: s.UpstreamTimeout,
		MaxNamesPerKey:  cmp.Or(s.MaxNamesPerKey, -1),
		Logger:          e.log,
	}, nil
}

// printTLS says how tls:// and wss:// clients reach the server at addr
// and trust its certificate.
func (d *serverDisp) printTLS(e *env, addr net.Addr) {
	host, port := "HOST", "443"
	if ta, ok := addr.(*net.TCPAddr); ok {
		port = strconv.Itoa(ta.Port)
		if !ta.IP.IsUnspecified() {
			host = ta.IP.String()
		}
	}
	if d.router != nil {
		fmt.Fprintf(e.stdout, "pinhole server: names under %s: ssh -R myapp:80:localhost:3000 (without -N to see it) gives %s and %s\n", d.router.Domain, d.router.URL("myapp"), d.router.HTTPURL("myapp"))
	}
	if d.acme != nil {
		dir := cmp.Or(d.acmeDirectory, certs.LetsEncrypt)
		fmt.Fprintf(e.stdout, "pinhole server: TLS certificates from ACME (%s) for %s and the names of tunnels under it, kept in %s; other names get %s\n", dir, d.router.Domain, d.acmeDir, d.fingerprint)
	}
	if d.selfSigned == "" {
		fmt.Fprintf(e.stdout, "pinhole server: TLS certificate %s (--tls-cert)\n", d.fingerprint)
		return
	}
	verb := "kept in"
	if d.created {
		verb = "made and kept in"
	}
	fmt.Fprintf(e.stdout, "pinhole server: TLS certificate %s, self-signed, %s %s\n", d.fingerprint, verb, d.selfSigned)
	fmt.Fprintf(e.stdout, "pinhole server: TLS and WebSocket clients trust it with: pinhole connect --tls-fingerprint %s wss://%s:%s%s\n", d.fingerprint, host, port, d.Path)
}

// listenServer opens one of the server's listeners, with an error that
// says what to do.
func listenServer(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if errors.Is(err, syscall.EACCES) {
		return nil, fmt.Errorf("cannot listen on %s: %w (a port below 1024 needs root or CAP_NET_BIND_SERVICE: "+
			"AmbientCapabilities=CAP_NET_BIND_SERVICE in a systemd unit, docs/systemd.md; or pick a port from 1024 up with --listen)", addr, err)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot listen on %s: %w (is another server on that port? pick another with --listen)", addr, err)
	}
	return ln, nil
}

// shutdownServer drains srv and the Dispatcher in front of it together:
// both stop taking connections at once, HTTP requests in progress and
// SSH streams (WebSocket ones included) get until ctx ends, and then
// both close.
func shutdownServer(ctx context.Context, srv *tunnel.Server, disp *transport.Dispatcher) error {
	herr := make(chan error, 1)
	go func() { herr <- disp.Shutdown(ctx) }()
	// When the drain time is up, the Dispatcher lets go of connections
	// still in a TLS handshake or an HTTP header, which srv's Close waits
	// for.
	stop := context.AfterFunc(ctx, func() { disp.Close() })
	defer stop()
	err := srv.Shutdown(ctx)
	disp.Close()
	if derr := <-herr; err == nil && derr != nil && !errors.Is(derr, context.DeadlineExceeded) && !errors.Is(derr, context.Canceled) {
		err = derr
	}
	return err
}
