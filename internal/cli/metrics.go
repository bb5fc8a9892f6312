package cli

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/pinhole-dev/pinhole/internal/metrics"
	"github.com/pinhole-dev/pinhole/internal/spec"
	"github.com/pinhole-dev/pinhole/internal/tunnel"
	"github.com/pinhole-dev/pinhole/internal/vhost"
)

// metricsFlags are --metrics, --metrics-token, --metrics-token-file and
// --allow-open-metrics of server, connect and up.
type metricsFlags struct {
	addr, token, tokenFile string
	open                   bool
}

func (m *metricsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&m.addr, "metrics", "", "serve Prometheus metrics at http://`ADDR`/metrics (host:port, port 0 for any; docs/metrics.md); off unless given. An address other than loopback needs --metrics-token or --allow-open-metrics")
	fs.StringVar(&m.token, "metrics-token", "", "a scrape of --metrics must send Authorization: Bearer `TOKEN` (Prometheus: authorization.credentials); --metrics-token-file keeps it out of the process list")
	fs.StringVar(&m.tokenFile, "metrics-token-file", "", "read --metrics-token from the first line of `FILE` (Prometheus: authorization.credentials_file)")
	fs.BoolVar(&m.open, "allow-open-metrics", false, "serve --metrics on an address other than loopback without a token: anyone who reaches it sees the tunnels' names, forwards and traffic")
}

// metricsServer is a running --metrics.
type metricsServer struct {
	*metrics.Metrics
	srv *http.Server
}

// start serves the metrics of src on m.addr and prints where; nil and no
// error when --metrics is not given. who names the command in what it
// prints.
func (m *metricsFlags) start(e *env, who string, src metrics.Sources) (*metricsServer, error) {
	token, err := tokenFlag("metrics-token", m.token, m.tokenFile)
	if err != nil {
		return nil, err
	}
	if m.addr == "" {
		if token != "" || m.open {
			return nil, errors.New("--metrics-token and --allow-open-metrics go with --metrics ADDR: give the address to serve the metrics on")
		}
		return nil, nil
	}
	host, port, err := net.SplitHostPort(m.addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics %q: want host:port, such as 127.0.0.1:9464", m.addr)
	}
	if _, err := net.LookupPort("tcp", port); err != nil || port == "" {
		return nil, fmt.Errorf("--metrics %q: bad port %q", m.addr, port)
	}
	if !spec.LoopbackHost(host) && token == "" && !m.open {
		return nil, fmt.Errorf("--metrics %s is reachable from other machines: give --metrics-token-file FILE (scrapers then send Authorization: Bearer TOKEN), or --allow-open-metrics to serve it to anyone who reaches it, or a loopback address such as 127.0.0.1:%s", m.addr, port)
	}
	ln, err := net.Listen("tcp", m.addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics: %w (pick another port, or port 0 for any)", err)
	}
	src.Version = tunnel.Version
	mets := metrics.New(src)
	mux := http.NewServeMux()
	var h http.Handler = mets.Handler(token)
	if token == "" && spec.LoopbackHost(host) {
		h = loopbackOnly(h)
	}
	mux.Handle("/metrics", h)
	ms := &metricsServer{Metrics: mets, srv: watchHTTPServer(mux)}
	go ms.srv.Serve(ln) // returns http.ErrServerClosed once stop closes it
	auth := ""
	if token != "" {
		auth = " (bearer token required)"
	}
	fmt.Fprintf(e.stdout, "%s: metrics on http://%s/metrics%s\n", who, ln.Addr(), auth)
	e.log.Info("metrics: serving", "laddr", ln.Addr().String(), "token", token != "")
	return ms, nil
}

// tokenFlag is the secret of the flags --NAME TOKEN and --NAME-file FILE
// (name without dashes): the first line of FILE, trimmed, so that it
// stays out of the process list; "" when neither is given.
func tokenFlag(name, token, file string) (string, error) {
	if file == "" {
		return token, nil
	}
	if token != "" {
		return "", fmt.Errorf("--%s and --%s-file: give one of them", name, name)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("--%s-file: %w", name, err)
	}
	token, _, _ = strings.Cut(string(b), "\n")
	if token = strings.TrimSpace(token); token == "" {
		return "", fmt.Errorf("--%s-file %s: the first line is empty; write the token there", name, file)
	}
	return token, nil
}

// stop closes the metrics server; ms may be nil.
func (ms *metricsServer) stop() {
	if ms != nil {
		ms.srv.Close()
	}
}

// wrapHTTP counts the public names' requests of handler h, or returns h
// when ms is nil (no --metrics) or h is nil (no --domain).
func (ms *metricsServer) wrapHTTP(h http.Handler, router *vhost.Router) http.Handler {
	if ms == nil || h == nil || router == nil {
		return h
	}
	return ms.WrapHTTP(h, func(host string) string { return nameLabel(router, host) })
}

// nameLabel is the label of a request's Host: the public name of a
// tunnel the router serves now (myapp for myapp.DOMAIN, or a custom
// domain), "" for any other Host, so that the label's values are only
// names tunnels have held.
func nameLabel(r *vhost.Router, host string) string {
	if !r.Has(host) {
		return ""
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if name, ok := strings.CutSuffix(host, "."+strings.ToLower(r.Domain)); ok {
		return name
	}
	return host
}

// loopbackOnly answers 403 to a request whose Host is not localhost or a
// loopback address: without a token, the loopback address is the only
// guard, and a web page of another site that has its name resolve to
// 127.0.0.1 (DNS rebinding) would otherwise read the metrics from the
// browser of someone on this machine.
func loopbackOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !spec.LoopbackHost(r.Host) {
			http.Error(w, "pinhole: metrics without a token answer only to a loopback Host (localhost or 127.0.0.1); give --metrics-token-file to scrape by another name", http.StatusForbidden)
			return
		}
		h.ServeHTTP(w, r)
	})
}
