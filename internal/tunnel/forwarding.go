package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/pinhole-dev/pinhole/internal/socks"
	"github.com/pinhole-dev/pinhole/internal/spec"
)

// Forwarding is one forward of a Client (-L, -R or -D, TCP or UDP), from
// Forward until Close. It survives reconnects: a local one keeps its
// listener bound throughout, a remote one is asked for again on every new
// connection.
type Forwarding struct {
	c      *Client
	spec   spec.Forward
	ctx    context.Context // ends at close: the forward's streams end with it
	cancel context.CancelFunc
	meter  meter
	wg     sync.WaitGroup // the accept loop and every stream

	// What listens here: ln for TCP -L and -D, pc for UDP -L; proxy
	// answers -D's clients.
	ln    net.Listener
	pc    *net.UDPConn
	proxy *socks.Server

	mu       sync.Mutex
	closed   bool  // closed by its owner, its client, or for err
	draining bool  // stopped accepting; streams go on
	err      error // why it is closed, or the server's last refusal of a -R
	asked    *link // the connection a -R was last asked for on
	bound    uint32
	url      string    // -R: the public URL pinhole server gave it by name
	bindHost string    // a -R's listen address as sent, and the port
	since    time.Time // when its own part of State last changed
	label    string    // flag(), made once, for its events
}

// Forward starts f on the client and returns its handle.
//
// A local forward (-L, -D) binds its listener now, whatever the
// connection's state, so a taken port is an error at once; its streams
// wait up to StreamWait for the connection. A remote forward (-R) is asked
// of the server now if the client is up, waiting for the answer while ctx
// allows, and otherwise as soon as it is; one the server refuses is asked
// again with backoff, its Err saying why, and stays in StateConnecting
// until the server takes it.
//
// Forward fails for a forward that cannot work: a malformed one, a port
// that cannot be bound, a -D on a non-loopback address without
// ProxyCredentials or AllowOpenProxy, a /udp forward on a server without
// pinhole's UDP extension (ErrNoUDP), or a closed client.
func (c *Client) Forward(ctx context.Context, f spec.Forward) (*Forwarding, error) {
	if f.Kind == spec.Dynamic && f.Proto == spec.UDP {
		return nil, fmt.Errorf("tunnel: -D %s: a dynamic forward is TCP; SOCKS5 UDP ASSOCIATE rides on it", f)
	}
	fw := &Forwarding{c: c, spec: f, since: time.Now()}
	fw.label = fw.flag()
	fw.ctx, fw.cancel = context.WithCancel(c.ctx)
	if err := fw.bind(); err != nil {
		fw.cancel()
		return nil, err
	}
	c.mu.Lock()
	l, st := c.link, c.state
	switch {
	case st == StateClosed || st == StateDraining:
		c.mu.Unlock()
		fw.close(nil)
		return nil, fmt.Errorf("tunnel: %s %s: %w", f.Kind, f, net.ErrClosed)
	case f.Proto == spec.UDP && l != nil && !l.caps.udp:
		c.mu.Unlock()
		fw.close(nil)
		return nil, fmt.Errorf("tunnel: %s %s: %w (%s is not pinhole server)", f.Kind, f, ErrNoUDP, c.cfg.Addr)
	}
	c.forwards = append(c.forwards, fw)
	c.mu.Unlock()
	fw.serve()
	if f.Kind != spec.Remote {
		c.log.Info(f.Kind.String()+" forward listening", "forward", fw.flag(), "laddr", fw.netAddr().String())
	}
	if f.Kind == spec.Remote && l != nil {
		fw.request(ctx, l)
	}
	return fw, nil
}

// bind opens what a local forward listens on.
func (f *Forwarding) bind() error {
	s := f.spec
	switch {
	case s.Kind == spec.Remote:
		return nil
	case s.Kind == spec.Dynamic:
		if err := socks.CheckOpen(s.ListenAddr(), f.c.cfg.ProxyCredentials != nil); err != nil && !f.c.cfg.AllowOpenProxy {
			return fmt.Errorf("tunnel: -D %s: %w", s, err)
		}
		f.proxy = f.newProxy()
	case s.Proto == spec.UDP:
		ua, err := net.ResolveUDPAddr("udp", s.ListenAddr())
		if err != nil {
			return fmt.Errorf("tunnel: -L %s: %w", s, err)
		}
		if f.pc, err = net.ListenUDP("udp", ua); err != nil {
			return fmt.Errorf("tunnel: -L %s: %w (is another program using that port? pick another one)", s, err)
		}
		return nil
	}
	ln, err := f.c.cfg.Listen("tcp", s.ListenAddr())
	if err != nil {
		return fmt.Errorf("tunnel: %s %s: %w (is another program using that port? pick another one)", s.Kind, s, err)
	}
	f.ln = ln
	return nil
}

// serve starts the forward's accept loop, unless it was closed since
// bind: a Close may come as soon as the forward is listed.
func (f *Forwarding) serve() {
	var loop func()
	switch {
	case f.spec.Kind == spec.Remote:
		return // the connection's serveForwarded takes its streams
	case f.spec.Kind == spec.Dynamic:
		loop = f.serveDynamic
	case f.spec.Proto == spec.UDP:
		loop = f.serveLocalUDP
	default:
		loop = f.serveLocal
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		loop()
	}()
}

