package tunnel

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/pinhole-dev/pinhole/internal/ssh"
)

// session answers "ssh host" without -N: a short text, no shell. The
// channel stays open (input discarded) until the client leaves, so its
// forwards go on working, as on tunnel services that print a banner.
func (sc *serverConn) session(ctx context.Context, nc ssh.NewChannel) {
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	go io.Copy(io.Discard, ch)
	for {
		select {
		case <-ctx.Done():
			return
		case req, ok := <-reqs:
			if !ok {
				return
			}
			switch req.Type {
			case "shell":
				req.Reply(true, nil)
				io.WriteString(ch, sc.banner())
			case "exec", "subsystem":
				io.WriteString(ch.Stderr(), "pinhole: this server only forwards ports; it runs no commands, sftp or scp.\r\n")
				req.Reply(false, nil)
			default:
				// pty-req, env, x11-req, auth-agent-req: nothing here to give.
				if req.WantReply {
					req.Reply(false, nil)
				}
			}
		}
	}
}

func (sc *serverConn) banner() string {
	var b strings.Builder
	b.WriteString("pinhole: this server only forwards ports; there is no shell here.\r\n")
	sc.mu.Lock()
	for _, rl := range sc.forwards {
		fmt.Fprintf(&b, "pinhole: forwarding %s on this server to you\r\n", rl.ln.Addr())
	}
	for _, ul := range sc.udpForwards {
		fmt.Fprintf(&b, "pinhole: forwarding %s/udp on this server to you\r\n", ul.pc.LocalAddr())
	}
	sc.mu.Unlock()
	b.WriteString("pinhole: the connection stays open while your forwards work; press Ctrl-C (or ~.) to leave. Use ssh -N next time.\r\n")
	return b.String()
}
