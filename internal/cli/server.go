package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pinhole-dev/pinhole/internal/ssh"

	"github.com/pinhole-dev/pinhole/internal/auth"
	"github.com/pinhole-dev/pinhole/internal/certs"
	"github.com/pinhole-dev/pinhole/internal/control"
	"github.com/pinhole-dev/pinhole/internal/metrics"
	"github.com/pinhole-dev/pinhole/internal/observe"
	"github.com/pinhole-dev/pinhole/internal/portmap"
	"github.com/pinhole-dev/pinhole/internal/transport"
	"github.com/pinhole-dev/pinhole/internal/tunnel"
	"github.com/pinhole-dev/pinhole/internal/vhost"
)

func runServer(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("pinhole server", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	logFlags(fs, e)
	defer debugAddrFlag(fs, e)()
	var watch watchFlags
	watch.register(fs)
	var listens, sshSNI, trusted stringList
	fs.Var(&listens, "listen", "`address` to accept connections on: SSH, SSH inside TLS or WebSocket, and HTTP, told apart by their first bytes (repeatable; default :2222)")
	tlsCert := fs.String("tls-cert", "", "TLS certificate `file` (PEM, the chain after it) for tls:// and wss:// clients (default: a self-signed one kept in the state directory; its fingerprint is printed)")
	tlsKey := fs.String("tls-key", "", "the private key `file` (PEM) of --tls-cert")
	wsPath := fs.String("ws-path", transport.DefaultPath, "URL `path` where a WebSocket upgrade carries SSH")
	fs.Var(&sshSNI, "ssh-sni", "TLS server `name` (SNI) that means SSH for a TLS client offering no ALPN, such as openssl s_client (repeatable)")
	domain := fs.String("domain", "", "serve remote forwards that ask for a name on port 80 (ssh -R myapp:80:localhost:3000) as http:// and https://myapp.`DOMAIN` on every --listen port, and on port 443 (-R myapp:443:localhost:8443) as TLS passed through to the service; -R 80:... gets a name made from its key (docs/names.md)")
	acmeOn := fs.Bool("acme", false, "get certificates for --domain and the names of its tunnels from an ACME CA (Let's Encrypt by default), accepting its terms of service: TLS-ALPN-01 on the TLS port, HTTP-01 on port 80; kept in the state directory and renewed ahead of expiry")
	acmeDirectory := fs.String("acme-directory", "", "`URL` of the ACME CA's directory (default Let's Encrypt's, "+certs.LetsEncrypt+")")
	acmeEmail := fs.String("acme-email", "", "contact `address` the ACME CA is given, for notices about the certificates")
	acmeCA := fs.String("acme-ca", "", "check the ACME CA's own HTTPS certificate against the CA certificates in `FILE` (PEM) instead of the system's (for a test CA such as Pebble)")
	nameTTL := fs.Duration("name-ttl", vhost.DefaultTTL, "a name stays its key's this long after its last session ends, then anyone may take it")
	maxNames := fs.Int("max-names-per-key", vhost.DefaultMaxNamesPerKey, "most names one key holds at once with --domain (0: no limit)")
	maxPorts := fs.Int("max-ports-per-key", tunnel.DefaultKeyLimits.Ports, "most remote-forward ports (-R, TCP and /udp; names are apart) one key holds at once, over all its connections (0: no limit; pinhole-limits in authorized_keys sets one key's)")
	maxStreams := fs.Int("max-streams-per-key", tunnel.DefaultKeyLimits.Streams, "most streams (-L, -D, -R and names' connections, UDP flows) one key has open at once (0: no limit)")
	maxStreamRate := fs.Int("max-stream-rate-per-key", tunnel.DefaultKeyLimits.StreamRate, "most new streams a second for one key, in bursts of up to twice as many (0: no limit)")
	upstream := fs.Duration("upstream-timeout", 30*time.Second, "answer 504 when the service behind a name has not started its answer within this time")
	fs.Var(&trusted, "trusted-proxy", "`CIDR` of a reverse proxy (nginx) whose X-Forwarded-For names a WebSocket client's real address (repeatable)")
	hostKey := fs.String("host-key", "", "host key file; generated (ed25519, mode 0600) if missing (default in the user's state directory)")
	authKeys := fs.String("authorized-keys", "", "authorized_keys file of the keys allowed in, with sshd's options (default ~/.ssh/authorized_keys)")
	gateway := fs.String("gateway-ports", "no", "where remote forwards listen, as sshd's GatewayPorts: no (loopback), yes (all addresses) or clientspecified")
	keepalive := fs.Duration("keepalive", tunnel.DefaultKeepaliveInterval, "ask clients whether they are alive this often; 3 unanswered in a row close the connection (0 turns it off)")
	takeover := fs.Duration("takeover-probe", 3*time.Second, "when a key asks for a remote-forward port that another connection of the same key holds, give that connection this long to answer a keepalive before taking the port from it (0: never take over)")
	drainFor := fs.Duration("drain", 10*time.Second, "on the first SIGINT or SIGTERM, stop accepting and let open streams finish for this long before closing (a second signal closes at once)")
	udpIdle := fs.Duration("udp-idle", 60*time.Second, "end a remote UDP forward's flow after this long without a datagram")
	udpFlows := fs.Int("udp-max-flows", 1024, "most UDP flows (source addresses) at once per remote /udp forward")
	ciphers := fs.String("ciphers", "", "comma-separated ciphers to offer, as sshd's Ciphers (default: all of aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr)")
	loginGrace := fs.Duration("login-grace", 30*time.Second, "close a connection that has not authenticated within this time, as sshd's LoginGraceTime (0: no limit)")
	maxStartups := fs.String("max-startups", tunnel.DefaultMaxStartups.String(), "limit on connections that have not authenticated yet, as sshd's MaxStartups start:rate:full: from start on, drop new ones with rate percent probability, rising to 100 % at full")
	perSource := fs.String("per-source-max-startups", strconv.Itoa(tunnel.DefaultPerSourceMaxStartups), "most unauthenticated connections from one address (IPv6: one /64), as sshd's PerSourceMaxStartups, or none")
	maxHTTP := fs.Int("max-http-conns", transport.DefaultMaxHTTPConns, "most connections at once that are HTTP (plain, TLS, TLS passed through to names) or have not yet shown they are SSH, counted apart from --max-startups (0: no limit)")
	perSourceHTTP := fs.Int("per-source-max-http-conns", transport.DefaultMaxHTTPConnsPerSource, "most HTTP connections at once from one address (IPv6: one /64) (0: no limit)")
	maxAuthTries := fs.Int("max-auth-tries", 6, "close a connection after this many refused keys, as sshd's MaxAuthTries")
	file := fs.String("c", "", "config `FILE` with the settings below under the same names (TOML, see docs/config.md), reloaded on SIGHUP and when it changes; no other flag may be given with it")
	mapPort := fs.Bool("map", false, "open the listening port on the home router (PCP, NAT-PMP or UPnP) while the server runs, and print the public address")
	var mf mapFlags
	mf.register(fs, "map-")
	var metricsF metricsFlags
	metricsF.register(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: pinhole server [flags]\n\nAn SSH-protocol server that only forwards ports: any ssh client can use -L, -R and -D through it.\n\n")
		fs.PrintDefaults()
	}
	if err := e.parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "pinhole server: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return errUsage
	}
	if *file != "" {
		var others []string
		fs.Visit(func(f *flag.Flag) {
			if f.Name != "c" && !processFlag(f.Name) && !slices.Contains(watchFlagNames, f.Name) {
				others = append(others, "--"+f.Name)
			}
		})
		if len(others) > 0 {
			fmt.Fprintf(e.stderr, "pinhole server: with -c the settings come from the file: put %s there instead (docs/config.md)\n", strings.Join(others, ", "))
			return errUsage
		}
		return runServerFile(ctx, e, *file, &watch, &metricsF)
	}
	gp, err := tunnel.ParseGatewayPorts(*gateway)
	if err != nil {
		return err
	}
	var cipherList []string
	if *ciphers != "" {
		if cipherList, err = tunnel.ParseCiphers(*ciphers); err != nil {
			return err
		}
	}
	startups, err := tunnel.ParseStartups(*maxStartups)
	if err != nil {
		return err
	}
	perSourceMax := -1
	if *perSource != "none" {
		if perSourceMax, err = strconv.Atoi(*perSource); err != nil || perSourceMax < 1 {
			return fmt.Errorf("--per-source-max-startups %q: want a number of connections, at least 1, or none", *perSource)
		}
	}
	if *maxAuthTries < 1 {
		return fmt.Errorf("--max-auth-tries %d: want at least 1", *maxAuthTries)
	}
	keyLimits, err := keyLimitsOf(*maxPorts, *maxStreams, *maxStreamRate)
	if err != nil {
		return err
	}
	grace := *loginGrace
	if grace == 0 {
		grace = -1
	} else if grace < 0 {
		return fmt.Errorf("--login-grace %v: want a positive duration, or 0 for no limit", grace)
	}
	mapCfg, err := mf.config(e)
	if err != nil {
		return err
	}
	if *hostKey == "" {
		dir, err := stateDir(e.getenv)
		if err != nil {
			return err
		}
		*hostKey = auth.DefaultHostKeyPath(dir)
	}
	if *authKeys == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return fmt.Errorf("no home directory for the default authorized_keys (%v); pass --authorized-keys FILE", err)
		}
		*authKeys = filepath.Join(home, ".ssh", "authorized_keys")
	}
	signer, created, err := auth.LoadOrCreateHostKey(*hostKey)
	if err != nil {
		return err
	}
	keys := auth.NewKeyFile(*authKeys, e.log)
	problems, err := keys.Load()
	if errors.Is(err, os.ErrNotExist) {
		// Start anyway, as sshd does: the file is read again at each
		// login, so adding a key later needs no restart.
		fmt.Fprintf(e.stderr, "warning: %v\nwarning: every key is refused until that file exists\n", err)
	} else if err != nil {
		return err
	}
	for _, p := range problems {
		fmt.Fprintf(e.stderr, "warning: %v (that line's key is refused)\n", p)
	}
	interval := *keepalive
	if interval == 0 {
		interval = -1
	}
	probe := *takeover
	if probe == 0 {
		probe = -1
	}
	disp, err := serverDispatcher(e, serverTransportSettings{HostKey: *hostKey, TLSCert: *tlsCert, TLSKey: *tlsKey, WSPath: *wsPath, SSHSNI: sshSNI, TrustedProxy: trusted, LoginGrace: grace,
		Domain: *domain, NameTTL: *nameTTL, UpstreamTimeout: *upstream, MaxNamesPerKey: *maxNames, MaxHTTPConns: *maxHTTP, MaxHTTPConnsPerSource: *perSourceHTTP,
		ACME: *acmeOn, ACMEDirectory: *acmeDirectory, ACMEEmail: *acmeEmail, ACMECA: *acmeCA})
	if err != nil {
		return err
	}
	srv, err := tunnel.NewServer(tunnel.ServerConfig{
		HostKeys:             []ssh.Signer{signer},
		Authorize:            authorizer(keys),
		GatewayPorts:         gp,
		KeepaliveInterval:    interval,
		TakeoverProbe:        probe,
		Cores:                e.cores,
		UDPIdleTimeout:       *udpIdle,
		UDPMaxFlows:          *udpFlows,
		Ciphers:              cipherList,
		HandshakeTimeout:     grace,
		MaxStartups:          startups,
		PerSourceMaxStartups: perSourceMax,
		MaxAuthTries:         *maxAuthTries,
		KeyLimits:            keyLimits,
		Sort:                 disp.Sort,
		Unwrap:               disp.Unwrap,
		Names:                disp.names(),
		Logger:               e.log,
	})
	if err != nil {
		return err
	}
	mapCfg.Status = new(portmap.Status)
	mets, err := metricsF.start(e, "pinhole server", metrics.Sources{Role: "server", Servers: func() []*tunnel.Server { return []*tunnel.Server{srv} }, Portmap: mapCfg.Status})
	if err != nil {
		disp.Close()
		srv.Close()
		return err
	}
	defer mets.stop()
	disp.Dispatcher.HTTP = mets.wrapHTTP(disp.Dispatcher.HTTP, disp.router)
	if len(listens) == 0 {
		listens = stringList{":2222"}
	}
	disp.SSH = func(c net.Conn) { srv.ServeConn(c) }
	defer disp.Close()
	var lns []net.Listener
	for _, a := range listens {
		ln, err := listenServer(a)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return err
		}
		lns = append(lns, ln)
	}
	// The control socket and the dashboard first: once the server says
	// it listens, pinhole status finds it.
	asks := make(chan reloadAsk)
	stopWatch, err := watch.start(e, "server", control.Handler{
		Snapshot: func() observe.Snapshot { return serverSnapshot(srv) },
		Reload:   asker(asks),
	})
	if err != nil {
		for _, ln := range lns {
			ln.Close()
		}
		return err
	}
	defer stopWatch()
	if created {
		fmt.Fprintf(e.stdout, "pinhole server: generated a new host key in %s\n", *hostKey)
	}
	var addrs []net.Addr
	for _, ln := range lns {
		addrs = append(addrs, ln.Addr())
	}
	disp.listening(addrs)
	for _, ln := range lns[1:] {
		fmt.Fprintf(e.stdout, "pinhole server: listening on %s\n", ln.Addr())
	}
	printServerBanner(e, lns[0].Addr(), signer.PublicKey(), *authKeys)
	disp.printTLS(e, lns[0].Addr())
	unmap := func() {}
	if *mapPort {
		unmap = serverMap(ctx, e, lns[0].Addr(), mapCfg)
	}
	defer unmap()

	errc := make(chan error, len(lns))
	for _, ln := range lns {
		go func() { errc <- srv.Serve(ln) }()
	}
	status := "listening on " + lns[0].Addr().String()
	e.svc.ready(status)
	for {
		select {
		case <-ctx.Done():
			e.svc.stopping(fmt.Sprintf("draining: no new connections, open streams get up to %v", *drainFor))
			return drainServer(e, srv, disp.Dispatcher, *drainFor, func() {
				for range lns {
					<-errc
				}
			})
		case err := <-errc:
			disp.Close() // first: a connection waiting for its first HTTP header holds srv's Close
			srv.Close()
			for range lns[1:] {
				<-errc
			}
			return err
		case <-e.reload:
			e.svc.reloading("reading " + *authKeys + " again")
			reloadServer(e, keys)
			e.svc.ready(status)
		case a := <-asks: // pinhole reload: as SIGHUP
			e.svc.reloading("reading " + *authKeys + " again")
			a.reply <- reloadServer(e, keys)
			e.svc.ready(status)
		}
	}
}

