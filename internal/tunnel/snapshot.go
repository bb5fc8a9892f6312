package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/pinhole-dev/pinhole/internal/ssh"

	"github.com/pinhole-dev/pinhole/internal/observe"
	"github.com/pinhole-dev/pinhole/internal/spec"
)

// What a Server or a Client is doing now, as observe's plain values:
// built from the handles and counters that already exist (each
// connection's and forward's meter, the registry's listeners, the
// states), counting nothing a second time. Refusals and authentication
// failures go to the observe.Ring of the config where they happen
// (serverauth.go, serverconn.go, registry.go, udp_server.go, local.go,
// remote.go, forwarding.go).

// Events is the Ring the server records its refusals and authentication
// failures in: ServerConfig.Events or its own.
func (s *Server) Events() *observe.Ring { return s.events }

// Snapshot is what the server does now: its sessions oldest first, each
// with its remote forwards and figures, its totals and its recent
// events. Version and PID are left for the caller.
func (s *Server) Snapshot() observe.Snapshot {
	s.mu.Lock()
	st := s.state
	total := s.retired
	conns := make([]*serverConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	slices.SortFunc(conns, func(a, b *serverConn) int { return a.since.Compare(b.since) })
	state := "up"
	if st != serverServing {
		state = "draining"
	}
	snap := observe.Snapshot{
		Role:     "server",
		Version:  Version,
		Started:  s.started,
		Time:     time.Now(),
		Sessions: make([]observe.Session, 0, len(conns)),
		Tunnels:  []observe.Tunnel{},
		Events:   s.events.Events(),
		Counts:   s.events.Counts(),
	}
	for _, c := range conns {
		ms := c.meter.stats()
		total = total.Add(ms)
		comment := ""
		if c.opts != nil {
			comment = c.opts.Comment
		}
		snap.Sessions = append(snap.Sessions, observe.Session{
			Key:           c.key,
			Comment:       comment,
			User:          c.conn.User(),
			Source:        c.conn.RemoteAddr().String(),
			ClientVersion: string(c.conn.ClientVersion()),
			Since:         c.since,
			State:         state,
			Listeners:     c.listeners(),
			Counters:      counters(ms),
		})
	}
	snap.Totals = counters(total)
	return snap
}

// listeners are the remote forwards the server listens for on sc,
// oldest first.
func (sc *serverConn) listeners() []observe.Listener {
	sc.mu.Lock()
	out := make([]observe.Listener, 0, len(sc.forwards)+len(sc.udpForwards))
	for _, rl := range sc.forwards {
		out = append(out, observe.Listener{
			Proto:     "tcp",
			Requested: rl.req.where(),
			Addr:      rl.key.addr,
			Name:      rl.name,
			URL:       rl.url,
			Since:     rl.since,
		})
	}
	for _, ul := range sc.udpForwards {
		out = append(out, observe.Listener{Proto: "udp", Requested: ul.req.where(), Addr: ul.key.addr, Since: ul.since})
	}
	sc.mu.Unlock()
	slices.SortFunc(out, func(a, b observe.Listener) int { return a.Since.Compare(b.Since) })
	return out
}

func (fr forwardRequest) where() string {
	return net.JoinHostPort(fr.BindHost, strconv.Itoa(int(fr.BindPort)))
}

// refuse counts a stream of sc that could not be opened, and records why:
// what is the target, listener or channel type refused, peer where the
// refused connection came from (nil: sc's client).
func (sc *serverConn) refuse(r observe.Reason, what string, peer fmt.Stringer, err error) {
	sc.meter.refuse()
	sc.event(r, what, peer, err)
}

func (sc *serverConn) event(r observe.Reason, what string, peer fmt.Stringer, err error) {
	if peer == nil {
		peer = sc.conn.RemoteAddr()
	}
	sc.srv.events.AddText(observe.Event{Reason: r, Tunnel: sc.key, Forward: what}, peer, err)
}

// refuseForward records the refusal of a remote forward (tcpip-forward,
// udp-forward@pinhole) asked for with payload. It is no stream: the
// figures do not count it.
func (sc *serverConn) refuseForward(err error, payload []byte) {
	var fr forwardRequest
	what := ""
	if ssh.Unmarshal(payload, &fr) == nil {
		what = fr.where()
	}
	sc.event(reasonOf(err), what, nil, err)
}

// refusedFor is an error with the observe.Reason it is recorded under;
// its text is the error's own, as the client is told it.
type refusedFor struct {
	reason observe.Reason
	error
}

func (e refusedFor) Unwrap() error { return e.error }

// because marks err with the reason it is recorded under.
func because(r observe.Reason, err error) error { return refusedFor{r, err} }

// reasonOf is the reason a remote forward's refusal err is recorded
// under: the one because gave it, the limit's, or listen-failed.
func reasonOf(err error) observe.Reason {
	var rf refusedFor
	if errors.As(err, &rf) {
		return rf.reason
	}
	var le *LimitError
	if errors.As(err, &le) {
		return limitReason(le)
	}
	return observe.RefusedListenFailed
}

// limitReason is the reason of a per-key limit's refusal.
func limitReason(le *LimitError) observe.Reason {
	switch le.Limit {
	case limitStreams:
		return observe.RefusedStreams
	case limitStreamRate:
		return observe.RefusedStreamRate
	}
	return observe.RefusedPorts
}

// Events is the Ring the client records its refusals in:
// ClientConfig.Events or its own.
func (c *Client) Events() *observe.Ring { return c.cfg.Events }

// Snapshot is what the client does now: its state and since when, the
// last error, and its forwards with their addresses, states and
// figures. The tunnel's figures include those of forwards closed and
// of DialContext's streams.
func (c *Client) Snapshot() observe.Tunnel {
	c.mu.Lock()
	st, since, lastErr := c.state, c.since, c.err
	if lastErr == nil {
		lastErr = c.lastErr
	}
	fs := slices.Clone(c.forwards)
	total := c.retired.Add(c.meter.stats())
	c.mu.Unlock()
	t := observe.Tunnel{
		Name:     c.cfg.Name,
		Server:   c.cfg.Addr,
		State:    st.String(),
		Since:    since,
		Forwards: make([]observe.Forward, 0, len(fs)),
	}
	if lastErr != nil {
		t.LastError = lastErr.Error()
	}
	for _, f := range fs {
		ms := f.meter.stats()
		total = total.Add(ms)
		fw := observe.Forward{
			Forward:  f.flag(),
			Kind:     kindName(f.spec.Kind),
			Proto:    f.spec.Proto.String(),
			State:    f.State().String(),
			URL:      f.URL(),
			Counters: counters(ms),
		}
		if a := f.Addr(); a.IsValid() {
			fw.Addr = a.String()
		}
		f.mu.Lock()
		fw.Since = f.since
		if f.err != nil {
			fw.LastError = f.err.Error()
		}
		f.mu.Unlock()
		if since.After(fw.Since) {
			fw.Since = since // it follows its client's state
		}
		t.Forwards = append(t.Forwards, fw)
	}
	t.Counters = counters(total)
	return t
}

// PlannedForward describes f, a forward not yet handed to a Client (a
// tunnel of pinhole up that is not connected), in state since then.
func PlannedForward(f spec.Forward, state string, since time.Time) observe.Forward {
	return observe.Forward{Forward: f.Kind.String() + " " + f.String(), Kind: kindName(f.Kind), Proto: f.Proto.String(), State: state, Since: since}
}

func kindName(k spec.Kind) string {
	switch k {
	case spec.Local:
		return "local"
	case spec.Remote:
		return "remote"
	}
	return "dynamic"
}

// refuse counts a stream of the forward that could not be opened, and
// records why: peer is where the refused connection came from.
func (f *Forwarding) refuse(r observe.Reason, peer fmt.Stringer, err error) {
	f.meter.refuse()
	f.c.cfg.Events.AddText(observe.Event{Reason: r, Tunnel: f.c.cfg.Name, Forward: f.label}, peer, err)
}

// openReason is the reason a client's stream open failed with err: the
// tunnel was not there in time, or the server refused.
func openReason(err error) observe.Reason {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, net.ErrClosed) || errors.Is(err, context.Canceled) {
		return observe.RefusedTunnelDown
	}
	return observe.RefusedByServer
}

func counters(s Stats) observe.Counters {
	return observe.Counters{
		BytesToTarget:   s.ToTarget,
		BytesFromTarget: s.FromTarget,
		StreamsOpen:     s.StreamsOpen,
		StreamsTotal:    s.StreamsTotal,
		StreamsRefused:  s.StreamsRefused,
	}
}
