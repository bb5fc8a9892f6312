package tunnel

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pinhole-dev/pinhole/internal/auth"
)

// Per-key limits: what one key (every connection that logged in with it,
// together) may hold on the server, so that one careless or hostile user
// of a public server cannot starve the others. Each key's counters are
// its own (keyState); the server's lock is taken only when a connection
// of a key starts or ends, and a stream's accounting is two atomic adds
// and, for the rate, the key's own mutex, on the channel-open path only.

// KeyLimits are the per-key limits of a Server. A key's authorized_keys
// line may replace each (auth.Limits, pinhole-limits=). Names are the
// NameListener's (vhost.Router.MaxNamesPerKey).
type KeyLimits struct {
	// Ports caps the remote forwards on a port (tcpip-forward of an
	// address, udp-forward@pinhole) one key holds at once; a name is not
	// a port. 0 means DefaultKeyLimits.Ports; negative, no cap.
	Ports int
	// Streams caps the channels of one key open at once: direct-tcpip
	// (-L, -D), pinhole's UDP channels, forwarded-tcpip toward it (-R,
	// names), sessions. 0 means DefaultKeyLimits.Streams; negative, no
	// cap.
	Streams int
	// StreamRate caps the new channels of one key a second, as a token
	// bucket that holds twice as many: a burst of 2×StreamRate, then
	// StreamRate a second. 0 means DefaultKeyLimits.StreamRate;
	// negative, no cap.
	StreamRate int
}

// DefaultKeyLimits are the per-key limits of a Server whose KeyLimits are
// zero. A browser loading a heavy page opens a few dozen streams through
// a name at once; 100 concurrent requests through three names of one key
// (TestNamesConcurrentAndWebSocket) open 74 streams within 0.25 s; a
// load test of 200 connections at once through a -L and then a -R
// (TestPinholeToPinhole) opens about 400 within a second or two, which a
// rate of 100 (a burst of 200) refused; pinhole-bench's conns figure
// opens about 4,000 a second through one -L, which 500 a second held to
// 833. So 5000 a second (bursts of 10,000): what it stops is a key
// churning faster than a busy load test.
var DefaultKeyLimits = KeyLimits{Ports: 10, Streams: 1000, StreamRate: 5000}

// The limits' names, as LimitError.Limit, pinhole-limits and the log say
// them.
const (
	limitPorts      = "ports"
	limitStreams    = "streams"
	limitStreamRate = "stream-rate"
)

// limitFlags are the flags (and config-file keys) of the limits.
var limitFlags = map[string]string{
	limitPorts:      "--max-ports-per-key",
	limitStreams:    "--max-streams-per-key",
	limitStreamRate: "--max-stream-rate-per-key",
}

// LimitError is a refusal by a per-key limit. Its Error is what the
// client is told: the channel-open failure's reason, or the refused
// tcpip-forward's (to a pinhole client; RFC 4254 gives a stock ssh none).
type LimitError struct {
	Key   string // the key's SHA256 fingerprint
	Limit string // "ports", "streams" or "stream-rate"
	Max   int    // the limit that was reached
	// Own: the limit is the key's own, from pinhole-limits in its
	// authorized_keys line, not the server's flag.
	Own bool
}

func (e *LimitError) Error() string {
	src := fmt.Sprintf("%s %d", limitFlags[e.Limit], e.Max)
	if e.Own {
		src = fmt.Sprintf("pinhole-limits %s=%d in authorized_keys", e.Limit, e.Max)
	}
	switch e.Limit {
	case limitPorts:
		return fmt.Sprintf("pinhole: key %s holds %d remote-forward ports already, its limit (%s); cancel one of its forwards, or ask the server's admin to raise it", e.Key, e.Max, src)
	case limitStreamRate:
		return fmt.Sprintf("pinhole: key %s opens streams faster than its %d a second (%s); open fewer at once, or ask the server's admin to raise it", e.Key, e.Max, src)
	}
	return fmt.Sprintf("pinhole: key %s is at its %d concurrent streams (%s); close some, or ask the server's admin to raise it", e.Key, e.Max, src)
}

// limit is one limit of a key: at most max (max <= 0: none), own when the
// key's pinhole-limits set it.
type limit struct {
	max int
	own bool
}

