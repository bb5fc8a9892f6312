package cli

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pinhole-dev/pinhole/internal/ssh"

	"github.com/pinhole-dev/pinhole/internal/auth"
	"github.com/pinhole-dev/pinhole/internal/control"
	"github.com/pinhole-dev/pinhole/internal/metrics"
	"github.com/pinhole-dev/pinhole/internal/observe"
	"github.com/pinhole-dev/pinhole/internal/socks"
	"github.com/pinhole-dev/pinhole/internal/spec"
	"github.com/pinhole-dev/pinhole/internal/sshconfig"
	"github.com/pinhole-dev/pinhole/internal/transport"
	"github.com/pinhole-dev/pinhole/internal/tunnel"
)

// forwardList is a repeatable -L, -R or -D flag.
type forwardList struct {
	kind spec.Kind
	list []spec.Forward
}

func (l *forwardList) String() string {
	s := make([]string, len(l.list))
	for i, f := range l.list {
		s[i] = f.String()
	}
	return strings.Join(s, ",")
}

func (l *forwardList) Set(v string) error {
	f, err := spec.Parse(l.kind, v)
	if err != nil {
		return err
	}
	l.list = append(l.list, f)
	return nil
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func runConnect(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("pinhole connect", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	logFlags(fs, e)
	defer debugAddrFlag(fs, e)()
	var metricsF metricsFlags
	metricsF.register(fs)
	var watch watchFlags
	watch.register(fs)
	var (
		local    = &forwardList{kind: spec.Local}
		remote   = &forwardList{kind: spec.Remote}
		dynamic  = &forwardList{kind: spec.Dynamic}
		idents   stringList
		cmdline  stringList // -p, -l and -o, in order: the first value of a key wins, as in ssh
		cfgFile  = fs.String("F", "", "ssh_config `file` to read instead of ~/.ssh/config and /etc/ssh/ssh_config (none: no file)")
		ipv4     = fs.Bool("4", false, "connect over IPv4 only (AddressFamily inet)")
		ipv6     = fs.Bool("6", false, "connect over IPv6 only (AddressFamily inet6)")
		verbose  = fs.Bool("v", false, "say which ssh_config settings apply, and list the keys pinhole ignores")
		known    = fs.String("known-hosts", "", "known_hosts file (default: ssh_config's UserKnownHostsFile, else ~/.ssh/known_hosts)")
		check    = fs.String("host-key-check", "accept-new", "yes: only known host keys; accept-new: remember a new host's key, refuse a changed one; no: accept any key (insecure). Default: ssh_config's StrictHostKeyChecking, else accept-new")
		_        = fs.Bool("N", false, "accepted for ssh compatibility: pinhole never runs a remote command")
		alive    = fs.Duration("keepalive", tunnel.DefaultKeepaliveInterval, "ask the server whether it is alive this often (ssh's ServerAliveInterval)")
		drainFor = fs.Duration("drain", 10*time.Second, "on the first SIGINT or SIGTERM, stop taking new connections and let open streams finish for this long (a second signal stops at once)")
		aliveMax = fs.Int("keepalive-count", 3, "reconnect after this many unanswered keepalives (ssh's ServerAliveCountMax)")
		pauth    = fs.String("proxy-auth", "", "user:pass that -D proxy clients must give (SOCKS5 and HTTP Basic)")
		pauthF   = fs.String("proxy-auth-file", "", "file of user:pass lines that -D proxy clients may give")
		open     = fs.Bool("allow-open-proxy", false, "allow a -D proxy on a non-loopback address without --proxy-auth")
		udpIdle  = fs.Duration("udp-idle", 60*time.Second, "end a UDP flow after this long without a datagram")
		udpFlows = fs.Int("udp-max-flows", 1024, "most UDP flows (source addresses) at once per /udp forward")
		dialSet  dialSettings
		tf       transportFlags
		stdio    = fs.String("W", "", "forward stdin and stdout to `host:port` through the server, and exit when it closes (ssh -W, for ssh's ProxyCommand; no -L/-R/-D)")
	)
	fs.StringVar(&dialSet.Jump, "J", "", "connect through the jump hosts `[user@]host[:port][,...]` in turn, as ssh -J (each checked in known_hosts under its own name)")
	fs.StringVar(&dialSet.Bind, "b", "", "connect from the local IP address `ADDR` (to the first jump host with -J), as ssh -b")
	tf.register(fs)
	fs.Var(local, "L", "`[bind:]port:host:hostport` listen here, connect to host:hostport from the server (repeatable)")
	fs.Var(remote, "R", "`[bind:]port:host:hostport` listen on the server, connect to host:hostport from here (repeatable)")
	fs.Var(dynamic, "D", "`[bind:]port` SOCKS4/4a/5 and HTTP proxy here, connecting from the server (repeatable)")
	fs.Func("p", "server `port` (default: ssh_config's Port, else 22)", func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("want a port from 1 to 65535")
		}
		cmdline = append(cmdline, "Port="+v)
		return nil
	})
	fs.Func("l", "`user` to log in as (default: ssh_config's User, else the user part of [user@]host, else your user name)", func(v string) error {
		cmdline = append(cmdline, "User="+quoteValue(v))
		return nil
	})
	fs.Func("o", "ssh_config `Key=Value` that comes before the files (repeatable), e.g. -o Port=2222", func(v string) error {
		cmdline = append(cmdline, v)
		return nil
	})
	fs.Var(&idents, "i", "identity (private key) `file` (repeatable; before ssh_config's IdentityFile; default ~/.ssh/id_ed25519, id_ecdsa, id_rsa; ssh-agent is used when SSH_AUTH_SOCK is set)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: pinhole connect [flags] [user@]host | ssh://[user@]host[:port] | tls://[user@]host[:port] | wss://[user@]host[:port][/path] [-- OPTION...]\n       pinhole connect -W host:port [flags] DESTINATION\n\nForwards ports through an SSH server (pinhole server or any OpenSSH sshd), reconnecting when the connection drops.\ntls:// (SSH inside TLS) and ws:// or wss:// (SSH inside WebSocket) reach a pinhole server on port 443 through firewalls and proxies (docs/transports.md).\nhost is looked up in ssh_config (~/.ssh/config, /etc/ssh/ssh_config, or -F FILE) as ssh does: HostName, Port, User,\nIdentityFile, LocalForward, ProxyJump, ... apply; the command line comes first.\nOPTIONs after the destination are a pinhole server's per-tunnel options for the -R forwards: auth=USER:PASS allow=CIDR[,CIDR...]\nhost-header=HOST proxy-protocol=v1|v2 (docs/names.md).\n\n")
		fs.PrintDefaults()
	}
	pos, err := e.parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		fmt.Fprintf(e.stderr, "pinhole connect: want one destination [user@]host\n")
		fs.Usage()
		return errUsage
	}
	// After the destination, as after ssh's: tunnel option words for a
	// pinhole server (docs/names.md, "Per-tunnel options").
	words := strings.Join(pos[1:], " ")
	if _, err := auth.ParseTunnelOptions(words); err != nil {
		return fmt.Errorf("%w (after the destination come only tunnel options)", err)
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var (
		destUser, host string
		url            *transport.Endpoint
	)
	if transport.IsURL(pos[0]) {
		ep, err := transport.ParseURL(pos[0])
		if err != nil {
			return err
		}
		if given["p"] {
			return fmt.Errorf("-p and a URL destination: put the port in the URL, as %s://%s:PORT", ep.Scheme, ep.Host)
		}
		url, destUser, host = &ep, ep.User, ep.Host
	} else {
		destUser, host = splitDestination(pos[0])
	}
	if host == "" {
		return fmt.Errorf("%q has no host; want [user@]host", pos[0])
	}
	me, err := localUser()
	if err != nil {
		return err
	}
	localHost, _ := os.Hostname()
	family := ""
	switch {
	case *ipv4 && *ipv6:
		return errors.New("-4 and -6 together: pick one")
	case *ipv4:
		family = "inet"
	case *ipv6:
		family = "inet6"
	}
	conf, err := sshconfig.Resolve(host, sshconfig.Options{
		ConfigFile:      *cfgFile,
		Home:            me.HomeDir,
		LocalUser:       cmp.Or(me.Username, strconv.Itoa(os.Getuid())),
		LocalHostname:   localHost,
		UID:             strconv.Itoa(os.Getuid()),
		Getenv:          os.Getenv,
		DestinationUser: destUser,
		AddressFamily:   family,
		Local:           local.list,
		Remote:          remote.list,
		Dynamic:         dynamic.list,
		Overrides:       cmdline,
	})
	if err != nil {
		return err
	}
	for _, w := range conf.Warnings {
		fmt.Fprintf(e.stderr, "pinhole connect: ssh_config: %s\n", w)
	}
	if *verbose {
		printConfig(e, conf)
	}
	userName := conf.User
	if userName == "" {
		userName = me.Username
	}
	if userName == "" {
		return errors.New("cannot tell your user name: pass -l USER")
	}
	port := int(conf.Port)
	if port == 0 {
		port = 22
	}
	if url != nil {
		// The URL's port (or its scheme's) is the one; ssh_config's
		// HostName still names the machine, as for ssh.
		port = int(url.Port)
		url.Host = conf.HostName
	}
	if dialSet.TLS, err = tf.clientTLS(); err != nil {
		return err
	}
	dialSet.URL, dialSet.Proxy, dialSet.Getenv = url, tf.proxy, e.getenv
	// -J on the command line wins over ssh_config, as in ssh; a
	// ProxyCommand comes only from ssh_config or -o.
	if dialSet.Jump == "" {
		dialSet.Jump = conf.ProxyJump
	}
	if dialSet.Jump == "" {
		dialSet.ProxyCommand = conf.ProxyCommand
	}
	dialSet.Family = conf.AddressFamily
	if err := dialSet.check(); err != nil {
		return err
	}
	if conf.GatewayPorts {
		// As ssh: forwards without a bind address listen on every address.
		conf.Local = openBind(conf.Local)
		conf.Dynamic = openBind(conf.Dynamic)
	}
	if *stdio != "" {
		if err := checkStdioTarget(*stdio); err != nil {
			return err
		}
		if len(local.list)+len(remote.list)+len(dynamic.list) > 0 {
			return errors.New("-W forwards stdin and stdout alone: drop -L, -R and -D, or run a second pinhole connect for them")
		}
		if metricsF.addr != "" {
			// Its stdout is the stream: the line saying where the
			// metrics are would corrupt it.
			return errors.New("-W forwards stdin and stdout alone: drop --metrics (a ProxyCommand's tunnel lasts one ssh session)")
		}
		// As ssh -W: the forwards ssh_config gives this host do not apply.
		conf.Local, conf.Remote, conf.Dynamic = nil, nil, nil
		quiet := *e
		quiet.log = quietLogger(e)
		e = &quiet
	} else if len(conf.Local)+len(conf.Remote)+len(conf.Dynamic) == 0 {
		return errors.New("nothing to forward: give at least one -L, -R or -D, or a LocalForward, RemoteForward or DynamicForward for this host in ssh_config (see pinhole connect -h)")
	}
	// Against a stock sshd /udp forwards cannot work: that is an error when
	// they are all that was asked for, a warning beside other forwards.
	onlyUDP := len(conf.Dynamic) == 0
	for _, f := range append(append([]spec.Forward(nil), conf.Local...), conf.Remote...) {
		if f.Proto == spec.TCP {
			onlyUDP = false
		}
	}
	creds, err := proxyCredentials(*pauth, *pauthF)
	if err != nil {
		return err
	}
	if !given["host-key-check"] && conf.StrictHostKeyChecking != "" {
		// ask would prompt; pinhole runs unattended and never prompts,
		// so ask refuses an unknown host as yes does.
		*check = map[string]string{"yes": "yes", "ask": "yes", "accept-new": "accept-new", "no": "no"}[conf.StrictHostKeyChecking]
	}
	mode, err := auth.ParseHostKeyMode(*check)
	if err != nil {
		return err
	}
	if mode == auth.HostKeyNo {
		fmt.Fprintln(e.stderr, "WARNING: host key checking is off (--host-key-check no or StrictHostKeyChecking no): the server's identity is NOT checked; anyone on the path can read and change this tunnel's traffic.")
	}
	knownFiles := []string{*known}
	if *known == "" {
		knownFiles = conf.UserKnownHostsFile
		if len(knownFiles) == 1 && knownFiles[0] == "none" {
			return errors.New("UserKnownHostsFile none: pinhole needs a known_hosts file to check the server's key against; name one, or pass --host-key-check no to skip the check (insecure)")
		}
		if len(knownFiles) == 0 {
			knownFiles = []string{filepath.Join(me.HomeDir, ".ssh", "known_hosts")}
		}
	}
	kh, err := auth.OpenKnownHostsFiles(knownFiles, mode, e.log)
	if err != nil {
		return err
	}
	agentSock := os.Getenv("SSH_AUTH_SOCK")
	switch a := conf.IdentityAgent; {
	case a == "" || a == "SSH_AUTH_SOCK":
	case a == "none":
		agentSock = ""
	case strings.HasPrefix(a, "$"):
		agentSock = os.Getenv(a[1:])
	default:
		agentSock = a
	}
	signers, closeAgent, err := auth.Signers{
		Files:          idents,
		ConfigFiles:    conf.IdentityFile,
		AgentSocket:    agentSock,
		IdentitiesOnly: conf.IdentitiesOnly,
		Warn: func(err error) {
			fmt.Fprintf(e.stderr, "warning: %v; going on with the other keys\n", err)
		},
	}.Load()
	if err != nil {
		return err
	}
	defer closeAgent()
	if len(signers) == 0 {
		return errors.New("no keys to log in with: create one with 'ssh-keygen -t ed25519', pass -i FILE, or start ssh-agent")
	}
	if !given["keepalive"] && conf.ServerAliveInterval != 0 {
		*alive = max(conf.ServerAliveInterval, 0)
	}
	if !given["keepalive-count"] && conf.ServerAliveCountMax != 0 {
		*aliveMax = conf.ServerAliveCountMax
	}

	// The name known_hosts is checked against is the one ssh uses: the
	// HostName, with the port.
	addr := net.JoinHostPort(conf.HostName, strconv.Itoa(port))
	authMethods := []ssh.AuthMethod{ssh.PublicKeys(signers...)}
	dialSet.ResolveHop = resolveHop(me, localHost, *cfgFile)
	if dialSet.Base, err = dialer(conf); err != nil {
		return err
	}
	dial, target, err := dialSet.dialer(e, userName, host, authMethods, kh)
	if err != nil {
		return err
	}
	interval := *alive
	if interval == 0 {
		interval = -1
	}
	cfg := tunnel.ClientConfig{
		TunnelOptions:     words,
		Addr:              addr,
		Target:            target,
		User:              userName,
		Auth:              authMethods,
		Dial:              dial,
		HostKeyCallback:   kh.Callback(),
		HostKeyAlgorithms: kh.Algorithms(addr),
		Local:             conf.Local,
		Remote:            conf.Remote,
		Dynamic:           conf.Dynamic,
		ConnectTimeout:    conf.ConnectTimeout,
		AllowOpenProxy:    *open,
		KeepaliveInterval: interval,
		KeepaliveCountMax: *aliveMax,
		UDPIdleTimeout:    *udpIdle,
		UDPMaxFlows:       *udpFlows,
		UDPOptional:       !onlyUDP,
		Cores:             e.cores,
		Logger:            e.log,
	}
	if creds != nil {
		cfg.ProxyCredentials = creds
	}
	started := time.Now()
	var connected atomic.Pointer[tunnel.Client] // for the metrics, once Dial returns
	mets, err := metricsF.start(e, "pinhole connect", metrics.Sources{Role: "client", Tunnels: func() []metrics.Tunnel {
		return []metrics.Tunnel{{Name: addr, Client: connected.Load()}}
	}})
	if err != nil {
		return err
	}
	defer mets.stop()
	client, err := tunnel.Dial(ctx, cfg)
	if err != nil {
		return err
	}
	defer client.Close()
	connected.Store(client)
	if *stdio != "" {
		return stdioForward(ctx, client, *stdio, e.stdin, e.stdout)
	}
	stopWatch, err := watch.start(e, "connect", control.Handler{Snapshot: func() observe.Snapshot {
		return clientSnapshot(started, client.Events(), []observe.Tunnel{client.Snapshot()})
	}})
	if err != nil {
		return err
	}
	defer stopWatch()
	fmt.Fprintf(e.stdout, "pinhole connect: connected to %s as %s\n", addr, userName)
	for _, f := range client.Forwardings() {
		printForward(e, "pinhole connect", addr, f)
	}
	if conf.ExitOnForwardFailure {
		if err := forwardFailure(client); err != nil {
			return err
		}
	}

	select {
	case <-ctx.Done():
		return drainClient(e, client, *drainFor)
	case <-client.Done():
		return client.Wait()
	}
}

