package cli

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pinhole-dev/pinhole/internal/auth"
	"github.com/pinhole-dev/pinhole/internal/config"
	"github.com/pinhole-dev/pinhole/internal/control"
	"github.com/pinhole-dev/pinhole/internal/metrics"
	"github.com/pinhole-dev/pinhole/internal/observe"
	"github.com/pinhole-dev/pinhole/internal/spec"
	"github.com/pinhole-dev/pinhole/internal/ssh"
	"github.com/pinhole-dev/pinhole/internal/transport"
	"github.com/pinhole-dev/pinhole/internal/tunnel"
)

// watchEvery is how often pinhole up reads its config file to see whether
// it changed. Reading it whole (not only its mtime) catches an editor's
// rename-and-replace and a change within the same second alike.
const watchEvery = time.Second

// Retrying a tunnel that could not connect, or whose client closed.
const (
	retryMin = time.Second
	retryMax = 30 * time.Second
)

func runUp(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("pinhole up", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	logFlags(fs, e)
	var metricsF metricsFlags
	metricsF.register(fs)
	file := fs.String("c", "", "config `FILE` of the tunnels to run (TOML, see docs/config.md); reloaded on SIGHUP and when it changes")
	var watch watchFlags
	watch.register(fs)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: pinhole up -c FILE\n\nRuns the named tunnels of FILE, each as pinhole connect would, and keeps them as the file says:\non SIGHUP and whenever the file changes, tunnels added start, removed ones drain and stop,\nchanged ones restart, and the others are not touched.\n\n")
		fs.PrintDefaults()
	}
	if err := e.parseFlags(fs, args); err != nil {
		return err
	}
	if *file == "" || fs.NArg() > 0 {
		fmt.Fprintln(e.stderr, "pinhole up: want -c FILE and no other arguments")
		fs.Usage()
		return errUsage
	}
	data, cfg, err := loadConfig(e, *file)
	if err != nil {
		return err
	}
	if cfg.DebugAddr != "" {
		d := &debugServer{e: e, name: "pinhole up"}
		if err := d.Set(cfg.DebugAddr); err != nil {
			return fmt.Errorf("debug-addr in %s: %w", *file, err)
		}
		defer d.stop()
	}
	u := &upRunner{e: e, runs: map[string]*tunnelRun{}, events: new(observe.Ring), started: time.Now(), stopped: map[string]time.Time{}}
	mets, err := metricsF.start(e, "pinhole up", metrics.Sources{Role: "client", Tunnels: u.metricsTunnels})
	if err != nil {
		return err
	}
	defer mets.stop()
	asks, stops := make(chan reloadAsk), make(chan stopAsk)
	stopWatch, err := watch.start(e, "up", control.Handler{
		Snapshot: u.snapshot,
		Reload:   asker(asks),
		Stop: func(ctx context.Context, name string) (string, error) {
			a := stopAsk{name: name, reply: make(chan error, 1)}
			select {
			case stops <- a:
			case <-ctx.Done():
				return "", ctx.Err()
			}
			if err := <-a.reply; err != nil {
				return "", err
			}
			return fmt.Sprintf("tunnel %s: draining and stopping; the next reload starts it again", name), nil
		},
	})
	if err != nil {
		return err
	}
	defer stopWatch()
	u.apply(cfg, config.Compare(nil, cfg))
	fmt.Fprintf(e.stdout, "pinhole up: running %d tunnels of %s; reload with SIGHUP or by saving the file\n", len(cfg.Tunnels), *file)
	// READY=1 once every tunnel has connected or is retrying.
	for _, r := range u.runs {
		select {
		case <-r.tried:
		case <-ctx.Done():
		}
	}
	e.svc.ready(fmt.Sprintf("running %d tunnels of %s", len(cfg.Tunnels), *file))

	seen := data         // the bytes last tried, applied or refused
	var unsettled []byte // bad bytes seen once, perhaps half written
	var readErr string
	tick := time.NewTicker(watchEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return u.stopAll()
		case <-e.reload:
			seen, _ = u.reload(*file, "SIGHUP")
		case a := <-asks: // pinhole reload: as SIGHUP
			var msg string
			seen, msg = u.reload(*file, "pinhole reload")
			a.reply <- msg
		case a := <-stops: // pinhole stop NAME
			a.reply <- u.stopOne(a.name)
		case <-tick.C:
			b, err := os.ReadFile(*file)
			if err != nil {
				// An editor's rename-and-replace leaves no gap, but a
				// deleted file is said once, and waited out.
				if err.Error() != readErr {
					e.log.Warn("cannot read the config file; the running tunnels stay as they are", "file", *file, "err", err)
					readErr = err.Error()
				}
				continue
			}
			readErr = ""
			if bytes.Equal(b, seen) {
				continue
			}
			// A file that does not parse may be half written: it is
			// refused only if it is the same at the next look.
			if _, err := parseConfig(*file, b); err != nil && !bytes.Equal(b, unsettled) {
				unsettled = b
				continue
			}
			unsettled = nil
			seen, _ = u.reloadBytes(*file, b, "the file changed")
		}
	}
}

