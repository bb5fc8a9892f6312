package tunnel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"time"

	"github.com/pinhole-dev/pinhole/internal/ssh"

	"github.com/pinhole-dev/pinhole/internal/observe"
	"github.com/pinhole-dev/pinhole/internal/spec"
)

// Remote forwards (-R): the server listens, and opens a forwarded-tcpip
// (or forwarded-udp@pinhole) channel back for each connection or flow,
// which the client connects to the target.

// remoteBindHost is what a tcpip-forward asks for, as OpenSSH's ssh sends
// it: "localhost" when no bind address was given, "" for "*".
func remoteBindHost(f spec.Forward) string {
	switch f.BindHost {
	case "":
		return "localhost"
	case "*":
		return ""
	}
	return f.BindHost
}

// remoteKey is what a forwarded channel names its forward by: the protocol
// and the port the server listens on.
type remoteKey struct {
	proto spec.Proto
	port  uint32
}

// request asks l's server for the -R forward, once per connection, waiting
// for the answer while ctx allows. A refusal is kept as the forward's Err
// and asked again with backoff while l lives: right after a reconnect the
// server may not yet have noticed that our old connection is gone.
func (f *Forwarding) request(ctx context.Context, l *link) {
	f.mu.Lock()
	if f.asked == l || f.closed || f.draining {
		f.mu.Unlock()
		return
	}
	f.asked, f.bound = l, 0
	f.mu.Unlock()
	if f.spec.Proto == spec.UDP && !l.caps.udp {
		return // connected closes it
	}
	err := f.ask(ctx, l)
	if err == nil {
		return
	}
	var fe *ForwardError
	if !errors.As(err, &fe) {
		f.c.log.Warn("remote forward not in place; asking again on the next connection", "forward", f.flag(), "err", err)
		return
	}
	f.c.cfg.Events.Add(observe.Event{Reason: observe.RefusedRemote, Tunnel: f.c.cfg.Name, Forward: f.label, Detail: fe.Reason})
	f.c.log.Warn("remote forward refused; asking again while connected", "forward", f.flag(), "reason", observe.RefusedRemote, "err", err)
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		f.retry(l)
	}()
}

// ask sends one tcpip-forward (or udp-forward@pinhole) and, when the
// server takes it, enters the forward in l's table.
func (f *Forwarding) ask(ctx context.Context, l *link) error {
	host := remoteBindHost(f.spec)
	req := reqTCPIPForward
	if f.spec.Proto == spec.UDP {
		req = reqUDPForward
	}
	res := make(chan requestReply, 1)
	go func() {
		ok, p, err := l.SendRequest(req, true, ssh.Marshal(forwardRequest{BindHost: host, BindPort: uint32(f.spec.BindPort)}))
		res <- requestReply{ok, p, err}
	}()
	var r requestReply
	select {
	case r = <-res:
	case <-ctx.Done():
		// The answer still comes, and is still used: only this wait ends.
		go func() { f.settle(l, host, <-res) }()
		return fmt.Errorf("tunnel: %s: %w", f.flag(), ctx.Err())
	case <-f.ctx.Done():
		return fmt.Errorf("tunnel: %s: %w", f.flag(), net.ErrClosed)
	}
	return f.settle(l, host, r)
}

// requestReply is what SendRequest returned.
type requestReply struct {
	ok      bool
	payload []byte
	err     error
}

// settle records the server's answer to a forward request.
func (f *Forwarding) settle(l *link, host string, r requestReply) error {
	if r.err != nil {
		return fmt.Errorf("tunnel: %s: %w", f.flag(), r.err)
	}
	if !r.ok {
		err := &ForwardError{Spec: f.spec.String(), Reason: string(r.payload)}
		f.mu.Lock()
		f.err = err
		f.mu.Unlock()
		return err
	}
	port := uint32(f.spec.BindPort)
	url := ""
	if port == 0 {
		var fr forwardReply
		if err := ssh.Unmarshal(r.payload, &fr); err != nil {
			return fmt.Errorf("tunnel: %s: the server's reply has no port: %w", f.flag(), err)
		}
		port = fr.Port
	} else if len(r.payload) > 0 {
		// pinhole server gave the forward a public name (docs/names.md).
		var u forwardURLReply
		if ssh.Unmarshal(r.payload, &u) == nil {
			url = u.URL
		}
	}
	f.mu.Lock()
	if f.closed || f.draining || f.asked != l {
		f.mu.Unlock()
		l.cancelForward(f.spec.Proto, host, port)
		return net.ErrClosed
	}
	f.bound, f.bindHost, f.url, f.err = port, host, url, nil
	f.since = time.Now()
	f.mu.Unlock()
	l.mu.Lock()
	k := remoteKey{f.spec.Proto, port}
	l.remotes[k] = append(l.remotes[k], f)
	l.mu.Unlock()
	f.c.log.Info("remote forward listening", "forward", f.flag(), "laddr", f.remoteAddr(), "raddr", f.spec.Target())
	return nil
}

