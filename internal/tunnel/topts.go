package tunnel

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/pinhole-dev/pinhole/internal/auth"
	"github.com/pinhole-dev/pinhole/internal/proxyproto"
	"github.com/pinhole-dev/pinhole/internal/ssh"
)

// Per-tunnel options (docs/names.md, "Per-tunnel options"): a
// connection's remote forwards get the key's pinhole-options from
// authorized_keys and the option words its session sends as its command
// (ssh -R ... host -- auth=u:p). A stock ssh asks for its forwards
// before it opens the session, so a forward exists before its words
// arrive: until the options are settled, nothing is served through the
// connection's forwards (a name's requests and a port's connections
// wait). They are settled by the first of:
//
//   - an exec request (the words) or a shell request (no words) on a
//     session channel;
//   - a session channel closed before either;
//   - no-more-sessions@openssh.com with no session channel opened
//     within noMoreGrace after it (pinhole connect sends it when it has
//     no words);
//   - OptionsWait after the connection logged in (ssh -N, which opens
//     no session and, to a server that is not OpenSSH, sends no
//     no-more-sessions either).
//
// Words that do not parse, or that try to change what authorized_keys
// set, settle the options as refused: nothing is served through the
// connection's forwards, and the session gets the error on stderr and
// exit status 1 (after which ssh leaves). Words that arrive once the
// options are settled still apply, from then on.

// noMoreGrace is how long after no-more-sessions a session channel that
// the client sent before it may take to reach serve's loop.
const noMoreGrace = 100 * time.Millisecond

// errOptionsRefused is what a forward of a connection whose option words
// were refused answers.
var errOptionsRefused = errors.New("tunnel: this connection's tunnel options were refused (see its session's error); reconnect with valid options")

// topts is one connection's tunnel options and whether they are settled.
type topts struct {
	mu       sync.Mutex
	o        auth.TunnelOptions
	refused  bool
	pending  int  // session channels without exec or shell yet
	sessions bool // a session channel was ever opened
	settled  chan struct{}
	once     sync.Once
}

// startOptions sets the options from authorized_keys and starts the
// bound.
func (sc *serverConn) startOptions() {
	t := &sc.topts
	t.settled = make(chan struct{})
	if sc.opts != nil {
		t.o = sc.opts.Tunnel
	}
	time.AfterFunc(sc.srv.cfg.OptionsWait, func() {
		// A session open without its exec or shell yet: its words may be
		// on their way (a slow link), and sessionDone settles when they
		// come or the session ends.
		t.mu.Lock()
		waiting := t.pending > 0
		t.mu.Unlock()
		if !waiting {
			t.settle() // a no-op once settled
		}
	})
}

// settle marks the options as final; it is idempotent.
func (t *topts) settle() {
	t.once.Do(func() { close(t.settled) })
}

// tunnelOptions waits until the options are settled (or ctx ends) and
// returns them; an error when they were refused or ctx ended first.
func (sc *serverConn) tunnelOptions(ctx context.Context) (auth.TunnelOptions, error) {
	t := &sc.topts
	select {
	case <-t.settled:
	case <-ctx.Done():
		return auth.TunnelOptions{}, ctx.Err()
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.refused {
		return auth.TunnelOptions{}, errOptionsRefused
	}
	return t.o, nil
}

// sessionOpened counts a session channel; serve's loop calls it before
// it serves the channel, so no-more-sessions sees it.
func (sc *serverConn) sessionOpened() {
	t := &sc.topts
	t.mu.Lock()
	t.pending++
	t.sessions = true
	t.mu.Unlock()
}

// sessionDone notes a session channel's exec or shell, or its end
// without either (asked false): the options are settled.
func (sc *serverConn) sessionDone() {
	t := &sc.topts
	t.mu.Lock()
	t.pending--
	t.mu.Unlock()
	t.settle()
}

// noMoreSessions is no-more-sessions@openssh.com.
func (sc *serverConn) noMoreSessions() {
	time.AfterFunc(noMoreGrace, func() {
		t := &sc.topts
		t.mu.Lock()
		none := !t.sessions
		t.mu.Unlock()
		if none {
			t.settle()
		}
	})
}

// execOptions applies a session's command as option words, and returns
// what the session prints: the options in effect (password left out), or
// the error.
func (sc *serverConn) execOptions(command string) (string, error) {
	t := &sc.topts
	words, err := auth.ParseTunnelOptions(command)
	t.mu.Lock()
	if err == nil {
		var o auth.TunnelOptions
		if o, err = t.o.With(words); err == nil {
			t.o = o
		}
	}
	if err != nil {
		t.refused = true
	}
	o := t.o
	t.mu.Unlock()
	if err != nil {
		sc.log.Info("tunnel options refused", "err", err)
		return "", err
	}
	sc.log.Info("tunnel options", "options", o.String())
	return o.String(), nil
}

// execCommand is an exec request's command.
func execCommand(payload []byte) (string, bool) {
	var m struct{ Command string }
	if err := ssh.Unmarshal(payload, &m); err != nil {
		return "", false
	}
	return strings.TrimSpace(m.Command), true
}

// streamOptions is what a TCP remote forward's connection from client
// gets: the PROXY header to start the stream with (nil for none), or
// an error when the connection is to be closed (not allowed, options
// refused or not settled in time).
func (sc *serverConn) streamOptions(client, local netip.AddrPort) ([]byte, error) {
	o, err := sc.admit(sc.ctx, client.Addr())
	if err != nil {
		return nil, err
	}
	if o.ProxyProtocol == 0 {
		return nil, nil
	}
	return proxyproto.Header(o.ProxyProtocol, client, local), nil
}

// admit waits for the connection's tunnel options (as long as ctx
// lasts), then says whether allow= admits a public client from addr to
// its remote forwards (a TCP port's connection, a UDP port's new flow).
func (sc *serverConn) admit(ctx context.Context, addr netip.Addr) (auth.TunnelOptions, error) {
	ctx, cancel := context.WithTimeout(ctx, sc.srv.cfg.OptionsWait+5*time.Second)
	defer cancel()
	o, err := sc.tunnelOptions(ctx)
	if err != nil {
		return o, err
	}
	if !o.Allows(addr) {
		return o, errNotAllowed
	}
	return o, nil
}

// refusesNow says, without waiting, whether the connection's settled
// options turn a public client from addr away: false while they are not
// settled yet (admit waits for them then).
func (sc *serverConn) refusesNow(addr netip.Addr) bool {
	t := &sc.topts
	select {
	case <-t.settled:
	default:
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.refused || !t.o.Allows(addr)
}

var errNotAllowed = errors.New("tunnel: the client's address is not in the forward's allow= networks")
