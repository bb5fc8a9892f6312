package tunnel

import (
	"context"
	"log/slog"
	"time"

	"github.com/pinhole-dev/pinhole/internal/ssh"
)

// keepalive sends keepalive@openssh.com every interval and closes conn when
// count intervals in a row pass without a reply, as OpenSSH's
// ServerAliveInterval/ServerAliveCountMax (and sshd's ClientAlive*) do. Any
// reply counts, success or failure: OpenSSH answers failure. It returns when
// ctx ends or it closed conn.
func keepalive(ctx context.Context, conn ssh.Conn, interval time.Duration, count int, log *slog.Logger) {
	if interval <= 0 {
		return
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	replied := make(chan struct{}, 1)
	inflight, missed := false, 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-replied:
			inflight, missed = false, 0
		case <-tick.C:
			if inflight {
				missed++
				if missed >= count {
					log.Warn("peer stopped answering keepalives; closing the connection", "missed", missed, "interval", interval)
					conn.Close()
					return
				}
				continue
			}
			inflight = true
			go func() {
				if _, _, err := conn.SendRequest(reqKeepalive, true, nil); err == nil {
					replied <- struct{}{}
				}
			}()
		}
	}
}