// keyLimitsOf are the tunnel.KeyLimits of --max-ports-per-key,
// --max-streams-per-key and --max-stream-rate-per-key, where 0 means no
// limit.
func keyLimitsOf(ports, streams, rate int) (tunnel.KeyLimits, error) {
	none := func(flag string, n int) (int, error) {
		switch {
		case n < 0:
			return 0, fmt.Errorf("--%s %d: want a number, at least 0 (0: no limit)", flag, n)
		case n == 0:
			return -1, nil
		}
		return n, nil
	}
	var l tunnel.KeyLimits
	var err error
	if l.Ports, err = none("max-ports-per-key", ports); err != nil {
		return l, err
	}
	if l.Streams, err = none("max-streams-per-key", streams); err != nil {
		return l, err
	}
	l.StreamRate, err = none("max-stream-rate-per-key", rate)
	return l, err
}

// reloadServer is a reload request (SIGHUP) to a server run by flags: the
// authorized_keys file is read again at once (it is also read again
// whenever it changes). The other settings are flags, which only a
// restart changes; pinhole server -c FILE reloads them all.
//
// It returns what it did, in words, for pinhole reload.
func reloadServer(e *env, keys *auth.KeyFile) string {
	problems, err := keys.Load()
	if err != nil {
		e.log.Warn("reload: cannot read authorized_keys; every key is refused until it can be read", "err", err)
		return fmt.Sprintf("cannot read authorized_keys (%v): every key is refused until it can be read", err)
	}
	for _, p := range problems {
		e.log.Warn("reload: a line of authorized_keys is refused", "err", p)
	}
	e.log.Info("reload: authorized_keys read again", "refused_lines", len(problems))
	return fmt.Sprintf("authorized_keys read again: %d %s refused (the other flags change only with a restart)", len(problems), plural(len(problems), "line", "lines"))
}

