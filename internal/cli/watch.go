package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/pinhole-dev/pinhole/internal/control"
	"github.com/pinhole-dev/pinhole/internal/dashboard"
	"github.com/pinhole-dev/pinhole/internal/observe"
	"github.com/pinhole-dev/pinhole/internal/tunnel"
)

// watchFlags are the flags of server, connect and up that say where the
// process shows what it does: the control socket (pinhole status, reload,
// stop) and the web dashboard (docs/watching.md).
type watchFlags struct {
	control   string
	dashboard string
	token     string
	tokenFile string
}

// watchFlagNames are the flags watchFlags registers: pinhole server -c
// takes them beside the file.
var watchFlagNames = []string{"control", "dashboard", "dashboard-token", "dashboard-token-file"}

func (w *watchFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&w.control, "control", "", "control socket `PATH` that pinhole status, reload and stop talk to (default: ROLE.sock in $XDG_RUNTIME_DIR/pinhole or the state directory; none: no socket)")
	fs.StringVar(&w.dashboard, "dashboard", "", "serve the live web dashboard on `ADDR` (host:port; loopback only unless --dashboard-token is given)")
	fs.StringVar(&w.token, "dashboard-token", "", "`TOKEN` the dashboard asks for (as ?token=TOKEN once, then a cookie); required for a non-loopback --dashboard. --dashboard-token-file keeps it out of the process list")
	fs.StringVar(&w.tokenFile, "dashboard-token-file", "", "read --dashboard-token from the first line of `FILE`")
}

// watching is what start serves, for stop to end.
type watching struct {
	cancel context.CancelFunc
	done   chan struct{}
	path   string
}

// start serves h on the control socket and the dashboard, as the flags
// say, until the returned stop is called. role names the socket
// (server.sock, connect.sock, up.sock; ROLE-PID.sock when another process
// holds that name). A dashboard address that cannot be served is an
// error; a control socket that cannot be made is a warning, the process
// goes on without one.
func (w *watchFlags) start(e *env, role string, h control.Handler) (stop func(), err error) {
	ctx, cancel := context.WithCancel(context.Background())
	ws := &watching{cancel: cancel, done: make(chan struct{})}
	var served []func() error
	token, err := tokenFlag("dashboard-token", w.token, w.tokenFile)
	if err != nil {
		cancel()
		return nil, err
	}
	if w.dashboard != "" {
		d, err := newDashboard(e, w.dashboard, token, role, h.Snapshot)
		if err != nil {
			cancel()
			return nil, err
		}
		served = append(served, func() error { return d.serve(ctx) })
	}
	if w.control != "none" {
		ln, path, err := listenControl(e, w.control, role)
		if err != nil {
			e.log.Warn("no control socket: pinhole status will not see this process", "err", err)
		} else {
			ws.path = path
			e.log.Info("control socket: pinhole status, reload and stop talk to it", "path", path)
			served = append(served, func() error { return control.Serve(ctx, ln, h) })
		}
	}
	go func() {
		defer close(ws.done)
		errs := make(chan error, len(served))
		for _, f := range served {
			go func() { errs <- f() }()
		}
		for range served {
			if err := <-errs; err != nil {
				e.log.Warn("status server stopped", "err", err)
			}
		}
	}()
	return func() {
		ws.cancel()
		<-ws.done
	}, nil
}

// listenControl opens the control socket: at path if given, else the
// default for role.
func listenControl(e *env, path, role string) (net.Listener, string, error) {
	if path != "" {
		ln, err := control.Listen(path)
		return ln, path, err
	}
	dir, err := controlDir(e)
	if err != nil {
		return nil, "", err
	}
	path = filepath.Join(dir, role+".sock")
	ln, err := control.Listen(path)
	if errors.Is(err, control.ErrInUse) {
		path = filepath.Join(dir, role+"-"+strconv.Itoa(os.Getpid())+".sock")
		ln, err = control.Listen(path)
	}
	return ln, path, err
}