// keyLimitSet are a key's limits, as its latest connection's
// authorized_keys line has them.
type keyLimitSet struct {
	ports, streams, rate limit
}

// resolveKeyLimits fills in the defaults of l: after it, each field is a
// cap (> 0) or none (< 0).
func resolveKeyLimits(l KeyLimits) KeyLimits {
	or := func(v, def int) int {
		if v == 0 {
			return def
		}
		return v
	}
	return KeyLimits{
		Ports:      or(l.Ports, DefaultKeyLimits.Ports),
		Streams:    or(l.Streams, DefaultKeyLimits.Streams),
		StreamRate: or(l.StreamRate, DefaultKeyLimits.StreamRate),
	}
}

// limitsFor are the limits of a key logging in with opts under the
// server's (resolved) limits srv.
func limitsFor(srv KeyLimits, opts *auth.Options) *keyLimitSet {
	pick := func(server, own int) limit {
		if own != 0 {
			return limit{max: own, own: true}
		}
		return limit{max: server}
	}
	var own auth.Limits
	if opts != nil {
		own = opts.Limits
	}
	return &keyLimitSet{
		ports:   pick(srv.Ports, own.Ports),
		streams: pick(srv.Streams, own.Streams),
		rate:    pick(srv.StreamRate, own.StreamRate),
	}
}

// keyState is what one key holds, across all its connections.
type keyState struct {
	key   string
	conns int // connections of the key; Server.keysMu
	lim   atomic.Pointer[keyLimitSet]

	ports   atomic.Int64
	streams atomic.Int64

	mu     sync.Mutex // the token bucket and the log lines
	tokens float64
	filled time.Time // when tokens was last brought up to date
	log    refusalLog
}

// attachKey returns the keyState of key for a new connection logged in
// with opts, making it for the key's first connection. The key's limits
// become those of opts: a reloaded authorized_keys line applies from the
// key's next login on.
func (s *Server) attachKey(key string, opts *auth.Options) *keyState {
	lim := limitsFor(s.cfg.KeyLimits, opts)
	s.keysMu.Lock()
	defer s.keysMu.Unlock()
	ks := s.keys[key]
	if ks == nil {
		ks = &keyState{key: key, filled: time.Now()}
		ks.tokens = float64(2 * lim.rate.max)
		s.keys[key] = ks
	}
	ks.conns++
	ks.lim.Store(lim)
	return ks
}

// detachKey is the end of a connection of ks's key, once its streams and
// forwards are gone.
func (s *Server) detachKey(ks *keyState) {
	s.keysMu.Lock()
	defer s.keysMu.Unlock()
	if ks.conns--; ks.conns <= 0 && s.keys[ks.key] == ks {
		delete(s.keys, ks.key)
		// The refusals held back are written now, before the server's
		// Close returns, not by a timer after it.
		ks.mu.Lock()
		ks.log.flush()
		ks.mu.Unlock()
	}
}

// KeyUsage is what one key holds on a Server now.
type KeyUsage struct {
	Connections int
	Ports       int64 // remote forwards on a port
	Streams     int64 // channels open
}

// KeyUsage reports what the key with SHA256 fingerprint key holds; the
// zero KeyUsage when it has no connection.
func (s *Server) KeyUsage(key string) KeyUsage {
	s.keysMu.Lock()
	defer s.keysMu.Unlock()
	ks := s.keys[key]
	if ks == nil {
		return KeyUsage{}
	}
	return KeyUsage{Connections: ks.conns, Ports: ks.ports.Load(), Streams: ks.streams.Load()}
}

// hold adds one to n if that stays within l, and reports whether it did.
func hold(n *atomic.Int64, l limit) bool {
	if v := n.Add(1); l.max > 0 && v > int64(l.max) {
		n.Add(-1)
		return false
	}
	return true
}