// localUser is who runs pinhole, for ssh_config's ~, %u, %d and Match
// localuser: the password database's entry, as ssh reads it, else $HOME
// and $USER (a container's uid without an entry); Username may be "".
func localUser() (*user.User, error) {
	if u, err := user.Current(); err == nil {
		return u, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return nil, fmt.Errorf("cannot tell who you are (no password entry, %v); set HOME", err)
	}
	name := os.Getenv("USER")
	if name == "" {
		name = os.Getenv("LOGNAME")
	}
	return &user.User{Username: name, HomeDir: home}, nil
}

// quoteValue quotes v for an ssh_config line, so that -l "a b" stays one
// value.
func quoteValue(v string) string {
	if !strings.ContainsAny(v, " \t\"'\\#") {
		return v
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v) + `"`
}

// openBind gives forwards without a bind address every address, as ssh
// does with GatewayPorts yes.
func openBind(fs []spec.Forward) []spec.Forward {
	out := make([]spec.Forward, len(fs))
	for i, f := range fs {
		if f.BindHost == "" {
			f.BindHost = "*"
		}
		out[i] = f
	}
	return out
}

// resolveHop completes a -J or ProxyJump hop from ssh_config, as ssh
// does: the hop's HostName, Port and User for its name (a ProxyJump of
// the hop's own is not followed).
func resolveHop(me *user.User, localHost, cfgFile string) func(tunnel.JumpHost) (tunnel.JumpHost, error) {
	return func(h tunnel.JumpHost) (tunnel.JumpHost, error) {
		c, err := sshconfig.Resolve(h.Host, sshconfig.Options{
			ConfigFile:      cfgFile,
			Home:            me.HomeDir,
			LocalUser:       cmp.Or(me.Username, strconv.Itoa(os.Getuid())),
			LocalHostname:   localHost,
			UID:             strconv.Itoa(os.Getuid()),
			Getenv:          os.Getenv,
			DestinationUser: h.User,
		})
		if err != nil {
			return h, fmt.Errorf("jump host %s: %w", h.Host, err)
		}
		h.Host = c.HostName
		if h.Port == 0 {
			h.Port = c.Port
		}
		if h.User == "" {
			h.User = c.User
		}
		return h, nil
	}
}

