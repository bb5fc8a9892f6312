package cli

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pinhole-dev/pinhole/internal/accept"
	"github.com/pinhole-dev/pinhole/internal/auth"
	"github.com/pinhole-dev/pinhole/internal/config"
	"github.com/pinhole-dev/pinhole/internal/control"
	"github.com/pinhole-dev/pinhole/internal/metrics"
	"github.com/pinhole-dev/pinhole/internal/observe"
	"github.com/pinhole-dev/pinhole/internal/portmap"
	"github.com/pinhole-dev/pinhole/internal/ssh"
	"github.com/pinhole-dev/pinhole/internal/transport"
	"github.com/pinhole-dev/pinhole/internal/tunnel"
)

// serverChecks are tunnel's parsers, for config.ParseServer.
var serverChecks = config.ServerChecks{
	GatewayPorts: func(s string) error { _, err := tunnel.ParseGatewayPorts(s); return err },
	Ciphers:      func(s string) error { _, err := tunnel.ParseCiphers(s); return err },
	MaxStartups:  func(s string) error { _, err := tunnel.ParseStartups(s); return err },
}

func loadServerConfig(e *env, file string) ([]byte, *config.Server, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot read the config: %w (pass the server's file with -c FILE; docs/config.md has an example)", err)
	}
	cfg, err := config.ParseServer(file, data, serverChecks)
	if es := config.AsErrors(err); es != nil {
		for _, m := range es {
			fmt.Fprintln(e.stderr, m)
		}
		return nil, nil, fmt.Errorf("%d %s in %s", len(es), plural(len(es), "mistake", "mistakes"), file)
	} else if err != nil {
		return nil, nil, err
	}
	return data, cfg, nil
}

// runServerFile is pinhole server -c FILE: the server as the file says,
// reloaded on SIGHUP and when the file changes. A listener added starts
// accepting; one removed stops (the connections it took go on); a new
// authorized_keys file applies to the next login; any other setting
// changed makes a new tunnel.Server that takes every new connection while
// the old one drains its own for drain.
func runServerFile(ctx context.Context, e *env, file string, watch *watchFlags, mf *metricsFlags) error {
	data, cfg, err := loadServerConfig(e, file)
	if err != nil {
		return err
	}
	r := &serverRun{e: e, ctx: ctx, lns: map[string]*liveListener{}, events: new(observe.Ring)}
	if err := r.setKeys(cfg.AuthorizedKeys); err != nil {
		return err
	}
	if cfg.DebugAddr != "" {
		d := &debugServer{e: e, name: "pinhole server"}
		if err := d.Set(cfg.DebugAddr); err != nil {
			return fmt.Errorf("debug-addr in %s: %w", file, err)
		}
		defer d.stop()
	}
	if r.mapCfg, err = serverMapConfig(e, cfg); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if r.metrics, err = mf.start(e, "pinhole server", metrics.Sources{Role: "server", Servers: r.servers, Portmap: &r.mapStatus}); err != nil {
		return err
	}
	defer r.metrics.stop()
	gen, err := r.newGeneration(cfg.Settings)
	if err != nil {
		return err
	}
	r.setCurrent(gen)
	for _, a := range cfg.Listen {
		if err := r.listen(a); err != nil {
			r.closeAll()
			return err
		}
	}
	r.cfg = cfg
	fmt.Fprintf(e.stdout, "pinhole server: host key %s %s\n", gen.key.Type(), ssh.FingerprintSHA256(gen.key))
	gen.disp.printTLS(e, r.lns[cfg.Listen[0]].ln.Addr())
	asks := make(chan reloadAsk)
	stopWatch, err := watch.start(e, "server", control.Handler{
		Snapshot: func() observe.Snapshot { return serverSnapshot(r.servers()...) },
		Reload:   asker(asks),
	})
	if err != nil {
		r.closeAll()
		return err
	}
	defer stopWatch()
	fmt.Fprintf(e.stdout, "pinhole server: running %s; reload with SIGHUP or by saving the file\n", file)
	e.svc.ready("running " + file)

	seen := data
	var unsettled []byte
	tick := time.NewTicker(watchEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return r.shutdown()
		case <-e.reload:
			b, err := os.ReadFile(file)
			if err != nil {
				e.log.Error("reload refused: cannot read the config file; the server stays as it is", "file", file, "err", err)
				continue
			}
			seen = b
			r.reload(file, b, "SIGHUP")
		case a := <-asks: // pinhole reload: as SIGHUP
			b, err := os.ReadFile(file)
			if err != nil {
				e.log.Error("reload refused: cannot read the config file; the server stays as it is", "file", file, "err", err)
				a.reply <- fmt.Sprintf("reload refused: cannot read %s (%v); the server stays as it is", file, err)
				continue
			}
			seen = b
			a.reply <- r.reload(file, b, "pinhole reload")
		case <-tick.C:
			b, err := os.ReadFile(file)
			if err != nil || bytes.Equal(b, seen) {
				continue
			}
			if _, err := config.ParseServer(file, b, serverChecks); err != nil && !bytes.Equal(b, unsettled) {
				unsettled = b
				continue
			}
			unsettled, seen = nil, b
			r.reload(file, b, "the file changed")
		}
	}
}

