package tunnel

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/pinhole-dev/pinhole/internal/auth"
	"github.com/pinhole-dev/pinhole/internal/ssh"
)

// refusedCommand is what a session asking for a command or a subsystem
// reads on its stderr before its exit status 1.
const refusedCommand = "pinhole: this server only forwards ports; it runs no commands, sftp or scp. Use ssh -N for forwards.\r\n"

// session answers "ssh host" without -N: a short text, no shell. The
// channel stays open (input discarded) until the client leaves, so its
// forwards go on working, as on tunnel services that print a banner.
//
// A pty-req is accepted (no terminal exists here; "ssh -tt" and an
// interactive ssh, which ask for one, get the text), and once one was, a
// Ctrl-C or Ctrl-D typed ends the session with exit status 0: with a pty
// ssh sends those keys instead of acting on them. exec's command is
// tunnel option words (topts.go): taken, they are printed back (no
// password) with the text, and the session stays as for a shell.
// Refused words and subsystem (sftp, scp) are accepted too, so that ssh
// shows the reason, which it drops when the request is refused: the
// reason goes to stderr, then exit status 1, and the channel closes.
func (sc *serverConn) session(ctx context.Context, nc ssh.NewChannel, done func()) {
	defer done()
	ch, reqs, err := nc.Accept()
	if err != nil {
		sc.sessionDone()
		return
	}
	defer ch.Close()
	asked := false // exec or shell: sessionDone, else when the channel ends
	defer func() {
		if !asked {
			sc.sessionDone()
		}
	}()
	keys := make(chan byte, 1) // Ctrl-C or Ctrl-D, once a pty was granted
	pty := make(chan struct{}) // closed when a pty-req is granted
	go readKeys(ch, pty, keys)
	granted := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-keys:
			exitStatus(ch, 0)
			return
		case req, ok := <-reqs:
			if !ok {
				return
			}
			switch req.Type {
			case "pty-req":
				req.Reply(true, nil)
				if !granted {
					granted = true
					close(pty)
				}
			case "shell":
				req.Reply(true, nil)
				ch.Write([]byte(sc.banner()))
				if !asked {
					asked = true
					sc.sessionDone()
				}
			case "exec":
				// The command is option words (topts.go).
				req.Reply(true, nil)
				cmd, _ := execCommand(req.Payload)
				words, err := sc.execOptions(cmd)
				if !asked {
					asked = true
					sc.sessionDone()
				}
				if err != nil {
					fmt.Fprintf(ch.Stderr(), "%spinhole: the command line may hold only tunnel options (%s): %v\r\n", refusedCommand, auth.TunnelOptionWords, err)
					exitStatus(ch, 1)
					return
				}
				if words != "" {
					fmt.Fprintf(ch, "pinhole: tunnel options: %s\r\n", words)
				}
				ch.Write([]byte(sc.banner()))
			case "subsystem":
				req.Reply(true, nil)
				ch.Stderr().Write([]byte(refusedCommand))
				exitStatus(ch, 1)
				return
			default:
				// env, x11-req, auth-agent-req, window-change: nothing
				// here to give.
				if req.WantReply {
					req.Reply(false, nil)
				}
			}
		}
	}
}

// readKeys discards what the client types, except that once pty is closed
// a Ctrl-C (0x03) or Ctrl-D (0x04) is sent on keys. It returns when ch's
// input ends.
func readKeys(ch ssh.Channel, pty <-chan struct{}, keys chan<- byte) {
	buf := make([]byte, 512)
	for {
		n, err := ch.Read(buf)
		select {
		case <-pty:
			if i := bytes.IndexAny(buf[:n], "\x03\x04"); i >= 0 {
				select {
				case keys <- buf[i]:
				default:
				}
			}
		default:
		}
		if err != nil {
			return
		}
	}
}

// exitStatus sends the exit-status request (RFC 4254, 6.10), then EOF.
func exitStatus(ch ssh.Channel, status uint32) {
	ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{status}))
	ch.CloseWrite()
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