// loadConfig reads and parses file, printing each mistake on a line of its
// own as file:line:col: what to write instead.
func loadConfig(e *env, file string) ([]byte, *config.Config, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot read the config: %w (pass the file of your tunnels with -c FILE; docs/config.md has an example)", err)
	}
	cfg, err := parseConfig(file, data)
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

// parseConfig is config.Parse, then config.CheckFiles on the files the
// tunnels name.
func parseConfig(file string, data []byte) (*config.Config, error) {
	cfg, err := config.Parse(file, data)
	if err != nil {
		return nil, err
	}
	if err := config.CheckFiles(cfg, checkFile); err != nil {
		return nil, err
	}
	return cfg, nil
}

// checkFile reports whether path (perhaps ~/...) can be opened for
// reading.
func checkFile(path string) error {
	p, err := expandHome(path)
	if err != nil {
		return err
	}
	f, err := os.Open(p)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return pe.Err
		}
		return err
	}
	f.Close()
	return nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// upRunner is the running set of pinhole up: one tunnelRun per tunnel of
// the config it last applied. Only runUp's goroutine calls it, but for
// snapshot: mu guards runs and stopped for it.
type upRunner struct {
	e       *env
	cfg     *config.Config
	events  *observe.Ring // every tunnel's refusals
	started time.Time

	mu      sync.Mutex
	runs    map[string]*tunnelRun
	stopped map[string]time.Time // by pinhole stop, until the next reload
}

// stopAsk is a pinhole stop NAME through the control socket.
type stopAsk struct {
	name  string
	reply chan error
}

// reload reads file again and applies it; it returns the bytes read, and
// what it did in words.
func (u *upRunner) reload(file, why string) ([]byte, string) {
	b, err := os.ReadFile(file)
	if err != nil {
		u.e.log.Error("reload refused: cannot read the config file; the running tunnels stay as they are", "file", file, "why", why, "err", err)
		return nil, fmt.Sprintf("reload refused: cannot read %s (%v); the running tunnels stay as they are", file, err)
	}
	return u.reloadBytes(file, b, why)
}

// stopOne drains and stops the tunnel called name as a reload that
// removed it from the file would: it stays stopped until the next reload.
func (u *upRunner) stopOne(name string) error {
	if u.cfg.Tunnel(name) == nil {
		names := make([]string, len(u.cfg.Tunnels))
		for i, t := range u.cfg.Tunnels {
			names[i] = t.Name
		}
		return fmt.Errorf("no running tunnel %q: the running ones are %s (pinhole status lists them)", name, strings.Join(names, ", "))
	}
	cfg := *u.cfg
	cfg.Tunnels = slices.DeleteFunc(slices.Clone(cfg.Tunnels), func(t *config.Tunnel) bool { return t.Name == name })
	u.apply(&cfg, config.Compare(u.cfg, &cfg))
	u.mu.Lock()
	u.stopped[name] = time.Now()
	u.mu.Unlock()
	u.e.log.Info("tunnel stopped by pinhole stop: draining; the next reload starts it again", "tunnel", name)
	return nil
}

// snapshot is what the tunnels do now, by name, those pinhole stop
// stopped among them.
func (u *upRunner) snapshot() observe.Snapshot {
	u.mu.Lock()
	runs := make([]*tunnelRun, 0, len(u.runs))
	for _, r := range u.runs {
		runs = append(runs, r)
	}
	ts := make([]observe.Tunnel, 0, len(runs)+len(u.stopped))
	for name, at := range u.stopped {
		ts = append(ts, observe.Tunnel{Name: name, State: tunnel.StateClosed.String(), Since: at, LastError: "stopped by pinhole stop; the next reload starts it again", Forwards: []observe.Forward{}})
	}
	u.mu.Unlock()
	for _, r := range runs {
		ts = append(ts, r.snapshot())
	}
	slices.SortFunc(ts, func(a, b observe.Tunnel) int { return strings.Compare(a.Name, b.Name) })
	return clientSnapshot(u.started, u.events, ts)
}