// serverRun is the running server of pinhole server -c; only
// runServerFile's goroutine calls its methods.
type serverRun struct {
	e   *env
	ctx context.Context // the run's: router mappings last as long
	cfg *config.Server
	// mapCfg is how listeners opened from now on are mapped on the home
	// router (the file's map keys); nil: not mapped.
	mapCfg *portmap.Config
	keys   atomic.Pointer[auth.KeyFile]
	gen    *generation
	events *observe.Ring // every generation's refusals
	// all are every generation's servers, the current one last: pinhole
	// status and the metrics show the sessions of one still draining, and
	// count what each carried.
	allMu sync.Mutex
	all   []*tunnel.Server
	lns   map[string]*liveListener // by the address the file gives
	old   sync.WaitGroup           // generations draining

	// metrics is --metrics (nil: off), and mapStatus the router mappings
	// of every listener, which it reads.
	metrics   *metricsServer
	mapStatus portmap.Status
}

// setCurrent makes g the generation new connections go to.
func (r *serverRun) setCurrent(g *generation) {
	r.gen = g
	r.allMu.Lock()
	r.all = append(r.all, g.srv)
	r.allMu.Unlock()
}

// servers are every generation's server, the current one last. A
// generation that has drained stays: its figures are part of the totals
// (a restart-style reload is rare: a setting or a certificate changed).
func (r *serverRun) servers() []*tunnel.Server {
	r.allMu.Lock()
	defer r.allMu.Unlock()
	return slices.Clone(r.all)
}

// generation is one tunnel.Server, the Dispatcher in front of it (TLS,
// WebSocket and HTTP on the same sockets), and the settings they were
// made with.
type generation struct {
	srv      *tunnel.Server
	disp     *serverDisp
	settings config.ServerSettings
	key      ssh.PublicKey
	serving  sync.WaitGroup // its Serve calls
}

// liveListener is a socket of the file's listen, whose connections go to
// the current generation through a handoff of its own.
type liveListener struct {
	ln    net.Listener
	cur   atomic.Pointer[handoff]
	done  chan struct{} // the accept loop ended
	unmap func()        // removes its router mapping; nil when it has none
}

