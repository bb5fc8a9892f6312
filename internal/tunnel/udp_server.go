package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pinhole-dev/pinhole/internal/ssh"

	"github.com/pinhole-dev/pinhole/internal/observe"
	"github.com/pinhole-dev/pinhole/internal/relay"
)

// directUDP serves a direct-udp@pinhole channel (-L .../udp and SOCKS5 UDP
// ASSOCIATE): check permitopen, open a connected UDP socket to the target,
// relay datagrams.
func (sc *serverConn) directUDP(ctx context.Context, nc ssh.NewChannel, done func()) {
	defer done()
	ch, udp, _, ok := sc.openTarget(ctx, nc, "udp")
	if !ok {
		return
	}
	stop := context.AfterFunc(ctx, func() { ch.Close() })
	defer stop()
	pipeDatagrams(newDatagramConn(ch, udp.LocalAddr(), udp.RemoteAddr()).counted(&sc.meter, false), udp)
}

// udpListener is one udp-forward@pinhole: a UDP socket on the server whose
// flows come back to the client as forwarded-udp@pinhole channels.
type udpListener struct {
	sc     *serverConn
	pc     *net.UDPConn
	key    boundKey // bound address, the key of Server.bound
	req    forwardRequest
	since  time.Time
	cancel context.CancelFunc
	fwd    *relay.UDPForwarder
	once   sync.Once

	lastRefusal atomic.Int64 // when refused last recorded one, in Unix ns
}

func (ul *udpListener) where() string { return ul.key.addr + "/udp" }

// refused records a datagram that allow= turned away: in the events at
// most once a second, since a flood of them costs the sender nothing.
func (ul *udpListener) refused(src netip.AddrPort) {
	now := time.Now().UnixNano()
	last := ul.lastRefusal.Load()
	if now-last < int64(time.Second) || !ul.lastRefusal.CompareAndSwap(last, now) {
		return
	}
	ul.sc.event(observe.RefusedTunnelOptions, ul.where(), src, errNotAllowed)
}

func (ul *udpListener) close() {
	ul.once.Do(func() {
		ul.cancel()
		ul.pc.Close()
		ul.sc.srv.unregister(ul.key, ul.sc)
		ul.sc.keys.endPort()
	})
}

// listenUDP serves a udp-forward@pinhole request like listen serves
// tcpip-forward, and returns the port to report for port 0.
func (sc *serverConn) listenUDP(payload []byte) (uint32, error) {
	var fr forwardRequest
	if err := ssh.Unmarshal(payload, &fr); err != nil {
		return 0, because(observe.RefusedMalformed, fmt.Errorf("malformed %s request: %w", reqUDPForward, err))
	}
	if fr.BindPort > 65535 {
		return 0, because(observe.RefusedMalformed, fmt.Errorf("port %d is out of range", fr.BindPort))
	}
	where := net.JoinHostPort(fr.BindHost, strconv.Itoa(int(fr.BindPort)))
	if sc.opts == nil || !sc.opts.AllowListen(fr.BindHost, int(fr.BindPort)) {
		return 0, because(observe.RefusedPermitListen, fmt.Errorf("listening on %s/udp is not allowed for this key (permitlisten or no-port-forwarding in authorized_keys)", where))
	}
	if sc.srv.stopped() {
		return 0, because(observe.RefusedShuttingDown, errors.New(errShuttingDown))
	}
	addr := net.JoinHostPort(sc.srv.bindHost(fr.BindHost), strconv.Itoa(int(fr.BindPort)))
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return 0, fmt.Errorf("cannot listen on %s/udp: %w", addr, err)
	}
	var pc *net.UDPConn
	err = sc.bindOrTakeOver(true, addr+"/udp", int(fr.BindPort), func() (err error) {
		pc, err = net.ListenUDP("udp", ua)
		return err
	})
	if err != nil {
		return 0, err
	}
	bound := pc.LocalAddr().(*net.UDPAddr)
	if err := sc.keys.holdPort(); err != nil { // once bound, as listen's
		pc.Close()
		sc.keys.refused(sc.log, err, reqUDPForward+" "+bound.String())
		return 0, err
	}
	ctx, cancel := context.WithCancel(sc.srv.ctx)
	ul := &udpListener{sc: sc, pc: pc, req: fr, since: time.Now(), key: boundKey{udp: true, addr: bound.String()}, cancel: cancel}
	ul.fwd = &relay.UDPForwarder{
		IdleTimeout: sc.srv.cfg.UDPIdleTimeout,
		MaxFlows:    sc.srv.cfg.UDPMaxFlows,
		Logger:      sc.log,
		Admit: func(src netip.AddrPort) bool {
			if !sc.refusesNow(src.Addr()) {
				return true
			}
			ul.refused(src)
			return false
		},
		Dial: func(ctx context.Context, src netip.AddrPort) (net.Conn, error) {
			// A new flow, as a TCP port's new connection: allow= first, so
			// that a source it turns away takes none of the key's streams.
			// (Once the options are settled, Admit drops such a source's
			// datagrams before they come here.)
			if _, err := sc.admit(ctx, src.Addr()); err != nil {
				sc.refuse(observe.RefusedTunnelOptions, ul.where(), src, err)
				return nil, err
			}
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if err := sc.keys.openStream(); err != nil {
				sc.refuse(limitReason(err), ul.where(), src, err)
				sc.keys.refused(sc.log, err, chanForwardedUDP+" "+ul.where())
				return nil, err
			}
			p := channelOpen{Host: fr.BindHost, Port: uint32(bound.Port), OriginHost: src.Addr().Unmap().String(), OriginPort: uint32(src.Port())}
			ch, reqs, err := sc.conn.OpenChannel(chanForwardedUDP, ssh.Marshal(p))
			if err != nil {
				sc.keys.endStream()
				sc.refuse(observe.RefusedByClient, ul.where(), src, err)
				return nil, err
			}
			ignoreRequests(reqs)
			dc := newDatagramConn(ch, bound, net.UDPAddrFromAddrPort(src)).counted(&sc.meter, true)
			meterEnd := dc.end
			dc.end = func() { meterEnd(); sc.keys.endStream() }
			return dc, nil
		},
	}
	key := fr
	if fr.BindPort == 0 {
		key.BindPort = uint32(bound.Port)
	}
	sc.srv.mu.Lock()
	sc.mu.Lock()
	if sc.srv.state != serverServing || sc.forwards == nil {
		sc.mu.Unlock()
		sc.srv.mu.Unlock()
		ul.close()
		return 0, because(observe.RefusedShuttingDown, errors.New(errShuttingDown))
	}
	sc.srv.register(ul.key, sc)
	sc.udpForwards[key] = ul
	sc.mu.Unlock()
	sc.srv.mu.Unlock()
	sc.log.Info("remote udp forward listening", "laddr", bound.String(), "requested", where)
	sc.wg.Add(1)
	go func() {
		defer sc.wg.Done()
		defer sc.srv.ev.udp.track(ul.fwd)()
		ul.fwd.Serve(ctx, pc)
	}()
	if fr.BindPort == 0 {
		return uint32(bound.Port), nil
	}
	return 0, nil
}
