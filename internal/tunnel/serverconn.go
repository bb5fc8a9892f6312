package tunnel

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pinhole-dev/pinhole/internal/ssh"

	"github.com/pinhole-dev/pinhole/internal/auth"
	"github.com/pinhole-dev/pinhole/internal/observe"
)

// serverConn is one authenticated client connection.
type serverConn struct {
	srv   *Server
	ctx   context.Context // ends with the connection
	conn  *ssh.ServerConn
	opts  *auth.Options
	key   string      // the SHA256 fingerprint of the key it logged in with
	keys  *keyState   // what that key holds, across its connections (keylimits.go)
	caps  peerCaps    // what the client speaks beyond RFC 4254
	early atomic.Bool // the client takes forwarded-tcpip-early@pinhole (early.go)
	topts topts       // per-tunnel options (topts.go)
	log   *slog.Logger
	// activity counts reads from the client, for keepalive.
	activity func() uint64
	// meter counts its streams (a Server's figures are its
	// connections' sums); since is when it authenticated.
	meter meter
	since time.Time

	mu          sync.Mutex
	forwards    map[forwardRequest]*remoteListener // keyed as the client asked, port 0 by the bound port; nil once closing
	udpForwards map[forwardRequest]*udpListener
	wg          sync.WaitGroup
}

// errShuttingDown is the reason a draining server gives for what it no
// longer opens.
const errShuttingDown = "pinhole server is shutting down; connect again in a moment"

func (sc *serverConn) serve(chans <-chan ssh.NewChannel, reqs <-chan *ssh.Request) {
	ctx, cancel := context.WithCancel(sc.srv.ctx)
	sc.ctx = ctx
	sc.wg.Add(2)
	go func() {
		defer sc.wg.Done()
		keepalive(ctx, sc.conn, sc.srv.cfg.KeepaliveInterval, sc.srv.cfg.KeepaliveCountMax, sc.activity, sc.log, &sc.srv.ev.keepalive)
	}()
	go func() {
		defer sc.wg.Done()
		for req := range reqs {
			sc.globalRequest(req)
		}
	}()
	for nc := range chans {
		// Each serve calls done once when the channel ends (or is
		// refused): the key's stream ends then.
		var serve func(ctx context.Context, nc ssh.NewChannel, done func())
		switch nc.ChannelType() {
		case chanDirectTCPIP, chanDirectTCPIPEarly:
			serve = sc.direct
		case chanDirectUDP:
			serve = sc.directUDP
		case chanSession:
			serve = sc.session
			sc.sessionOpened()
		default:
			nc.Reject(ssh.UnknownChannelType, "pinhole only forwards ports: channel type "+strconv.Quote(nc.ChannelType())+" is not served")
			continue
		}
		if nc.ChannelType() != chanSession && sc.srv.stopped() {
			sc.refuse(observe.RefusedShuttingDown, nc.ChannelType(), nil, nil)
			nc.Reject(ssh.ConnectionFailed, errShuttingDown)
			continue
		}
		if err := sc.keys.openStream(); err != nil {
			// Refused here, before a goroutine or a dial: a key
			// hammering at its limit costs the server little, and its
			// other streams go on.
			sc.refuse(limitReason(err), nc.ChannelType(), nil, err)
			nc.Reject(ssh.ResourceShortage, err.Error())
			sc.keys.refused(sc.log, err, nc.ChannelType())
			if nc.ChannelType() == chanSession {
				sc.sessionDone() // no words will come through it
			}
			continue
		}
		sc.wg.Add(1)
		go func() {
			defer sc.wg.Done()
			serve(ctx, nc, sc.keys.endStream)
		}()
	}
	// The connection is gone: stop its forwards and wait for its streams.
	cancel()
	sc.close()
	sc.wg.Wait()
}

// close ends the connection and its remote forwards at once, so their
// ports are free when it returns. It is idempotent.
func (sc *serverConn) close() {
	sc.conn.Close()
	sc.mu.Lock()
	defer sc.mu.Unlock()
	for _, rl := range sc.forwards {
		rl.close()
	}
	for _, ul := range sc.udpForwards {
		ul.close()
	}
	sc.forwards = nil // listen refuses from now on
}

// stopListening closes the connection's remote-forward listeners and leaves
// its streams open: what a draining server does.
func (sc *serverConn) stopListening() {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	for _, rl := range sc.forwards {
		rl.close()
	}
	for _, ul := range sc.udpForwards {
		ul.close()
	}
}