// handoff is the net.Listener a generation's Serve takes: connections the
// liveListener accepted. Closing it (Shutdown does) leaves the socket
// open for the next generation.
type handoff struct {
	addr   net.Addr
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newHandoff(addr net.Addr) *handoff {
	return &handoff{addr: addr, conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (h *handoff) Accept() (net.Conn, error) {
	select {
	case c := <-h.conns:
		return c, nil
	case <-h.closed:
		return nil, net.ErrClosed
	}
}

func (h *handoff) Close() error {
	h.once.Do(func() { close(h.closed) })
	return nil
}

func (h *handoff) Addr() net.Addr { return h.addr }

func (r *serverRun) setKeys(path string) error {
	if path == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return fmt.Errorf("no home directory for the default authorized_keys (%v); set authorized-keys = \"FILE\"", err)
		}
		path = filepath.Join(home, ".ssh", "authorized_keys")
	}
	path, err := expandHome(path)
	if err != nil {
		return err
	}
	keys := auth.NewKeyFile(path, r.e.log)
	problems, err := keys.Load()
	if errors.Is(err, os.ErrNotExist) {
		r.e.log.Warn("every key is refused until the authorized_keys file exists", "file", path)
	} else if err != nil {
		return err
	}
	for _, p := range problems {
		r.e.log.Warn("that line's key is refused", "err", p)
	}
	r.keys.Store(keys)
	return nil
}

// authorize is authorizer over whichever authorized_keys file is current.
func (r *serverRun) authorize(meta ssh.ConnMetadata, key ssh.PublicKey) (*auth.Options, error) {
	return authorizer(r.keys.Load())(meta, key)
}

func (r *serverRun) newGeneration(s config.ServerSettings) (*generation, error) {
	gp, err := tunnel.ParseGatewayPorts(s.GatewayPorts)
	if err != nil {
		return nil, err
	}
	var ciphers []string
	if s.Ciphers != "" {
		if ciphers, err = tunnel.ParseCiphers(s.Ciphers); err != nil {
			return nil, err
		}
	}
	startups, err := tunnel.ParseStartups(s.MaxStartups)
	if err != nil {
		return nil, err
	}
	perSource := -1
	if s.PerSourceMaxStartups != "none" {
		if perSource, err = strconv.Atoi(s.PerSourceMaxStartups); err != nil {
			return nil, err
		}
	}
	hostKey := s.HostKey
	if hostKey == "" {
		dir, err := stateDir(r.e.getenv)
		if err != nil {
			return nil, err
		}
		hostKey = auth.DefaultHostKeyPath(dir)
	}
	if hostKey, err = expandHome(hostKey); err != nil {
		return nil, err
	}
	signer, created, err := auth.LoadOrCreateHostKey(hostKey)
	if err != nil {
		return nil, err
	}
	if created {
		fmt.Fprintf(r.e.stdout, "pinhole server: generated a new host key in %s\n", hostKey)
	}
	keyLimits, err := keyLimitsOf(s.MaxPortsPerKey, s.MaxStreamsPerKey, s.MaxStreamRatePerKey)
	if err != nil {
		return nil, err
	}
	neg := func(d time.Duration) time.Duration {
		if d == 0 {
			return -1
		}
		return d
	}
	disp, err := serverDispatcher(r.e, serverTransportSettings{
		HostKey: hostKey, TLSCert: s.TLSCert, TLSKey: s.TLSKey, WSPath: s.WSPath, SSHSNI: s.SSHSNI, TrustedProxy: s.TrustedProxy,
		LoginGrace: neg(s.LoginGrace), Domain: s.Domain, NameTTL: s.NameTTL, UpstreamTimeout: s.UpstreamTimeout, MaxNamesPerKey: s.MaxNamesPerKey,
		ACME: s.ACME, ACMEDirectory: s.ACMEDirectory, ACMEEmail: s.ACMEEmail, ACMECA: s.ACMECA,
		MaxHTTPConns: s.MaxHTTPConns, MaxHTTPConnsPerSource: s.PerSourceMaxHTTPConns,
	})
	if err != nil {
		return nil, err
	}
	srv, err := tunnel.NewServer(tunnel.ServerConfig{
		HostKeys:             []ssh.Signer{signer},
		Authorize:            r.authorize,
		GatewayPorts:         gp,
		KeepaliveInterval:    neg(s.Keepalive),
		TakeoverProbe:        neg(s.TakeoverProbe),
		Cores:                r.e.cores,
		UDPIdleTimeout:       s.UDPIdle,
		UDPMaxFlows:          s.UDPMaxFlows,
		Ciphers:              ciphers,
		HandshakeTimeout:     neg(s.LoginGrace),
		MaxStartups:          startups,
		PerSourceMaxStartups: perSource,
		MaxAuthTries:         s.MaxAuthTries,
		KeyLimits:            keyLimits,
		Sort:                 disp.Sort,
		Unwrap:               disp.Unwrap,
		Names:                disp.names(),
		Events:               r.events,
		Logger:               r.e.log,
	})
	if err != nil {
		disp.Close()
		return nil, err
	}
	disp.SSH = func(c net.Conn) { srv.ServeConn(c) }
	disp.Dispatcher.HTTP = r.metrics.wrapHTTP(disp.Dispatcher.HTTP, disp.router)
	return &generation{srv: srv, disp: disp, settings: s, key: signer.PublicKey()}, nil
}

// serve hands ll's connections to g from now on.
func (r *serverRun) serve(g *generation, ll *liveListener) {
	h := newHandoff(ll.ln.Addr())
	ll.cur.Store(h)
	g.serving.Add(1)
	go func() {
		defer g.serving.Done()
		g.srv.Serve(h)
	}()
}

// portsChanged tells the current generation's name router which ports
// its URLs name.
func (r *serverRun) portsChanged() {
	var addrs []net.Addr
	for _, ll := range r.lns {
		addrs = append(addrs, ll.ln.Addr())
	}
	slices.SortFunc(addrs, func(a, b net.Addr) int { return strings.Compare(a.String(), b.String()) })
	r.gen.disp.listening(addrs)
}

func (r *serverRun) listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w (is another server on that port? change listen in the file)", addr, err)
	}
	ll := &liveListener{ln: ln, done: make(chan struct{})}
	r.serve(r.gen, ll)
	go func() {
		defer close(ll.done)
		accept.Loop(ln, r.e.log, func(c net.Conn) {
			for {
				h := ll.cur.Load()
				select {
				case h.conns <- c:
					return
				case <-h.closed:
					if ll.cur.Load() == h { // no generation to take it
						c.Close()
						return
					}
				}
			}
		})
	}()
	r.lns[addr] = ll
	r.portsChanged()
	fmt.Fprintf(r.e.stdout, "pinhole server: listening on %s\n", ln.Addr())
	if r.mapCfg != nil {
		mc := *r.mapCfg
		mc.Status = &r.mapStatus
		ll.unmap = serverMap(r.ctx, r.e, ln.Addr(), mc)
	}
	return nil
}