// drainServer shuts srv down gracefully: new connections and streams are
// refused at once, open streams get up to d (or until a second signal) to
// finish. A clean drain is a clean exit.
func drainServer(e *env, srv *tunnel.Server, disp *transport.Dispatcher, d time.Duration, served func()) error {
	open := srv.Stats().StreamsOpen
	e.log.Info("shutting down: no new connections; waiting for open streams (a second signal stops at once)", "streams", open, "drain", d)
	ctx, cancel := context.WithTimeout(e.force, d)
	defer cancel()
	start := time.Now()
	err := shutdownServer(ctx, srv, disp)
	served()
	if err != nil {
		return fmt.Errorf("shutdown did not finish draining, streams were cut: %w", err)
	}
	e.log.Info("shutdown: every stream finished", "after", time.Since(start).Round(time.Millisecond))
	return nil
}

// authorizer looks each offered key up in the authorized_keys file (re-read
// when it changes) and applies its from= and expiry-time=; a refusal by
// either wraps auth.ErrNotFrom or auth.ErrExpired, which the server tells
// the client about.
func authorizer(keys *auth.KeyFile) func(ssh.ConnMetadata, ssh.PublicKey) (*auth.Options, error) {
	return func(meta ssh.ConnMetadata, key ssh.PublicKey) (*auth.Options, error) {
		k, err := keys.Lookup(key)
		if err != nil {
			return nil, err
		}
		if k == nil {
			return nil, nil
		}
		var addr netip.Addr
		if ap, err := netip.ParseAddrPort(meta.RemoteAddr().String()); err == nil {
			addr = ap.Addr()
		}
		if err := k.Options.Check(addr, time.Now()); err != nil {
			return nil, fmt.Errorf("authorized_keys line %d: %w", k.Line, err)
		}
		return &k.Options, nil
	}
}