// reloadBytes applies the config in b, or refuses it with one log line
// and leaves everything running as it was; it says which in words.
func (u *upRunner) reloadBytes(file string, b []byte, why string) ([]byte, string) {
	u.e.svc.reloading("reloading " + file + ": " + why)
	defer u.e.svc.ready("running " + file)
	cfg, err := parseConfig(file, b)
	if err != nil {
		msg := err.Error()
		if es := config.AsErrors(err); es != nil {
			s := make([]string, len(es))
			for i, m := range es {
				s[i] = m.Error()
			}
			msg = strings.Join(s, "; ")
		}
		u.e.log.Error("reload refused: the running tunnels stay as they are; fix the file (pinhole check -c FILE) and save it again", "file", file, "why", why, "err", msg)
		return b, "reload refused: the running tunnels stay as they are; fix the file (pinhole check -c FILE) and save it again: " + msg
	}
	d := config.Compare(u.cfg, cfg)
	u.apply(cfg, d)
	u.mu.Lock()
	clear(u.stopped)
	u.mu.Unlock()
	u.e.log.Info("reloaded", "file", file, "why", why, "started", len(d.Start), "stopped", len(d.Stop), "restarted", len(d.Restart), "changed", len(d.Change), "unchanged", len(d.Same))
	summary := fmt.Sprintf("reloaded %s: %d started, %d stopped, %d restarted, %d changed, %d unchanged", file, len(d.Start), len(d.Stop), len(d.Restart), len(d.Change), len(d.Same))
	fmt.Fprintf(u.e.stdout, "pinhole up: %s\n", summary)
	return b, summary
}

// apply carries d out: it returns at once; draining and connecting go on
// in each tunnel's goroutine. Of the tunnels of d.Same nothing is
// touched: only a forward that could not be added before is tried again.
func (u *upRunner) apply(cfg *config.Config, d config.Diff) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, t := range d.Stop {
		u.runs[t.Name].stop(cfg.Drain)
		delete(u.runs, t.Name)
	}
	for _, t := range d.Restart {
		old := u.runs[t.Name]
		old.stop(cfg.Drain)
		// The new one starts once the old has let go of its ports.
		u.runs[t.Name] = u.start(t, old.done, cfg.Drain)
	}
	for _, t := range d.Start {
		u.runs[t.Name] = u.start(t, nil, cfg.Drain)
	}
	for _, c := range d.Change {
		u.runs[c.Tunnel.Name].change(c, cfg.Drain)
	}
	for _, name := range d.Same {
		u.runs[name].retry()
	}
	u.cfg = cfg
}

// metricsTunnels are the tunnels for --metrics, sorted by name: called by
// a scrape, from another goroutine than runUp's.
func (u *upRunner) metricsTunnels() []metrics.Tunnel {
	u.mu.Lock()
	runs := maps.Clone(u.runs)
	u.mu.Unlock()
	var out []metrics.Tunnel
	for _, name := range slices.Sorted(maps.Keys(runs)) {
		r := runs[name]
		r.mu.Lock()
		out = append(out, metrics.Tunnel{Name: name, Client: r.client})
		r.mu.Unlock()
	}
	return out
}

// stopAll drains every tunnel (until the drain ends or a second signal)
// and waits for them.
func (u *upRunner) stopAll() error {
	u.e.svc.stopping("draining")
	drain := u.cfg.Drain
	u.e.log.Info("stopping: no new connections; waiting for open streams (a second signal stops at once)", "tunnels", len(u.runs), "drain", drain)
	for _, r := range u.runs {
		r.stop(drain)
	}
	var cut []string
	for name, r := range u.runs {
		<-r.done
		if r.cut {
			cut = append(cut, name)
		}
	}
	if len(cut) > 0 {
		slices.Sort(cut)
		return fmt.Errorf("stopped before open streams finished, they were cut in %s", strings.Join(cut, ", "))
	}
	return nil
}

