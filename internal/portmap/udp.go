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

// exchange sends req to the gateway's PCP / NAT-PMP port and returns the
// first answer for which match returns true. It retransmits as RFC 6886
// section 3.1 and RFC 6887 section 8.1.1 say, starting at 250 ms and
// doubling, until ctx ends. Answers from any other address are never
// seen: the socket is connected to the gateway.
func (c *Client) exchange(ctx context.Context, gw gateway, req []byte, match func([]byte) bool) ([]byte, error) {
	raddr := netip.AddrPortFrom(gw.addr, c.cfg.PMPPort)
	conn, err := net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(gw.local, 0)), net.UDPAddrFromAddrPort(raddr))
	if err != nil {
		return nil, fmt.Errorf("portmap: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Now()) })
	defer stop()

	buf := make([]byte, 1100) // PCP's largest message (RFC 6887 section 7)
	wait := 250 * time.Millisecond
	for {
		if _, err := conn.Write(req); err != nil {
			return nil, noAnswer(raddr, err)
		}
		next := time.Now().Add(wait)
		conn.SetReadDeadline(next)
		if ctx.Err() != nil {
			return nil, noAnswer(raddr, ctx.Err())
		}
		for {
			n, err := conn.Read(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break
				}
				return nil, noAnswer(raddr, err)
			}
			if match(buf[:n]) {
				return append([]byte(nil), buf[:n]...), nil
			}
		}
		if err := ctx.Err(); err != nil {
			return nil, noAnswer(raddr, err)
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

// observeEpoch records an answer's epoch and logs a gateway restart.
func (c *Client) observeEpoch(e *epochs, method Method, epoch uint32) {
	if e.observe(epoch, time.Now()) {
		c.log.Warn("portmap: the gateway restarted and lost its mappings (its epoch went back); mapping again", "method", method, "epoch", epoch)
	}
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