// retry asks for a refused forward again, with the client's backoff,
// until the server takes it or l or the forward ends.
func (f *Forwarding) retry(l *link) {
	delay := f.c.cfg.BackoffMin
	for {
		t := time.NewTimer(jitter(delay))
		select {
		case <-l.ctx.Done():
			t.Stop()
			return
		case <-f.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		err := f.ask(f.ctx, l)
		var fe *ForwardError
		if !errors.As(err, &fe) {
			return // taken, or the connection is gone: the reconnect asks again
		}
		f.c.log.Debug("remote forward still refused", "err", err)
		delay = min(2*delay, f.c.cfg.BackoffMax)
	}
}

// cancelRemote takes the forward out of l's table and tells the server to
// stop listening for it, without waiting for its answer.
func (f *Forwarding) cancelRemote(l *link) {
	f.mu.Lock()
	port, host := f.bound, f.bindHost
	f.bound = 0
	f.mu.Unlock()
	if port == 0 {
		return
	}
	l.mu.Lock()
	k := remoteKey{f.spec.Proto, port}
	l.remotes[k] = slices.DeleteFunc(l.remotes[k], func(g *Forwarding) bool { return g == f })
	if len(l.remotes[k]) == 0 {
		delete(l.remotes, k)
	}
	l.mu.Unlock()
	l.cancelForward(f.spec.Proto, host, port)
}

// cancelForward sends cancel-tcpip-forward (or cancel-udp-forward@pinhole)
// for host:port without waiting for the reply, nor for the write: on a
// connection that died silently it blocks until the connection is closed.
func (l *link) cancelForward(proto spec.Proto, host string, port uint32) {
	req := reqCancelForward
	if proto == spec.UDP {
		req = reqCancelUDP
	}
	go l.SendRequest(req, false, ssh.Marshal(forwardRequest{BindHost: host, BindPort: port}))
}

// lookup finds the forward for a forwarded channel: by port, and by host
// when several forwards share the port.
func (l *link) lookup(proto spec.Proto, host string, port uint32) *Forwarding {
	l.mu.Lock()
	defer l.mu.Unlock()
	fs := l.remotes[remoteKey{proto, port}]
	if len(fs) == 1 {
		return fs[0]
	}
	for _, f := range fs {
		if remoteBindHost(f.spec) == host {
			return f
		}
	}
	return nil
}

// serveForwarded connects each forwarded-tcpip (or forwarded-udp@pinhole)
// channel to its -R target, until the connection closes.
func (l *link) serveForwarded(in <-chan ssh.NewChannel, udp bool) {
	proto := spec.TCP
	if udp {
		proto = spec.UDP
	}
	for nc := range in {
		p, early, err := parseOpen(nc.ChannelType(), nc.ExtraData())
		if err != nil {
			nc.Reject(ssh.ConnectionFailed, "malformed "+nc.ChannelType()+" request")
			continue
		}
		f := l.lookup(proto, p.Host, p.Port)
		if f == nil || !f.adopt() {
			nc.Reject(ssh.Prohibited, "no remote forward for "+p.target())
			continue
		}
		go func() {
			defer f.wg.Done()
			f.forwardIn(l, nc, p, early)
		}()
	}
}

// adopt counts one more goroutine of the forward, unless it is closing.
func (f *Forwarding) adopt() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed || f.draining {
		return false
	}
	f.wg.Add(1)
	return true
}

// origin is where a forwarded channel's connection came from, as text
// when asked for.
type origin channelOpen

func (o origin) String() string { return channelOpen(o).origin() }

func (f *Forwarding) forwardIn(l *link, nc ssh.NewChannel, p channelOpen, early []byte) {
	c := f.c
	target := f.spec.Target()
	ctx, cancel := context.WithTimeout(f.ctx, 10*time.Second)
	d := net.Dialer{KeepAliveConfig: streamKeepAlive}
	conn, err := d.DialContext(ctx, f.spec.Proto.String(), target)
	cancel()
	if err == nil {
		if err = writeEarly(conn, target, early); err != nil {
			conn.Close()
		}
	}
	if err != nil {
		f.refuse(observe.RefusedConnectFailed, origin(p), err)
		c.log.Info("remote forward: cannot reach target", "forward", f.flag(), "raddr", target, "peer", p.origin(), "reason", observe.RefusedConnectFailed, "err", err)
		nc.Reject(ssh.ConnectionFailed, dialReason(err))
		return
	}
	if c.log.Enabled(f.ctx, slog.LevelDebug) { // p.origin() allocates even when discarded
		c.log.Debug("forwarded channel", "type", nc.ChannelType(), "raddr", target, "origin", p.origin())
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		conn.Close()
		return
	}
	ignoreRequests(reqs)
	f.meter.toTarget.Add(int64(len(early)))
	if f.spec.Proto == spec.UDP {
		stop := context.AfterFunc(l.ctx, func() { conn.Close() })
		defer stop()
		stopF := context.AfterFunc(f.ctx, func() { conn.Close() })
		defer stopF()
		pipeDatagrams(newDatagramConn(ch, conn.LocalAddr(), conn.RemoteAddr()).counted(&f.meter, false), conn)
		return
	}
	pipe(l.ctx, f.ctx, &f.wg, &f.meter, true, conn, ch)
}