// flag is the forward as a command line gives it: "-L 8080:db:5432".
func (f *Forwarding) flag() string {
	switch f.spec.Kind {
	case spec.Local:
		return "-L " + f.spec.String()
	case spec.Remote:
		return "-R " + f.spec.String()
	}
	return "-D " + f.spec.String()
}

// Spec is the forward as it was asked for.
func (f *Forwarding) Spec() spec.Forward { return f.spec }

// Addr is the address the forward listens on: for -L and -D the local one
// actually bound (the port chosen for port 0), for -R the server's, with
// the port the server bound; the zero AddrPort while a -R is not in place
// or once closed. A -R bound by name ("localhost", the default) gives
// 127.0.0.1, "*" or an empty host the unspecified address, and another
// name (the server resolves it) the unspecified address too.
func (f *Forwarding) Addr() netip.AddrPort {
	if f.spec.Kind != spec.Remote {
		if a := f.netAddr(); a != nil {
			if ap, err := netip.ParseAddrPort(a.String()); err == nil {
				return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
			}
		}
		return netip.AddrPort{}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.inPlace() {
		return netip.AddrPort{}
	}
	switch a, err := netip.ParseAddr(f.bindHost); {
	case err == nil:
		return netip.AddrPortFrom(a, uint16(f.bound))
	case f.bindHost == "localhost":
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(f.bound))
	}
	return netip.AddrPortFrom(netip.IPv4Unspecified(), uint16(f.bound))
}

// URL is the public URL pinhole server serves a -R forward at, when the
// forward asked for a name (-R myapp:80:... to a server with --domain,
// docs/names.md); "" otherwise, or while the forward is not in place.
func (f *Forwarding) URL() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.inPlace() {
		return ""
	}
	return f.url
}

// netAddr is a local forward's bound address, nil for -R or once closed.
func (f *Forwarding) netAddr() net.Addr {
	switch {
	case f.ln != nil:
		return f.ln.Addr()
	case f.pc != nil:
		return f.pc.LocalAddr()
	}
	return nil
}

// remoteAddr is where the server listens for a -R: host:port as asked,
// with the bound port; "" when it does not.
func (f *Forwarding) remoteAddr() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.inPlace() {
		return ""
	}
	return net.JoinHostPort(f.bindHost, fmt.Sprint(f.bound))
}

// State is where the forward is (the diagram on State).
func (f *Forwarding) State() State {
	cs := f.c.State()
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case f.closed || cs == StateClosed:
		return StateClosed
	case f.draining || cs == StateDraining:
		return StateDraining
	case f.spec.Kind == spec.Remote && cs == StateUp && !f.inPlace():
		return StateConnecting
	}
	return cs
}

// inPlace reports whether the server listens for a -R now: it took the
// forward on a connection that is still up. f.mu is held.
func (f *Forwarding) inPlace() bool {
	return !f.closed && f.bound != 0 && f.asked != nil && f.asked.ctx.Err() == nil
}

// Err is why the forward is closed, when the client closed it (ErrNoUDP),
// or why the server last refused a -R; nil otherwise.
func (f *Forwarding) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// Stats are the forward's figures since Forward.
func (f *Forwarding) Stats() Stats { return f.meter.stats() }

// Close ends the forward alone, at once: a local listener closes, the
// server is told to stop listening for a -R (cancel-tcpip-forward), and
// the forward's open streams close. The client and its other forwards go
// on. Close is idempotent.
func (f *Forwarding) Close() error {
	f.close(nil)
	c := f.c
	c.mu.Lock()
	if i := slices.Index(c.forwards, f); i >= 0 {
		c.forwards = slices.Delete(c.forwards, i, i+1)
		c.retired = c.retired.Add(f.meter.stats())
	}
	c.mu.Unlock()
	return nil
}

// Shutdown ends the forward alone, gracefully: it stops taking new
// connections as Close does, lets the open TCP streams finish until ctx
// ends, then closes. It returns ctx's error if streams were still open.
func (f *Forwarding) Shutdown(ctx context.Context) error {
	f.stopAccepting()
	err := drain(ctx, f.meter.streams.Load)
	f.Close()
	return err
}

// stopAccepting closes what takes new connections and leaves the streams.
func (f *Forwarding) stopAccepting() {
	f.mu.Lock()
	if f.closed || f.draining {
		f.mu.Unlock()
		return
	}
	f.draining = true
	f.since = time.Now()
	l := f.asked
	f.mu.Unlock()
	if f.ln != nil {
		f.ln.Close()
	}
	if f.pc != nil {
		f.pc.Close() // UDP flows have no end of their own to wait for
	}
	if f.spec.Kind == spec.Remote && l != nil {
		f.cancelRemote(l)
	}
}

// close closes the forward, for err if not nil, and waits for its
// goroutines.
func (f *Forwarding) close(err error) {
	f.stopAccepting()
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		f.wg.Wait()
		return
	}
	f.closed = true
	f.since = time.Now()
	if err != nil {
		f.err = err
	}
	f.mu.Unlock()
	f.cancel()
	if f.proxy != nil {
		f.proxy.Close()
	}
	f.wg.Wait()
}

// refused counts a stream of the forward that could not be opened, and
// returns err in the words the SOCKS server answers by.
func (f *Forwarding) refused(err error) error {
	f.refuse(openReason(err), nil, err)
	if errors.Is(err, ErrProhibited) {
		return fmt.Errorf("%w: %w", socks.ErrNotAllowed, err)
	}
	return err
}