func printServerBanner(e *env, addr net.Addr, key ssh.PublicKey, authKeys string) {
	host, port := "THIS-HOST", 2222
	if ta, ok := addr.(*net.TCPAddr); ok {
		port = ta.Port
		if !ta.IP.IsUnspecified() {
			host = ta.IP.String()
		} else if h, err := os.Hostname(); err == nil {
			host = h
		}
	}
	fmt.Fprintf(e.stdout, "pinhole server: listening on %s\n", addr)
	fmt.Fprintf(e.stdout, "pinhole server: host key %s %s\n", key.Type(), ssh.FingerprintSHA256(key))
	fmt.Fprintf(e.stdout, "pinhole server: keys allowed in: %s\n", authKeys)
	fmt.Fprintf(e.stdout, "pinhole server: from another machine, expose its local port 3000 here as port 8080 with:\n")
	fmt.Fprintf(e.stdout, "  %s\n", sshExample(port, host))
	fmt.Fprintf(e.stdout, "pinhole server: check that the fingerprint ssh shows on first connect is the one above\n")
}

// sshExample is the ssh command line that exposes a local port 3000 as
// port 8080 of the server at host:port.
func sshExample(port int, host string) string {
	name := "USER"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return fmt.Sprintf("ssh -N -p %d -R 8080:localhost:3000 %s@%s", port, name, host)
}
