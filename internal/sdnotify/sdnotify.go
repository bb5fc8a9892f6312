// Package sdnotify tells systemd how a Type=notify service is doing, as
// sd_notify(3) does: READY=1 once it serves, RELOADING=1 and READY=1
// around a reload, STOPPING=1 when it begins to stop, and WATCHDOG=1
// pings when the unit has WatchdogSec=.
//
// It needs no library: each message is one datagram written to the unix
// socket systemd names in $NOTIFY_SOCKET (a path, or an abstract socket
// written with a leading @). The package reads no environment: the
// caller passes $NOTIFY_SOCKET, $WATCHDOG_USEC and $WATCHDOG_PID in
// Config. A nil *Notifier, or one made from an empty Config (not run by
// systemd), does nothing and returns nil from every method, so callers
// need no "are we under systemd" branches.
package sdnotify

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Config is what systemd put in the service's environment. Zero values
// mean "not set".
type Config struct {
	// Socket is $NOTIFY_SOCKET: an absolute path, or "@name" for an
	// abstract socket. Empty: not run by systemd, or by a unit that is not
	// Type=notify; nothing is sent.
	Socket string
	// WatchdogUSec is $WATCHDOG_USEC, the unit's WatchdogSec= in
	// microseconds. Empty or "0": no watchdog.
	WatchdogUSec string
	// WatchdogPID is $WATCHDOG_PID: when set, the watchdog is this
	// process's only if it equals PID (a child that inherited the
	// variable must not ping for its parent).
	WatchdogPID string
	// PID is this process's id, compared with WatchdogPID; 0 means
	// os.Getpid().
	PID int
}

// Notifier sends state changes to systemd. Its methods are safe for
// concurrent use.
type Notifier struct {
	addr     *net.UnixAddr
	watchdog time.Duration // WATCHDOG_USEC; 0: off
}

// New checks cfg and returns its Notifier. With an empty Socket it returns
// a Notifier that sends nothing (and no watchdog). A Socket that is
// neither an absolute path nor "@name", or a WatchdogUSec or WatchdogPID
// that is not a number, is an error: the unit's environment is wrong.
func New(cfg Config) (*Notifier, error) {
	n := &Notifier{}
	if cfg.Socket == "" {
		return n, nil
	}
	if !strings.HasPrefix(cfg.Socket, "/") && !(strings.HasPrefix(cfg.Socket, "@") && len(cfg.Socket) > 1) {
		return nil, fmt.Errorf("sdnotify: NOTIFY_SOCKET %q is neither an absolute path nor an abstract socket (@name); "+
			"unset NOTIFY_SOCKET, or run pinhole from a systemd unit with Type=notify", cfg.Socket)
	}
	// Go's syscall turns a leading @ into the NUL byte of Linux's
	// abstract socket namespace.
	n.addr = &net.UnixAddr{Name: cfg.Socket, Net: "unixgram"}
	if cfg.WatchdogUSec == "" || cfg.WatchdogUSec == "0" {
		return n, nil
	}
	usec, err := strconv.ParseUint(cfg.WatchdogUSec, 10, 63)
	if err != nil || usec > uint64(1<<63-1)/1000 {
		return nil, fmt.Errorf("sdnotify: WATCHDOG_USEC %q is not a number of microseconds; fix WatchdogSec= in the unit or unset WATCHDOG_USEC", cfg.WatchdogUSec)
	}
	if cfg.WatchdogPID != "" {
		pid, err := strconv.Atoi(cfg.WatchdogPID)
		if err != nil || pid <= 0 {
			return nil, fmt.Errorf("sdnotify: WATCHDOG_PID %q is not a process id; unset it or WATCHDOG_USEC", cfg.WatchdogPID)
		}
		self := cfg.PID
		if self == 0 {
			self = os.Getpid()
		}
		if pid != self {
			return n, nil // another process's watchdog
		}
	}
	n.watchdog = time.Duration(usec) * time.Microsecond
	return n, nil
}

// Enabled reports whether n sends anything: whether systemd listens.
func (n *Notifier) Enabled() bool { return n != nil && n.addr != nil }

// Notify sends one message of newline-separated VARIABLE=value fields
// (sd_notify(3) lists them). It does nothing when n is not Enabled.
func (n *Notifier) Notify(fields ...string) error {
	if !n.Enabled() {
		return nil
	}
	for _, f := range fields {
		if !strings.Contains(f, "=") || strings.Contains(f, "\n") {
			return fmt.Errorf("sdnotify: field %q is not one VARIABLE=value line", f)
		}
	}
	// A fresh socket for each message, as libsystemd does: a socket
	// connected once would be left pointing at a path that systemd made
	// again after a daemon-reexec.
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(strings.Join(fields, "\n") + "\n")); err != nil {
		return fmt.Errorf("sdnotify: %w", err)
	}
	return nil
}

// status adds a STATUS= field (what systemctl status shows) when s is not
// empty; a newline in s would end the field, so it becomes a space.
func status(fields []string, s string) []string {
	if s == "" {
		return fields
	}
	return append(fields, "STATUS="+strings.ReplaceAll(s, "\n", " "))
}

// Ready says the service is up: its listeners are bound (a server) or its
// tunnels have connected or are retrying (pinhole up). It also ends a
// reload begun with Reloading. status, if not empty, is what systemctl
// status shows.
func (n *Notifier) Ready(s string) error {
	return n.Notify(status([]string{"READY=1"}, s)...)
}

// Reloading says a reload has begun, with the CLOCK_MONOTONIC time that
// systemd (253 and later, Type=notify-reload) wants beside it; Ready ends
// it.
func (n *Notifier) Reloading(s string) error {
	fields := []string{"RELOADING=1"}
	if usec, ok := monotonicUsec(); ok {
		fields = append(fields, "MONOTONIC_USEC="+strconv.FormatUint(usec, 10))
	}
	return n.Notify(status(fields, s)...)
}

// Stopping says the service has begun to stop (to drain).
func (n *Notifier) Stopping(s string) error {
	return n.Notify(status([]string{"STOPPING=1"}, s)...)
}

// Status changes only what systemctl status shows.
func (n *Notifier) Status(s string) error {
	if s == "" {
		return nil
	}
	return n.Notify(status(nil, s)...)
}

// WatchdogInterval is how often Watchdog pings: half of WATCHDOG_USEC, as
// sd_watchdog_enabled(3) advises. 0 when the unit has no watchdog, or it
// belongs to another process.
func (n *Notifier) WatchdogInterval() time.Duration {
	if !n.Enabled() {
		return 0
	}
	return n.watchdog / 2
}

// Watchdog sends WATCHDOG=1 every WatchdogInterval until ctx ends, and
// returns ctx's error then. alive, if not nil, is asked before each ping;
// while it returns an error no ping is sent, so that systemd restarts a
// service that has stopped working even though its process runs. Without
// a watchdog Watchdog returns nil at once. A ping systemd does not take is
// returned as the error.
func (n *Notifier) Watchdog(ctx context.Context, alive func() error) error {
	every := n.WatchdogInterval()
	if every <= 0 {
		return nil
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if alive == nil || alive() == nil {
			if err := n.Notify("WATCHDOG=1"); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}