// serverMapConfig is the file's map keys as a portmap.Config; nil when
// map is off.
func serverMapConfig(e *env, cfg *config.Server) (*portmap.Config, error) {
	if !cfg.Map {
		return nil, nil
	}
	mf := mapFlags{prefix: "map-", gateway: cfg.MapGateway, ssdp: cfg.MapSSDP, via: cmp.Or(cfg.MapVia, "auto")}
	mc, err := mf.config(e)
	if err != nil {
		return nil, err
	}
	return &mc, nil
}

// unlisten stops accepting on addr; the connections it took go on.
func (r *serverRun) unlisten(addr string) {
	ll := r.lns[addr]
	delete(r.lns, addr)
	ll.ln.Close()
	<-ll.done
	ll.cur.Load().Close()
	if ll.unmap != nil {
		ll.unmap()
	}
	r.e.log.Info("listener removed: no new connections on it; its connections go on", "laddr", ll.ln.Addr().String())
}

// reload applies the config in b, or refuses it, and says which in words.
func (r *serverRun) reload(file string, b []byte, why string) string {
	r.e.svc.reloading("reloading " + file + ": " + why)
	defer r.e.svc.ready("running " + file)
	cfg, err := config.ParseServer(file, b, serverChecks)
	if err != nil {
		msg := err.Error()
		if es := config.AsErrors(err); es != nil {
			s := make([]string, len(es))
			for i, m := range es {
				s[i] = m.Error()
			}
			msg = strings.Join(s, "; ")
		}
		r.e.log.Error("reload refused: the server stays as it is; fix the file and save it again", "file", file, "why", why, "err", msg)
		return "reload refused: the server stays as it is; fix the file and save it again: " + msg
	}
	d := config.CompareServer(r.cfg, cfg)
	if mc, err := serverMapConfig(r.e, cfg); err != nil {
		r.e.log.Error("map keys not changed", "file", file, "err", err)
	} else {
		r.mapCfg = mc // for the listeners opened from now on
	}
	if cfg.DebugAddr != r.cfg.DebugAddr {
		r.e.log.Warn("debug-addr is read at start only: restart pinhole server for the new one", "file", file)
	}
	renewed := !d.Restart && r.certRenewed(cfg.Settings)
	if renewed {
		d.Restart = true
	}
	if d.Restart {
		gen, err := r.newGeneration(cfg.Settings)
		if err != nil {
			r.e.log.Error("reload refused: the server stays as it is", "file", file, "why", why, "err", err)
			return fmt.Sprintf("reload refused: the server stays as it is: %v", err)
		}
		old := r.gen
		r.setCurrent(gen)
		r.portsChanged()
		if renewed || tlsChanged(old.settings, gen.settings) {
			gen.disp.printTLS(r.e, r.firstAddr(cfg))
		}
		for _, ll := range r.lns {
			prev := ll.cur.Load()
			r.serve(gen, ll)
			prev.Close()
		}
		r.old.Add(1)
		go func() {
			defer r.old.Done()
			r.drain(old, cfg.Settings.Drain)
		}()
	}
	for _, a := range d.Unlisten {
		r.unlisten(a)
	}
	for _, a := range d.Listen {
		if err := r.listen(a); err != nil {
			r.e.log.Error("listener not added; it is tried again at the next reload", "laddr", a, "err", err)
			cfg.Listen = slicesDelete(cfg.Listen, a)
		}
	}
	if d.AuthorizedKeys {
		if err := r.setKeys(cfg.AuthorizedKeys); err != nil {
			r.e.log.Error("authorized_keys not changed", "file", cfg.AuthorizedKeys, "err", err)
			cfg.AuthorizedKeys = r.cfg.AuthorizedKeys
		}
	}
	r.cfg = cfg
	r.e.log.Info("reloaded", "file", file, "why", why, "listeners added", len(d.Listen), "listeners removed", len(d.Unlisten), "authorized_keys", d.AuthorizedKeys, "restarted", d.Restart)
	msg := fmt.Sprintf("reloaded %s: %d listeners added, %d removed, authorized_keys changed: %v, restarted: %v", file, len(d.Listen), len(d.Unlisten), d.AuthorizedKeys, d.Restart)
	fmt.Fprintf(r.e.stdout, "pinhole server: %s\n", msg)
	return msg
}

