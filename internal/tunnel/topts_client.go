package tunnel

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/pinhole-dev/pinhole/internal/ssh"
)

// sendOptions tells a pinhole server the connection's tunnel options
// before any forward is asked for (topts.go): the words as a session's
// command, whose answer is awaited, or, without words,
// no-more-sessions@openssh.com, so the server does not wait for a
// session. The session stays open with the connection. A server that is
// not pinhole gets nothing without words, and words are an error: a
// stock sshd would run them as a command.
func (c *Client) sendOptions(ctx context.Context, l *link) error {
	words := strings.TrimSpace(c.cfg.TunnelOptions)
	if !l.caps.reasons {
		if words != "" {
			return &FatalError{Err: fmt.Errorf("tunnel: %s is not pinhole server, so it takes no tunnel options (%s); drop them", c.cfg.Addr, words)}
		}
		return nil
	}
	if words == "" {
		_, _, err := l.SendRequest(reqNoMoreSessions, false, nil)
		return err
	}
	ch, reqs, err := l.OpenChannel(chanSession, nil)
	if err != nil {
		return fmt.Errorf("tunnel: cannot open a session for the tunnel options: %w", err)
	}
	go ssh.DiscardRequests(reqs)
	stop := context.AfterFunc(ctx, func() { ch.Close() })
	defer stop()
	if ok, err := ch.SendRequest("exec", true, ssh.Marshal(struct{ Command string }{words})); err != nil || !ok {
		ch.Close()
		return fmt.Errorf("tunnel: the server did not take the tunnel options: %v", cmpErr(err, "refused"))
	}
	// The server answers with a line on stdout, or with the reason on
	// stderr and the end of the channel.
	out := bufio.NewReader(ch)
	line, err := out.ReadString('\n')
	if err != nil {
		reason, _ := io.ReadAll(io.LimitReader(ch.Stderr(), 4096))
		ch.Close()
		if ctx.Err() != nil {
			return fmt.Errorf("tunnel: no answer to the tunnel options: %w", ctx.Err())
		}
		return &FatalError{Err: fmt.Errorf("tunnel: the server refused the tunnel options: %s", strings.TrimSpace(strings.ReplaceAll(string(reason), "\r", "")))}
	}
	c.log.Debug("tunnel options taken", "answer", strings.TrimSpace(line))
	context.AfterFunc(l.ctx, func() { ch.Close() })
	go io.Copy(io.Discard, out) // the banner, then nothing until the end
	go io.Copy(io.Discard, ch.Stderr())
	return nil
}

func cmpErr(err error, otherwise string) error {
	if err != nil {
		return err
	}
	return errors.New(otherwise)
}
