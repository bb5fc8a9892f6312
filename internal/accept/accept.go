// Package accept is the accept loop that every pinhole listener shares: the
// SSH server's, each -L and -D listener, the server's -R listeners and
// pinhole proxy's. It keeps accepting through the errors that pass by
// themselves (out of file descriptors, out of buffer memory, timeouts),
// backing off from 5 ms to 1 s and logging one line when such an episode
// starts and one when it ends, so a listener is never left bound with
// nobody accepting. A listener at its descriptor limit flaps, one accept
// passing whenever one descriptor frees: episodes that start within a
// minute of the last logged one are counted and told with the next
// logged one instead of each getting two lines.
package accept

import (
	"errors"
	"log/slog"
	"net"
	"syscall"
	"time"
)

// Backoff bounds: the first wait after a passing error and the longest.
const (
	minDelay = 5 * time.Millisecond
	maxDelay = time.Second
)

// quiet is how long after one logged episode start the next ones are
// counted instead of logged. A variable for the tests.
var quiet = time.Minute

// Loop accepts on ln and calls handle with each connection, in the
// accepting goroutine: handle starts whatever goroutine the connection
// needs and returns at once. handle owns the connection.
//
// Loop returns net.ErrClosed when ln is closed, and any other error that
// retrying cannot fix, wrapped with ln's address. log (nil discards) gets
// the episode lines, with the key laddr.
func Loop(ln net.Listener, log *slog.Logger, handle func(net.Conn)) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var (
		delay    time.Duration
		failures int
		since    time.Time
		logged   bool      // this episode's start was logged
		lastWarn time.Time // when the last logged episode started
		unlogged int       // episodes since then that were not
	)
	for {
		c, err := ln.Accept()
		if err == nil {
			if failures > 0 && logged {
				log.Info("accepting again", "laddr", ln.Addr().String(), "failures", failures, "after", time.Since(since).Round(time.Millisecond))
			}
			delay, failures = 0, 0
			handle(c)
			continue
		}
		if errors.Is(err, net.ErrClosed) {
			return net.ErrClosed
		}
		if !Passing(err) {
			return &net.OpError{Op: "accept", Net: ln.Addr().Network(), Addr: ln.Addr(), Err: err}
		}
		if failures == 0 {
			since = time.Now()
			logged = lastWarn.IsZero() || since.Sub(lastWarn) >= quiet
			if !logged {
				unlogged++
			} else {
				args := []any{"laddr", ln.Addr().String(), "err", err}
				if unlogged > 0 {
					args = append(args, "episodes_unlogged", unlogged)
				}
				log.Warn("accept failed; retrying with backoff until it passes", args...)
				lastWarn, unlogged = since, 0
			}
		}
		failures++
		delay = min(max(2*delay, minDelay), maxDelay)
		time.Sleep(delay)
	}
}

// Passing reports whether an accept error goes away by itself: the process
// or the system is out of file descriptors (EMFILE, ENFILE) or of memory
// for buffers (ENOBUFS, ENOMEM), the connection was aborted before it was
// accepted (ECONNABORTED), or a timeout.
func Passing(err error) bool {
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