// dialer connects from BindAddress over AddressFamily; nil when neither
// is set (net.Dialer's defaults).
func dialer(conf *sshconfig.Settings) (func(ctx context.Context, network, addr string) (net.Conn, error), error) {
	network := "tcp"
	switch conf.AddressFamily {
	case "inet":
		network = "tcp4"
	case "inet6":
		network = "tcp6"
	}
	if network == "tcp" && conf.BindAddress == "" {
		return nil, nil
	}
	d := &net.Dialer{}
	if conf.BindAddress != "" {
		la, err := net.ResolveTCPAddr(network, net.JoinHostPort(conf.BindAddress, "0"))
		if err != nil {
			return nil, fmt.Errorf("BindAddress %s: %v; name an address of this machine", conf.BindAddress, err)
		}
		d.LocalAddr = la
	}
	return func(ctx context.Context, _, addr string) (net.Conn, error) {
		return d.DialContext(ctx, network, addr)
	}, nil
}

// forwardFailure is ExitOnForwardFailure: an error when a forward is not
// up once Dial returns (a -R the server refused, a /udp skipped).
func forwardFailure(c *tunnel.Client) error {
	for _, f := range c.Forwardings() {
		if st := f.State(); st != tunnel.StateUp {
			why := "not set up"
			if err := f.Err(); err != nil {
				why = err.Error()
			}
			return fmt.Errorf("ExitOnForwardFailure: %s %s: %s", f.Spec().Kind, f.Spec(), why)
		}
	}
	return nil
}