func (u *upRunner) start(t *config.Tunnel, after <-chan struct{}, drain time.Duration) *tunnelRun {
	r := &tunnelRun{
		e:     u.e,
		name:  t.Name,
		conn:  t.Conn,
		want:  slices.Clone(t.Forwards),
		done:  make(chan struct{}),
		tried: make(chan struct{}),
		who:   "pinhole up: " + t.Name,
		ring:  u.events,
		since: time.Now(),
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	go r.run(after)
	return r
}

// tunnelRun is one tunnel of pinhole up: a goroutine that dials, redials
// when the client closes, and drains it when stopped.
type tunnelRun struct {
	e      *env
	name   string
	who    string // the start of its stdout lines
	conn   config.Conn
	ctx    context.Context // ends at stop
	cancel context.CancelFunc
	done   chan struct{} // closed once its client is closed and its forwards drained
	cut    bool          // the drain ended before its streams did; set before done
	// tried is closed once the first dial has connected or failed (the
	// tunnel retries), or the tunnel stopped before: READY=1 waits for it.
	tried     chan struct{}
	triedOnce sync.Once
	ring      *observe.Ring // its client's events, shared by all of up's

	mu       sync.Mutex
	drainFor time.Duration
	want     []spec.Forward // the forwards the config gives it
	client   *tunnel.Client // nil while not connected
	fwds     map[spec.Forward]*tunnel.Forwarding
	draining sync.WaitGroup // forwards removed, draining
	since    time.Time      // when client last came or went
	lastErr  error          // why the last dial failed, or the last client closed
}

// snapshot is the tunnel's client's, or while it has none, its wanted
// forwards, connecting.
func (r *tunnelRun) snapshot() observe.Tunnel {
	r.mu.Lock()
	c, since, lastErr, want := r.client, r.since, r.lastErr, slices.Clone(r.want)
	r.mu.Unlock()
	if c != nil {
		return c.Snapshot()
	}
	state := tunnel.StateConnecting.String()
	if r.ctx.Err() != nil {
		state = tunnel.StateDraining.String()
	}
	t := observe.Tunnel{Name: r.name, Server: net.JoinHostPort(r.conn.Host, strconv.Itoa(int(r.conn.Port))), State: state, Since: since, Forwards: make([]observe.Forward, 0, len(want))}
	if lastErr != nil {
		t.LastError = lastErr.Error()
	}
	for _, f := range want {
		t.Forwards = append(t.Forwards, tunnel.PlannedForward(f, state, since))
	}
	return t
}

func (r *tunnelRun) triedNow() { r.triedOnce.Do(func() { close(r.tried) }) }

// stop makes the tunnel drain for d and close; it returns at once.
func (r *tunnelRun) stop(d time.Duration) {
	r.mu.Lock()
	r.drainFor = d
	r.mu.Unlock()
	r.cancel()
}

// change adds and removes the forwards of c on the running client (or,
// while it is not connected, on the one it will dial), and leaves its
// other forwards alone.
func (r *tunnelRun) change(c config.Change, drain time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.want = slices.Clone(c.Tunnel.Forwards)
	r.drainFor = drain
	r.reconcileLocked()
}

// retry adds the forwards of want that an earlier Client.Forward refused
// (a port taken then); the others are left alone.
func (r *tunnelRun) retry() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reconcileLocked() // removes nothing: want has not changed
}

// reconcileLocked makes the client's forwards those of want: each one
// missing is added through Client.Forward, each one too many drains
// (Forwarding.Shutdown) in the background.
func (r *tunnelRun) reconcileLocked() {
	if r.client == nil {
		return
	}
	for f, fw := range r.fwds {
		if slices.Contains(r.want, f) {
			continue
		}
		delete(r.fwds, f)
		r.e.log.Info("forward removed: draining", "tunnel", r.name, "forward", f.Kind.String()+" "+f.String(), "streams", fw.Stats().StreamsOpen, "drain", r.drainFor)
		r.draining.Add(1)
		go func(d time.Duration) {
			defer r.draining.Done()
			ctx, cancel := context.WithTimeout(r.e.force, d)
			defer cancel()
			fw.Shutdown(ctx)
		}(r.drainFor)
	}
	for _, f := range r.want {
		if _, ok := r.fwds[f]; ok {
			continue
		}
		ctx, cancel := context.WithTimeout(r.ctx, 15*time.Second)
		fw, err := r.client.Forward(ctx, f)
		cancel()
		if err != nil {
			r.e.log.Error("forward not added; it is tried again at the next reload", "tunnel", r.name, "forward", f.Kind.String()+" "+f.String(), "err", err)
			continue
		}
		r.fwds[f] = fw
		printForward(r.e, r.who, r.conn.Host, fw)
	}
}

