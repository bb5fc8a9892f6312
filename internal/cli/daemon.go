package cli

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"

	"github.com/pinhole-dev/pinhole/internal/sdnotify"
)

// daemon is what a long-running subcommand (server, up) tells the service
// manager; its reload requests come on env.reload. Under systemd (Type=notify)
// every call is an sd_notify message; elsewhere (and on a nil *daemon)
// each does nothing. Errors
// sending are logged once, never fatal: a service that cannot tell systemd
// it is ready is stopped by systemd's start timeout, which says why.
//
// A subcommand calls, in this order:
//
//	e.svc.ready("listening on …")    // listeners bound, tunnels connected or retrying; starts the watchdog
//	e.svc.reloading("…"); …; e.svc.ready("…")  // around each reload
//	e.svc.stopping("draining …")    // at the start of a graceful stop
type daemon struct {
	n        *sdnotify.Notifier
	env      *env
	ctx      context.Context // ends when the subcommand returns
	watchdog sync.Once
	wg       sync.WaitGroup
	warned   sync.Once
}

// newDaemon reads the service manager's variables through getenv.
func newDaemon(e *env, getenv func(string) string) (*daemon, error) {
	n, err := sdnotify.New(sdnotify.Config{
		Socket:       getenv("NOTIFY_SOCKET"),
		WatchdogUSec: getenv("WATCHDOG_USEC"),
		WatchdogPID:  getenv("WATCHDOG_PID"),
	})
	if err != nil {
		return nil, err
	}
	return &daemon{n: n, env: e}, nil
}

func (s *daemon) warn(err error) {
	if err == nil {
		return
	}
	s.warned.Do(func() {
		s.env.log.Warn("cannot tell systemd how the service is doing; is NOTIFY_SOCKET right?", "err", err)
	})
}

// ready says the service is up (or a reload is done). The first call
// starts the watchdog pings when the unit has WatchdogSec=; they stop when
// the subcommand returns.
func (s *daemon) ready(status string) {
	if s == nil {
		return
	}
	s.warn(s.n.Ready(status))
	s.watchdog.Do(func() {
		if s.n.WatchdogInterval() == 0 {
			return
		}
		s.env.log.Info("systemd watchdog: pinging", "every", s.n.WatchdogInterval())
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			if err := s.n.Watchdog(s.ctx, nil); err != nil && !errors.Is(err, context.Canceled) {
				s.env.log.Error("systemd watchdog: ping failed; systemd will restart the service", "err", err)
			}
		}()
	})
}

// reloading says a reload has begun; ready ends it.
func (s *daemon) reloading(status string) {
	if s != nil {
		s.warn(s.n.Reloading(status))
	}
}

// stopping says a graceful stop has begun.
func (s *daemon) stopping(status string) {
	if s != nil {
		s.warn(s.n.Stopping(status))
	}
}

// stateDir is pinhole's directory for state, such as the server's host
// key: $STATE_DIRECTORY when systemd sets it (the unit's StateDirectory=;
// the first one if there are several), else $XDG_STATE_HOME/pinhole,
// else ~/.local/state/pinhole.
func stateDir(getenv func(string) string) (string, error) {
	if sd, _, _ := strings.Cut(getenv("STATE_DIRECTORY"), ":"); filepath.IsAbs(sd) {
		return sd, nil
	}
	if x := getenv("XDG_STATE_HOME"); filepath.IsAbs(x) {
		return filepath.Join(x, "pinhole"), nil
	}
	home := getenv("HOME")
	if !filepath.IsAbs(home) {
		return "", fmt.Errorf("no state directory: neither STATE_DIRECTORY, XDG_STATE_HOME nor HOME is an absolute path; pass the file's path explicitly (--host-key FILE)")
	}
	return filepath.Join(home, ".local", "state", "pinhole"), nil
}