// controlDir is where control sockets are (control.Dir).
func controlDir(e *env) (string, error) {
	state, err := stateDir(e.getenv)
	if err != nil && control.Dir(e.getenv, "") == "" {
		return "", err
	}
	return control.Dir(e.getenv, state), nil
}

// clientSnapshot is the snapshot of a client process (connect, up) with
// tunnels ts, whose events are in ring.
func clientSnapshot(started time.Time, ring *observe.Ring, ts []observe.Tunnel) observe.Snapshot {
	s := observe.Snapshot{
		Role:     "client",
		Version:  tunnel.Version,
		PID:      os.Getpid(),
		Started:  started,
		Time:     time.Now(),
		Sessions: []observe.Session{},
		Tunnels:  ts,
		Events:   ring.Events(),
		Counts:   ring.Counts(),
	}
	for _, t := range ts {
		s.Totals.BytesToTarget += t.BytesToTarget
		s.Totals.BytesFromTarget += t.BytesFromTarget
		s.Totals.StreamsOpen += t.StreamsOpen
		s.Totals.StreamsTotal += t.StreamsTotal
		s.Totals.StreamsRefused += t.StreamsRefused
	}
	return s
}

// serverSnapshot is srv's snapshot with the process's id.
func serverSnapshot(srvs ...*tunnel.Server) observe.Snapshot {
	last := len(srvs) - 1
	s := srvs[last].Snapshot()
	s.PID = os.Getpid()
	if last == 0 {
		return s
	}
	// Older generations (server -c after a restart-style reload): their
	// sessions, draining, among the current one's (oldest first), and
	// their totals in the sums. The events are one ring, the current server's copy.
	var sessions []observe.Session
	for _, old := range srvs[:last] {
		o := old.Snapshot()
		if o.Started.Before(s.Started) {
			s.Started = o.Started
		}
		sessions = append(sessions, o.Sessions...)
		s.Totals = s.Totals.Add(o.Totals)
	}
	s.Sessions = append(sessions, s.Sessions...)
	slices.SortStableFunc(s.Sessions, func(a, b observe.Session) int { return a.Since.Compare(b.Since) })
	return s
}

// reloadAsk is a reload asked through the control socket, for the loop
// that reloads on SIGHUP too: it answers on reply.
type reloadAsk struct {
	reply chan string
}

// asker returns the control Handler's Reload that sends to asks and waits
// for the answer.
func asker(asks chan<- reloadAsk) func(ctx context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		a := reloadAsk{reply: make(chan string, 1)}
		select {
		case asks <- a:
		case <-ctx.Done():
			return "", ctx.Err()
		}
		select {
		case msg := <-a.reply:
			return msg, nil
		case <-ctx.Done():
			return "", fmt.Errorf("the reload goes on, but its answer did not come in time: %w", ctx.Err())
		}
	}
}

// dashboardServer is --dashboard: the page of internal/dashboard on a
// listener bound at start, so that a taken port is an error at once.
type dashboardServer struct {
	ln  net.Listener
	srv *http.Server
}

func newDashboard(e *env, addr, token, role string, snapshot func() observe.Snapshot) (*dashboardServer, error) {
	if err := dashboard.CheckAddr(addr, token != ""); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dashboard: %w (pick another port, or port 0 for any)", err)
	}
	d := &dashboardServer{ln: ln, srv: watchHTTPServer(&dashboard.Handler{Snapshot: snapshot, Token: token})}
	fmt.Fprintf(e.stdout, "pinhole %s: dashboard on http://%s/\n", role, ln.Addr())
	return d, nil
}

// watchHTTPServer is the http.Server of --dashboard and --metrics: a
// client that is slow to send its headers, or that keeps an idle
// connection open, is let go, so that it holds no descriptor for long.
func watchHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
}

// serve serves the dashboard until ctx ends.
func (d *dashboardServer) serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { d.srv.Close() })
	defer stop()
	if err := d.srv.Serve(d.ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
