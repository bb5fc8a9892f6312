package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/pinhole-dev/pinhole/internal/tunnel"
)

// checkStdioTarget checks -W's host:port.
func checkStdioTarget(target string) error {
	host, port, err := net.SplitHostPort(target)
	if err != nil {
		return fmt.Errorf("-W %q: %v; want host:port, an IPv6 address in brackets ([::1]:22)", target, err)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 || host == "" {
		return fmt.Errorf("-W %q: want host:port with a port from 1 to 65535", target)
	}
	return nil
}

// quietLogger is -W's logger: warnings and errors only, since the
// command that runs pinhole connect -W (ssh's ProxyCommand) shows its
// stderr on every connection, and ssh -W is as quiet.
func quietLogger(e *env) *slog.Logger {
	return newLogger(e.stderr, e.logJSON, slog.LevelWarn)
}

// stdioForward is -W: it opens one stream to target through c, copies in
// to it and it to out, and returns once the far end has closed it (or ctx
// ended). EOF on in is passed on as EOF on the stream, and the far end
// still has its say. The goroutine reading in is not waited for when the
// far end closes first: a Read on a terminal or an inherited pipe cannot
// be interrupted, and the process exits right after.
func stdioForward(ctx context.Context, c *tunnel.Client, target string, in io.Reader, out io.Writer) error {
	octx, cancel := context.WithTimeout(ctx, 15*time.Second)
	conn, err := c.DialContext(octx, "tcp", target)
	cancel()
	if err != nil {
		return fmt.Errorf("-W %s: %w", target, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	go copyStdin(conn, in)
	_, err = io.Copy(out, conn)
	if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("-W %s: %w", target, err)
	}
	return nil
}

// copyStdin copies in to the stream, then sends EOF.
func copyStdin(conn net.Conn, in io.Reader) {
	io.Copy(conn, in)
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
}
