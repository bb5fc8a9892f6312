package tunnel

import (
	"context"
	"log/slog"
	"time"

	"github.com/pinhole-dev/pinhole/internal/ssh"
)

// keepalive closes conn when the peer has stopped answering, as OpenSSH's
// ServerAliveInterval/ServerAliveCountMax (and sshd's ClientAlive*) do:
// every interval it sends keepalive@openssh.com, and count intervals in a
// row without a reply close the connection. Any reply counts, success or
// failure: OpenSSH answers failure. So does any data read from the peer
// (activity, a count of reads, may be nil): on a slow, lossy path the
// request and its reply queue behind bulk data for longer than the
// intervals allow while the peer is plainly alive, and an interval that
// saw data needs no request at all. It returns when ctx ends or it closed
// conn. ks, if not nil, counts the replies' round trips and the closes.
func keepalive(ctx context.Context, conn ssh.Conn, interval time.Duration, count int, activity func() uint64, log *slog.Logger, ks *keepaliveStats) {
	if interval <= 0 {
		return
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	replied := make(chan struct{}, 1)
	inflight, missed := false, 0
	var seen uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-replied:
			inflight, missed = false, 0
		case <-tick.C:
			if activity != nil {
				if now := activity(); now != seen {
					seen, missed = now, 0
					continue
				}
			}
			if inflight {
				missed++
				if missed >= count {
					ks.timedOut()
					log.Warn("peer stopped answering keepalives; closing the connection", "reason", "keepalive", "missed", missed, "interval", interval)
					conn.Close()
					return
				}
				continue
			}
			inflight = true
			go func() {
				sent := time.Now()
				if _, _, err := conn.SendRequest(reqKeepalive, true, nil); err == nil {
					ks.answered(time.Since(sent))
					replied <- struct{}{}
				}
			}()
		}
	}
}