// printConfig is -v: the settings ssh_config gave, and what it ignored.
func printConfig(e *env, c *sshconfig.Settings) {
	w := e.stderr
	fmt.Fprintf(w, "pinhole connect: ssh_config: %s is %s", c.Host, c.HostName)
	if c.Port != 0 {
		fmt.Fprintf(w, " port %d", c.Port)
	}
	if c.User != "" {
		fmt.Fprintf(w, " user %s", c.User)
	}
	fmt.Fprintln(w)
	for _, f := range c.IdentityFile {
		fmt.Fprintf(w, "pinhole connect: ssh_config: IdentityFile %s\n", f)
	}
	for _, l := range [][]spec.Forward{c.Local, c.Remote, c.Dynamic} {
		for _, f := range l {
			fmt.Fprintf(w, "pinhole connect: forward %s %s\n", f.Kind, f)
		}
	}
	if len(c.Ignored) == 0 {
		fmt.Fprintln(w, "pinhole connect: ssh_config: no keys ignored")
	}
	for _, i := range c.Ignored {
		fmt.Fprintf(w, "pinhole connect: ssh_config: ignored (pinhole does not use it) %s\n", i)
	}
}

// printForward says where a forward listens, or why it does not; each
// line starts with who (the command, and in pinhole up the tunnel).
func printForward(e *env, who, server string, f *tunnel.Forwarding) {
	s := f.Spec()
	if f.State() == tunnel.StateClosed {
		if errors.Is(f.Err(), tunnel.ErrNoUDP) {
			fmt.Fprintf(e.stderr, "%s: %s %s: skipped: %s is not a pinhole server, so it cannot carry UDP\n", who, s.Kind, s, server)
			return
		}
		fmt.Fprintf(e.stderr, "%s: %s %s: skipped: %v\n", who, s.Kind, s, f.Err())
		return
	}
	switch s.Kind {
	case spec.Local:
		fmt.Fprintf(e.stdout, "%s: -L %s: listening on %s, connecting to %s from the server\n", who, s, f.Addr(), s.Target())
	case spec.Dynamic:
		fmt.Fprintf(e.stdout, "%s: -D %s: SOCKS4/4a/5 and HTTP proxy on %s, connecting from the server\n", who, s, f.Addr())
	case spec.Remote:
		if f.State() != tunnel.StateUp {
			why := "see the log"
			if err := f.Err(); err != nil {
				why = err.Error()
			}
			fmt.Fprintf(e.stdout, "%s: -R %s: refused by the server for now (%s); retrying\n", who, s, why)
			return
		}
		if url := f.URL(); url != "" {
			fmt.Fprintf(e.stdout, "%s: -R %s: %s, connecting to %s from here\n", who, s, url, s.Target())
			return
		}
		fmt.Fprintf(e.stdout, "%s: -R %s: the server listens on %s, connecting to %s from here\n", who, s, remoteWhere(s, f), s.Target())
	}
}