// openStream counts a new channel of the key, or refuses it by the
// streams or stream-rate limit. On success endStream must be called once
// when the channel ends.
func (ks *keyState) openStream() *LimitError {
	lim := ks.lim.Load()
	if !hold(&ks.streams, lim.streams) {
		return &LimitError{Key: ks.key, Limit: limitStreams, Max: lim.streams.max, Own: lim.streams.own}
	}
	if lim.rate.max > 0 && !ks.take(lim.rate.max) {
		ks.streams.Add(-1)
		return &LimitError{Key: ks.key, Limit: limitStreamRate, Max: lim.rate.max, Own: lim.rate.own}
	}
	return nil
}

func (ks *keyState) endStream() { ks.streams.Add(-1) }

// take takes a token from the key's bucket, which fills at rate a second
// up to 2×rate, and reports whether there was one.
func (ks *keyState) take(rate int) bool {
	now := time.Now()
	ks.mu.Lock()
	defer ks.mu.Unlock()
	burst := float64(2 * rate)
	ks.tokens = min(burst, ks.tokens+now.Sub(ks.filled).Seconds()*float64(rate))
	ks.filled = now
	if ks.tokens < 1 {
		return false
	}
	ks.tokens--
	return true
}

// holdPort counts a new remote forward on a port, or refuses it by the
// ports limit. On success endPort must be called once when it closes.
func (ks *keyState) holdPort() *LimitError {
	lim := ks.lim.Load()
	if !hold(&ks.ports, lim.ports) {
		return &LimitError{Key: ks.key, Limit: limitPorts, Max: lim.ports.max, Own: lim.ports.own}
	}
	return nil
}

func (ks *keyState) endPort() { ks.ports.Add(-1) }

// refused writes the log line of a refusal by a limit: the first of an
// episode at once, then at most one a second, or when the limit changes,
// with the number of refusals it stands for (refused=), so that a key
// hammering at its limit does not flood the log; what is held back is
// written a second after the last line.
func (ks *keyState) refused(log *slog.Logger, err *LimitError, what string) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	ks.log.add(ks, log, err, what)
}

// refusalLog is a key's throttle of refusal lines; keyState.mu guards it.
type refusalLog struct {
	last     time.Time
	unlogged int
	err      *LimitError
	what     string
	lg       *slog.Logger
	timer    *time.Timer // writes what is held back; nil when nothing is
}

func (r *refusalLog) add(ks *keyState, log *slog.Logger, err *LimitError, what string) {
	now := time.Now()
	r.unlogged++
	sameLimit := r.err != nil && r.err.Limit == err.Limit
	r.err, r.what, r.lg = err, what, log
	if sameLimit && now.Sub(r.last) < time.Second {
		if r.timer == nil {
			r.timer = time.AfterFunc(time.Second-now.Sub(r.last), func() {
				ks.mu.Lock()
				defer ks.mu.Unlock()
				r.flush()
			})
		}
		return
	}
	r.write(now)
}

// flush writes the line of the refusals held back, if any, and stops
// the timer that would have; keyState.mu is held.
func (r *refusalLog) flush() {
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	if r.unlogged > 0 {
		r.write(time.Now())
	}
}

func (r *refusalLog) write(now time.Time) {
	r.lg.Warn("per-key limit reached", "key", r.err.Key, "limit", r.err.Limit, "max", r.err.Max,
		"own", r.err.Own, "refused", r.unlogged, "last", r.what, "err", r.err.Error())
	r.last, r.unlogged = now, 0
}

// NameLimiter is a NameListener that takes a key's own cap on its names
// (pinhole-limits names=N) in place of its default.
type NameLimiter interface {
	// ListenNameLimit is ListenName with key's cap on its names: > 0 a
	// cap, auth.LimitNone none, 0 the listener's default.
	ListenNameLimit(name string, port uint32, key string, max int, options func(context.Context) (auth.TunnelOptions, error)) (net.Listener, error)
}

// listenName asks the server's NameListener for name, with the key's own
// cap on its names if its authorized_keys line gives one.
func (sc *serverConn) listenName(name string, port uint32) (net.Listener, error) {
	names := sc.srv.cfg.Names
	if nl, ok := names.(NameLimiter); ok && sc.opts != nil && sc.opts.Limits.Names != 0 {
		return nl.ListenNameLimit(name, port, sc.key, sc.opts.Limits.Names, sc.tunnelOptions)
	}
	return names.ListenName(name, port, sc.key, sc.tunnelOptions)
}
