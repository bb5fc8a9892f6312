package relay

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/pinhole-dev/pinhole/internal/accept"
)

// TCPForwarder relays every connection accepted on a listener to one
// target address, with Pipe: between two *net.TCPConn the bytes move by
// splice(2), never through user space. A target that cannot be reached
// costs only that connection, which is closed.
//
// Its zero value, given a Target, is ready. Lifecycle:
//
//	new ──Serve──▶ serving ──Shutdown──▶ draining ──(all done, or ctx ends: Close)──▶ closed
//	                  └──────────────────Close───────────────────────────────────────────┘
//
// After Close, Serve returns net.ErrClosed and every relayed connection is
// closed.
type TCPForwarder struct {
	// Target is the host:port each connection is relayed to, dialled
	// anew for every connection.
	Target string
	// Dial opens the connection to Target; nil means a net.Dialer. It
	// should return a *net.TCPConn, or the copy goes through user space.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// DialTimeout bounds each dial; 0 means 10 s.
	DialTimeout time.Duration
	// Header, when set, gives the bytes written to the target before any
	// of the client's, once per connection: where a PROXY protocol
	// header (v1 or v2, so the target sees the client's address) goes.
	// nil writes nothing. The connections stay *net.TCPConn, so the copy
	// after it is still spliced.
	Header func(client net.Conn) ([]byte, error)
	// Logger gets a line per target that cannot be reached, and the
	// accept loop's lines. nil discards.
	Logger *slog.Logger

	mu       sync.Mutex
	ln       net.Listener
	conns    map[net.Conn]struct{}
	closed   bool
	draining bool            // Shutdown has begun: no new relays
	ctx      context.Context // ends at Close: cancels dials
	cancel   context.CancelFunc
	wg       sync.WaitGroup // one per relayed connection
	initted  sync.Once
}

func (f *TCPForwarder) init() {
	f.initted.Do(func() {
		f.ctx, f.cancel = context.WithCancel(context.Background())
		f.conns = make(map[net.Conn]struct{})
	})
}

func (f *TCPForwarder) log() *slog.Logger {
	if f.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return f.Logger
}

// Serve accepts on ln until it is closed (Shutdown, Close) and relays each
// connection. It returns net.ErrClosed then, or the accept error that
// retrying cannot fix. It closes ln when it returns.
func (f *TCPForwarder) Serve(ln net.Listener) error {
	f.init()
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		ln.Close()
		return net.ErrClosed
	}
	f.ln = ln
	f.mu.Unlock()
	defer ln.Close()
	return accept.Loop(ln, f.Logger, f.handle)
}

// track adds c to the connections Close closes; false if closed already.
func (f *TCPForwarder) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *TCPForwarder) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
}

// handle starts relaying c, on the accept loop's goroutine. Its wg.Add
// happens under mu, and never once Shutdown has begun to wait: a
// connection accepted as the listener closes is closed instead, so Add
// cannot race Wait.
func (f *TCPForwarder) handle(c net.Conn) {
	f.mu.Lock()
	if f.closed || f.draining {
		f.mu.Unlock()
		c.Close()
		return
	}
	f.conns[c] = struct{}{}
	f.wg.Add(1)
	f.mu.Unlock()
	go f.relay(c)
}

// relay dials the target for client and pipes the two together.
func (f *TCPForwarder) relay(client net.Conn) {
	defer f.wg.Done()
	defer f.untrack(client)
	timeout := f.DialTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	dial := f.Dial
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	ctx, cancel := context.WithTimeout(f.ctx, timeout)
	target, err := dial(ctx, "tcp", f.Target)
	cancel()
	if err != nil {
		f.log().Warn("relay: cannot reach the target; closed the client's connection", "raddr", f.Target, "peer", client.RemoteAddr().String(), "err", err)
		client.Close()
		return
	}
	if !f.track(target) {
		target.Close()
		client.Close()
		return
	}
	defer f.untrack(target)
	if f.Header != nil {
		h, err := f.Header(client)
		if err == nil && len(h) > 0 {
			_, err = target.Write(h)
		}
		if err != nil {
			f.log().Warn("relay: cannot send the header to the target; closed the connection", "raddr", f.Target, "peer", client.RemoteAddr().String(), "err", err)
			target.Close()
			client.Close()
			return
		}
	}
	Pipe(client, target)
}

// Shutdown stops accepting, then waits for the relayed connections to
// end. When ctx ends first it closes them (Close) and returns ctx's error.
func (f *TCPForwarder) Shutdown(ctx context.Context) error {
	f.init()
	f.mu.Lock()
	f.draining = true
	if f.ln != nil {
		f.ln.Close()
	}
	f.mu.Unlock()
	done := make(chan struct{})
	go func() {
		f.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		f.Close()
		return nil
	case <-ctx.Done():
		f.Close()
		<-done
		return ctx.Err()
	}
}

// Close stops accepting and closes every relayed connection at once. It is
// idempotent.
func (f *TCPForwarder) Close() error {
	f.init()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil
	}
	f.closed = true
	f.cancel()
	if f.ln != nil {
		f.ln.Close()
	}
	for c := range f.conns {
		c.Close()
	}
	return nil
}