// remoteWhere is where the server listens for a -R, as asked: the bind
// host given (localhost by default) with the port it bound.
func remoteWhere(s spec.Forward, f *tunnel.Forwarding) string {
	host := s.BindHost
	switch host {
	case "":
		host = "localhost"
	case "*":
		host = ""
	}
	return net.JoinHostPort(host, strconv.Itoa(int(f.Addr().Port())))
}

// drainClient stops the client gracefully: no new connections, open
// streams get up to d (or until a second signal) to finish.
func drainClient(e *env, c *tunnel.Client, d time.Duration) error {
	if open := c.Stats().StreamsOpen; open > 0 {
		e.log.Info("stopping: no new connections; waiting for open streams (a second signal stops at once)", "streams", open, "drain", d)
	}
	ctx, cancel := context.WithTimeout(e.force, d)
	defer cancel()
	if err := c.Shutdown(ctx); err != nil {
		return fmt.Errorf("stopped before open streams finished, they were cut: %w", err)
	}
	return nil
}

// splitDestination splits [user@]host; the host may be an IPv6 literal,
// with or without brackets.
func splitDestination(dest string) (userName, host string) {
	if i := strings.LastIndex(dest, "@"); i >= 0 {
		userName, dest = dest[:i], dest[i+1:]
	}
	return userName, strings.TrimSuffix(strings.TrimPrefix(dest, "["), "]")
}

// proxyCredentials reads --proxy-auth and --proxy-auth-file; nil means no
// proxy auth.
func proxyCredentials(pair, file string) (socks.StaticCredentials, error) {
	var creds socks.StaticCredentials
	if pair != "" {
		c, err := socks.ParseCredentials(pair)
		if err != nil {
			return nil, err
		}
		creds = c
	}
	if file != "" {
		c, err := socks.LoadCredentialsFile(file)
		if err != nil {
			return nil, err
		}
		if creds == nil {
			creds = c
		} else {
			for u, p := range c {
				creds[u] = p
			}
		}
	}
	return creds, nil
}