func (r *tunnelRun) run(after <-chan struct{}) {
	defer close(r.done)
	defer r.triedNow()
	defer r.draining.Wait()
	if after != nil {
		select {
		case <-after:
		case <-r.ctx.Done():
			return
		}
	}
	wait := retryMin
	for {
		c, closeAgent, err := r.dial()
		if err != nil {
			if r.ctx.Err() != nil {
				return
			}
			r.e.log.Error("tunnel did not connect; retrying", "tunnel", r.name, "err", err, "retry", wait)
			r.mu.Lock()
			r.lastErr = err
			r.mu.Unlock()
			r.triedNow()
			select {
			case <-time.After(wait):
			case <-r.ctx.Done():
				return
			}
			wait = min(2*wait, retryMax)
			continue
		}
		r.triedNow()
		wait = retryMin
		select {
		case <-c.Done():
			err := c.Wait()
			closeAgent()
			r.mu.Lock()
			r.client, r.fwds, r.since = nil, nil, time.Now()
			if err != nil {
				r.lastErr = err
			}
			r.mu.Unlock()
			r.e.log.Error("tunnel closed; connecting again", "tunnel", r.name, "err", err, "retry", wait)
			select {
			case <-time.After(wait):
			case <-r.ctx.Done():
				return
			}
		case <-r.ctx.Done():
			r.mu.Lock()
			d := r.drainFor
			r.client, r.fwds = nil, nil
			r.mu.Unlock()
			r.e.log.Info("tunnel stopping: no new connections; draining", "tunnel", r.name, "streams", c.Stats().StreamsOpen, "drain", d)
			ctx, cancel := context.WithTimeout(r.e.force, d)
			err := c.Shutdown(ctx)
			cancel()
			c.Close()
			closeAgent()
			if err != nil {
				r.cut = true
				r.e.log.Warn("tunnel stopped before its open streams finished; they were cut", "tunnel", r.name, "err", err)
			} else {
				st := c.Stats()
				r.e.log.Info("tunnel stopped", "tunnel", r.name, "bytes", st.ToTarget+st.FromTarget)
			}
			return
		}
	}
}

// dial connects the tunnel with the forwards it wants now, then makes
// up for any change made while it dialed.
func (r *tunnelRun) dial() (*tunnel.Client, func(), error) {
	cfg, closeAgent, err := clientConfig(r.e, r.conn)
	if err != nil {
		return nil, nil, err
	}
	r.mu.Lock()
	for _, f := range r.want {
		switch f.Kind {
		case spec.Local:
			cfg.Local = append(cfg.Local, f)
		case spec.Remote:
			cfg.Remote = append(cfg.Remote, f)
		case spec.Dynamic:
			cfg.Dynamic = append(cfg.Dynamic, f)
		}
	}
	r.mu.Unlock()
	cfg.Name, cfg.Logger, cfg.Events = r.name, r.e.log, r.ring
	c, err := tunnel.Dial(r.ctx, cfg)
	if err != nil {
		closeAgent()
		return nil, nil, err
	}
	fmt.Fprintf(r.e.stdout, "%s: connected to %s as %s\n", r.who, cfg.Addr, cfg.User)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.client, r.fwds, r.since = c, map[spec.Forward]*tunnel.Forwarding{}, time.Now()
	for _, fw := range c.Forwardings() {
		r.fwds[fw.Spec()] = fw
		printForward(r.e, r.who, cfg.Addr, fw)
	}
	r.reconcileLocked()
	return c, closeAgent, nil
}

