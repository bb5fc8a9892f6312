package portmap

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"
)

// errNotOurs, from exchange's parse, marks an answer to another request.
var errNotOurs = errors.New("portmap: not an answer to this request")

// exchange sends req to the gateway's PCP / NAT-PMP port and returns the
// first answer parse accepts: parse returns the answer and its epoch,
// errNotOurs for one to wait past, or another error to stop with. It
// retransmits as RFC 6886 section 3.1 and RFC 6887 section 8.1.1 say,
// starting at 250 ms and doubling, until ctx ends. Answers from any other
// address are never seen: the socket is connected to the gateway. The
// epoch of the answer goes to e, which logs a gateway restart.
func exchange[R any](c *Client, ctx context.Context, gw gateway, req []byte, e *epochs, method Method, parse func([]byte) (R, uint32, error)) (R, error) {
	var zero R
	raddr := netip.AddrPortFrom(gw.addr, c.cfg.PMPPort)
	conn, err := net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(gw.local, 0)), net.UDPAddrFromAddrPort(raddr))
	if err != nil {
		return zero, fmt.Errorf("portmap: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Now()) })
	defer stop()

	buf := make([]byte, 1100) // PCP's largest message (RFC 6887 section 7)
	wait := 250 * time.Millisecond
	for {
		if _, err := conn.Write(req); err != nil {
			return zero, noAnswer(raddr, err)
		}
		conn.SetReadDeadline(time.Now().Add(wait))
		if ctx.Err() != nil {
			return zero, noAnswer(raddr, ctx.Err())
		}
		for {
			n, err := conn.Read(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break
				}
				return zero, noAnswer(raddr, err)
			}
			r, epoch, err := parse(buf[:n])
			if err == errNotOurs {
				continue
			}
			if err != nil {
				return zero, err
			}
			if e.observe(epoch, time.Now()) {
				c.log.Warn("portmap: the gateway restarted and lost its mappings (its epoch went back); mapping again", "method", method, "epoch", epoch)
			}
			return r, nil
		}
		if err := ctx.Err(); err != nil {
			return zero, noAnswer(raddr, err)
		}
		wait *= 2
	}
}

// noAnswer explains why the gateway said nothing.
func noAnswer(raddr netip.AddrPort, err error) error {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%w: nothing listens on %s (port unreachable)", ErrNoAnswer, raddr)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w from %s in time", ErrNoAnswer, raddr)
	case errors.Is(err, context.Canceled):
		return err
	}
	return fmt.Errorf("%w from %s: %v", ErrNoAnswer, raddr, err)
}

// epochs watches the gateway's epoch (seconds since its mapping state
// began) as RFC 6887 section 8.5 and RFC 6886 section 3.6 describe: when
// it moves less than the time that passed here, the gateway lost its
// mappings (a reboot) and every mapping must be made again.
type epochs struct {
	mu    sync.Mutex
	valid bool
	epoch uint32
	at    time.Time
}

// observe records epoch seen at now and reports whether the gateway lost
// its state since the previous observation.
func (e *epochs) observe(epoch uint32, now time.Time) (lost bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.valid {
		client := now.Sub(e.at).Seconds()
		server := float64(epoch) - float64(e.epoch)
		switch {
		case epoch+1 < e.epoch: // went backwards by more than a second
			lost = true
		case client+2 < server-server/16:
			lost = true
		case server+2 < client-client/16:
			lost = true
		}
	}
	e.valid, e.epoch, e.at = true, epoch, now
	return lost
}

// lifetimeSeconds converts a lifetime to whole seconds for the wire,
// rounding up and capping at the field's largest value.
func lifetimeSeconds(d time.Duration) uint32 {
	s := (d + time.Second - 1) / time.Second
	if s > 1<<32-1 {
		return 1<<32 - 1
	}
	return uint32(s)
}