func slicesDelete(s []string, v string) []string {
	var out []string
	for _, x := range s {
		if x != v {
			out = append(out, x)
		}
	}
	return out
}

// tlsChanged reports whether a new generation's certificate may differ
// from the old one's, and so is worth printing again.
func tlsChanged(a, b config.ServerSettings) bool {
	return a.TLSCert != b.TLSCert || a.TLSKey != b.TLSKey || a.WSPath != b.WSPath || a.ACME != b.ACME || a.ACMEDirectory != b.ACMEDirectory
}

// certRenewed reports whether the certificate in s's tls-cert file is
// another than the running one's, as after a renewal that kept the path:
// then a reload restarts the server for it. A file that does not load
// is logged and leaves the running server alone.
func (r *serverRun) certRenewed(s config.ServerSettings) bool {
	if s.TLSCert == "" || s.TLSCert != r.gen.settings.TLSCert || s.TLSKey != r.gen.settings.TLSKey {
		return false
	}
	certFile, err := expandHome(s.TLSCert)
	if err != nil {
		return false
	}
	keyFile, err := expandHome(s.TLSKey)
	if err != nil {
		return false
	}
	cert, err := transport.LoadKeyPair(certFile, keyFile)
	if err != nil {
		r.e.log.Error("tls-cert not loaded again; the running certificate stays", "err", err)
		return false
	}
	return transport.Fingerprint(cert.Certificate[0]) != r.gen.disp.fingerprint
}

// firstAddr is the address of the first of cfg's listeners that is open,
// for the TLS line; nil when none is.
func (r *serverRun) firstAddr(cfg *config.Server) net.Addr {
	for _, a := range cfg.Listen {
		if ll := r.lns[a]; ll != nil {
			return ll.ln.Addr()
		}
	}
	return nil
}

// drain shuts g down: new connections go elsewhere already; its own get d
// to finish (or until a second signal).
func (r *serverRun) drain(g *generation, d time.Duration) error {
	r.e.log.Info("old server draining: new connections go to the new one", "streams", g.srv.Stats().StreamsOpen, "drain", d)
	ctx, cancel := context.WithTimeout(r.e.force, d)
	defer cancel()
	err := shutdownServer(ctx, g.srv, g.disp.Dispatcher)
	g.serving.Wait()
	if err != nil {
		r.e.log.Warn("old server's drain ended with streams open; they were cut", "err", err)
	}
	return err
}

// closeAll stops every listener and the current server at once.
func (r *serverRun) closeAll() {
	for a := range r.lns {
		r.unlisten(a)
	}
	// The Dispatcher first: a connection still sending its first HTTP
	// request holds srv's Close until the Dispatcher lets it go.
	r.gen.disp.Close()
	r.gen.srv.Close()
	r.gen.serving.Wait()
}

func (r *serverRun) shutdown() error {
	r.e.svc.stopping("draining")
	r.e.log.Info("shutting down: no new connections; waiting for open streams (a second signal stops at once)", "streams", r.gen.srv.Stats().StreamsOpen, "drain", r.cfg.Settings.Drain)
	for a := range r.lns {
		r.unlisten(a)
	}
	err := r.drain(r.gen, r.cfg.Settings.Drain)
	r.old.Wait()
	if err != nil {
		return fmt.Errorf("shutdown did not finish draining, streams were cut: %w", err)
	}
	return nil
}