// clientConfig is what pinhole connect makes of its flags, made of a
// tunnel's settings instead; closeAgent ends the ssh-agent connection.
func clientConfig(e *env, c config.Conn) (_ tunnel.ClientConfig, closeAgent func(), _ error) {
	userName := c.User
	if userName == "" {
		u, err := user.Current()
		if err != nil {
			return tunnel.ClientConfig{}, nil, fmt.Errorf("cannot tell your user name (%v): set user = \"NAME\"", err)
		}
		userName = u.Username
	}
	known := c.KnownHosts
	if known == "" {
		known = "~/.ssh/known_hosts"
	}
	known, err := expandHome(known)
	if err != nil {
		return tunnel.ClientConfig{}, nil, err
	}
	mode, err := auth.ParseHostKeyMode(c.HostKeyCheck)
	if err != nil {
		return tunnel.ClientConfig{}, nil, err
	}
	if mode == auth.HostKeyNo {
		e.log.Warn("host-key-check = \"no\": the server's identity is NOT checked; anyone on the path can read and change this tunnel's traffic", "server", c.Host)
	}
	kh, err := auth.OpenKnownHosts(known, mode, e.log)
	if err != nil {
		return tunnel.ClientConfig{}, nil, err
	}
	var idents []string
	for _, p := range c.Identity {
		p, err := expandHome(p)
		if err != nil {
			return tunnel.ClientConfig{}, nil, err
		}
		idents = append(idents, p)
	}
	proxyFile := c.ProxyAuthFile
	if proxyFile != "" {
		if proxyFile, err = expandHome(proxyFile); err != nil {
			return tunnel.ClientConfig{}, nil, err
		}
	}
	creds, err := proxyCredentials(c.ProxyAuth, proxyFile)
	if err != nil {
		return tunnel.ClientConfig{}, nil, err
	}
	signers, agentCloser, err := auth.ClientSigners(idents, os.Getenv("SSH_AUTH_SOCK"), func(err error) {
		e.log.Warn("identity file missing; going on with the other keys", "err", err)
	})
	if err != nil {
		return tunnel.ClientConfig{}, nil, err
	}
	closeAgent = func() { agentCloser() }
	if len(signers) == 0 {
		closeAgent()
		return tunnel.ClientConfig{}, nil, errors.New("no keys to log in with: create one with 'ssh-keygen -t ed25519', set identity = [\"FILE\"], or start ssh-agent")
	}
	// The name known_hosts is checked against is the server's host:port,
	// for a URL host too (the URL's port, or its scheme's), as connect's.
	addr := net.JoinHostPort(c.Host, strconv.Itoa(int(c.Port)))
	ds := dialSettings{Bind: c.Bind, Jump: c.Jump, Family: c.AddressFamily, Proxy: c.Proxy, Getenv: e.getenv}
	if c.URL != "" {
		ep, err := transport.ParseURL(c.URL)
		if err != nil {
			closeAgent()
			return tunnel.ClientConfig{}, nil, err
		}
		ds.URL, addr = &ep, ep.Addr()
	}
	if ds.TLS, err = (transportFlags{tlsCA: c.TLSCA, fingerprint: c.TLSFingerprint}).clientTLS(); err != nil {
		closeAgent()
		return tunnel.ClientConfig{}, nil, err
	}
	authMethods := []ssh.AuthMethod{ssh.PublicKeys(signers...)}
	dial, target, err := ds.dialer(e, userName, c.Host, authMethods, kh)
	if err != nil {
		closeAgent()
		return tunnel.ClientConfig{}, nil, err
	}
	interval := c.Keepalive
	if interval == 0 {
		interval = -1
	}
	cfg := tunnel.ClientConfig{
		Addr:              addr,
		Target:            target,
		User:              userName,
		Auth:              authMethods,
		Dial:              dial,
		HostKeyCallback:   kh.Callback(),
		HostKeyAlgorithms: kh.Algorithms(addr),
		AllowOpenProxy:    c.AllowOpenProxy,
		KeepaliveInterval: interval,
		KeepaliveCountMax: c.KeepaliveCount,
		UDPIdleTimeout:    c.UDPIdle,
		UDPMaxFlows:       c.UDPMaxFlows,
		UDPOptional:       true,
		Cores:             e.cores,
		Logger:            e.log,
	}
	if creds != nil {
		cfg.ProxyCredentials = creds
	}
	return cfg, closeAgent, nil
}

// expandHome turns a leading ~ into the home directory.
func expandHome(p string) (string, error) {
	if p != "~" && !strings.HasPrefix(p, "~/") {
		return p, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("no home directory for %s (%v): write the path in full", p, err)
	}
	return filepath.Join(home, p[1:]), nil
}