func (sc *serverConn) globalRequest(req *ssh.Request) {
	switch req.Type {
	case reqTCPIPForward, reqUDPForward:
		listen := sc.listen
		if req.Type == reqUDPForward {
			listen = func(p []byte) (uint32, string, error) {
				port, err := sc.listenUDP(p)
				return port, "", err
			}
		}
		port, url, err := listen(req.Payload)
		if err != nil {
			sc.refuseForward(err, req.Payload)
			sc.log.Info("remote forward refused", "reason", reasonOf(err), "err", err)
			var reason []byte
			if sc.caps.reasons {
				reason = []byte(err.Error())
			}
			req.Reply(false, reason)
			return
		}
		var reply []byte
		switch {
		case port != 0:
			reply = ssh.Marshal(forwardReply{Port: port})
		case url != "" && sc.caps.reasons:
			// A pinhole client reads its name's URL here; a stock ssh
			// gets no payload, as RFC 4254 has it for a given port.
			reply = ssh.Marshal(forwardURLReply{URL: url})
		}
		req.Reply(true, reply)
	case reqCancelForward, reqCancelUDP:
		req.Reply(sc.cancel(req.Type == reqCancelUDP, req.Payload), nil)
	case reqNoMoreSessions:
		sc.noMoreSessions()
		if req.WantReply {
			req.Reply(true, nil)
		}
	case reqKeepalive:
		// OpenSSH answers failure to requests it does not serve; any answer
		// tells the client we are alive.
		req.Reply(false, nil)
	default:
		if req.WantReply {
			req.Reply(false, nil)
		}
	}
}

// cancel ends the remote forward (UDP for udp) that a cancel request's
// payload names, reporting false when there is none.
func (sc *serverConn) cancel(udp bool, payload []byte) bool {
	var fr forwardRequest
	if err := ssh.Unmarshal(payload, &fr); err != nil {
		return false
	}
	var l interface {
		close()
		where() string
	}
	sc.mu.Lock()
	if ul := sc.udpForwards[fr]; udp && ul != nil {
		l = ul
		delete(sc.udpForwards, fr)
	} else if rl := sc.forwards[fr]; !udp && rl != nil {
		l = rl
		delete(sc.forwards, fr)
	}
	sc.mu.Unlock()
	if l == nil {
		return false
	}
	l.close()
	sc.log.Info("remote forward canceled", "laddr", l.where())
	return true
}

// open opens a stream channel to the client, for openEarly.
func (sc *serverConn) open(chanType string, _ channelOpen, payload []byte) (ssh.Channel, error) {
	ch, reqs, err := sc.conn.OpenChannel(chanType, payload)
	if err != nil {
		return nil, err
	}
	ignoreRequests(reqs)
	return ch, nil
}

// direct serves a direct-tcpip channel (ssh -L, ssh -D): check
// permitopen, dial, then relay.
func (sc *serverConn) direct(ctx context.Context, nc ssh.NewChannel, done func()) {
	ch, c, _, ok := sc.openTarget(ctx, nc, "tcp")
	if !ok {
		done()
		return
	}
	pipeThen(ctx, nil, &sc.wg, &sc.meter, true, c, ch, done)
}

// openTarget serves the common part of direct-tcpip and
// direct-udp@pinhole: parse the payload, check permitopen, dial the target
// over network and accept the channel, or reject it with OpenSSH's reason
// codes. ok is false when the channel was rejected.
func (sc *serverConn) openTarget(ctx context.Context, nc ssh.NewChannel, network string) (ch ssh.Channel, c net.Conn, target string, ok bool) {
	p, early, err := parseOpen(nc.ChannelType(), nc.ExtraData())
	if err != nil {
		sc.refuse(observe.RefusedMalformed, nc.ChannelType(), nil, err)
		nc.Reject(ssh.ConnectionFailed, "malformed "+nc.ChannelType()+" request")
		return nil, nil, "", false
	}
	target = p.target()
	if p.Port > 65535 || sc.opts == nil || !sc.opts.AllowOpen(p.Host, int(p.Port)) {
		sc.refuse(observe.RefusedPermitOpen, target+"/"+network, nil, nil)
		sc.log.Info("refused to open", "raddr", target, "proto", network, "reason", "permitopen")
		nc.Reject(ssh.Prohibited, "connecting to "+target+"/"+network+" is not allowed for this key (permitopen or no-port-forwarding in authorized_keys)")
		return nil, nil, "", false
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	c, err = sc.srv.cfg.Dial(dctx, network, target)
	cancel()
	if err != nil {
		sc.refuse(observe.RefusedConnectFailed, target+"/"+network, nil, err)
		sc.log.Info("connect failed", "raddr", target, "proto", network, "reason", observe.RefusedConnectFailed, "err", err)
		nc.Reject(ssh.ConnectionFailed, dialReason(err))
		return nil, nil, "", false
	}
	if err := writeEarly(c, target, early); err != nil {
		sc.refuse(observe.RefusedConnectFailed, target+"/"+network, nil, err)
		sc.log.Info("connect failed", "raddr", target, "proto", network, "reason", observe.RefusedConnectFailed, "err", err)
		nc.Reject(ssh.ConnectionFailed, err.Error())
		return nil, nil, "", false
	}
	ch, reqs, err := nc.Accept()
	if err != nil {
		c.Close()
		return nil, nil, "", false
	}
	ignoreRequests(reqs)
	sc.meter.toTarget.Add(int64(len(early)))
	if sc.log.Enabled(ctx, slog.LevelDebug) { // p.origin() allocates even when discarded
		sc.log.Debug("channel open", "type", nc.ChannelType(), "raddr", target, "origin", p.origin())
	}
	return ch, c, target, true
}
