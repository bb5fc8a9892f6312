// Package tunnel is pinhole's SSH glue: a server that only forwards ports
// (direct-tcpip, tcpip-forward, forwarded-tcpip) and a client that keeps its
// -L and -R forwards alive across reconnects. Both speak plain SSH
// (RFC 4254), so either end may be OpenSSH.
package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/pinhole-dev/pinhole/internal/ssh"

	"github.com/pinhole-dev/pinhole/internal/relay"
)

// Channel and request names from RFC 4254 and OpenSSH's PROTOCOL file.
const (
	chanDirectTCPIP    = "direct-tcpip"
	chanForwardedTCPIP = "forwarded-tcpip"
	chanSession        = "session"
	reqTCPIPForward    = "tcpip-forward"
	reqCancelForward   = "cancel-tcpip-forward"
	reqKeepalive       = "keepalive@openssh.com"
	reqNoMoreSessions  = "no-more-sessions@openssh.com"
)

// versionPrefix starts the SSH version string pinhole sends; a server that
// sees it may add a reason to a refused tcpip-forward (docs/protocol.md).
const versionPrefix = "SSH-2.0-pinhole"

// channelOpen is the payload of direct-tcpip and forwarded-tcpip channel
// opens (RFC 4254 7.2): the address to connect to (direct) or that was
// connected (forwarded), then the originator.
type channelOpen struct {
	Host       string
	Port       uint32
	OriginHost string
	OriginPort uint32
}

// forwardRequest is the payload of tcpip-forward and cancel-tcpip-forward.
type forwardRequest struct {
	BindHost string
	BindPort uint32
}

// forwardReply answers a tcpip-forward for port 0 with the bound port.
type forwardReply struct {
	Port uint32
}

// forwardURLReply is pinhole server's reply to a pinhole client's
// tcpip-forward that a name took (docs/protocol.md): the public URL.
type forwardURLReply struct {
	URL string
}

func (p channelOpen) target() string {
	return net.JoinHostPort(p.Host, strconv.FormatUint(uint64(p.Port), 10))
}

func (p channelOpen) origin() string {
	return net.JoinHostPort(p.OriginHost, strconv.FormatUint(uint64(p.OriginPort), 10))
}

// hostPort splits a net.Addr into what channelOpen carries.
func hostPort(a net.Addr) (string, uint32) {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String(), uint32(ta.Port)
	}
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String(), 0
	}
	p, _ := strconv.ParseUint(port, 10, 16)
	return host, uint32(p)
}

// dialReason turns a failed dial into OpenSSH's open-failure words: the
// strerror text ("Connection refused") that ssh prints after "open failed".
func dialReason(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		s := errno.Error()
		return strings.ToUpper(s[:1]) + s[1:]
	}
	return err.Error()
}

// ForwardError is a remote forward the server refused. Reason is the
// server's text when it gave one (pinhole servers do), else empty.
type ForwardError struct {
	Spec   string
	Reason string
}

func (e *ForwardError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("tunnel: the server refused remote forward -R %s (it gives no reason: check its permitlisten, GatewayPorts and whether the port is free there)", e.Spec)
	}
	return fmt.Sprintf("tunnel: the server refused remote forward -R %s: %s", e.Spec, e.Reason)
}

// ErrProhibited is wrapped by an OpenError the server refused by policy
// (permitopen, no-port-forwarding), not because the target failed.
var ErrProhibited = errors.New("tunnel: not allowed by the server")

// OpenError is a stream the server would not open. It unwraps to
// ErrProhibited for a policy refusal, and for a failed connect to the errno
// the server's words name (syscall.ECONNREFUSED for "Connection refused",
// ...) so callers such as the SOCKS server can answer precisely.
type OpenError struct {
	Target  string
	Reason  ssh.RejectionReason
	Message string
}

func (e *OpenError) Error() string {
	return fmt.Sprintf("tunnel: the server could not open %s: %s (%s)", e.Target, e.Message, e.Reason)
}

func (e *OpenError) Unwrap() error {
	if e.Reason == ssh.Prohibited {
		return ErrProhibited
	}
	m := strings.ToLower(e.Message)
	switch {
	case strings.Contains(m, "refused"):
		return syscall.ECONNREFUSED
	case strings.Contains(m, "no route"), strings.Contains(m, "host unreachable"):
		return syscall.EHOSTUNREACH
	case strings.Contains(m, "network is unreachable"):
		return syscall.ENETUNREACH
	case strings.Contains(m, "timed out"), strings.Contains(m, "timeout"):
		return syscall.ETIMEDOUT
	case strings.Contains(m, "no such host"), strings.Contains(m, "not known"), strings.Contains(m, "name resolution"), strings.Contains(m, "getaddrinfo"):
		return &net.DNSError{Err: e.Message, Name: e.Target, IsNotFound: true}
	}
	return nil
}

// openError turns a failed channel open into an OpenError when the server
// answered, or wraps the transport error.
func openError(target string, err error) error {
	var oce *ssh.OpenChannelError
	if errors.As(err, &oce) {
		return &OpenError{Target: target, Reason: oce.Reason, Message: oce.Message}
	}
	return fmt.Errorf("tunnel: open a stream to %s: %w", target, err)
}

// streamKeepAlive is the TCP keepalive of forwarded streams' sockets (what
// the -L and -R listeners accept, what each end dials): on, with the
// system's timing. Go's default, 15 s, takes three more setsockopt calls
// per socket, paid twice by each new connection through a forward
// (BenchmarkNewConn); OpenSSH sets no keepalive on these sockets at all.
var streamKeepAlive = net.KeepAliveConfig{Enable: true, Idle: -1, Interval: -1, Count: -1}

// listenStreams is the default Listen of clients and servers: net.Listen
// with streamKeepAlive.
func listenStreams(network, addr string) (net.Listener, error) {
	lc := net.ListenConfig{KeepAliveConfig: streamKeepAlive}
	return lc.Listen(context.Background(), network, addr)
}

// ignoreRequests leaves a stream channel's requests unread. Nobody sends
// requests on direct-tcpip, forwarded-tcpip or pinhole's UDP channels
// (OpenSSH and x/crypto send none), and a goroutine to drain them costs
// each idle stream a few kilobytes of stack on both ends. x/crypto buffers
// 16 such requests per channel; a peer that sends more stalls only its own
// connection, which keepalives then close.
func ignoreRequests(<-chan *ssh.Request) {}

// pipe relays conn and ch in fresh goroutines counted by wg, so the stacks
// that sit idle with the stream start small instead of keeping whatever
// the dial or channel open grew. The stream is one of m's while it lasts,
// and its bytes go to m as they move: conn is the target's side when
// connIsTarget, else the side that asked for the target. When ctx (the
// stream's SSH connection) ends first, conn is closed: the channel then
// only reads EOF, and a peer that ignores EOF would otherwise keep the
// stream half open forever. So is it when also (the stream's forward, or
// nil) ends.
func pipe(ctx, also context.Context, wg *sync.WaitGroup, m *meter, connIsTarget bool, conn net.Conn, ch ssh.Channel) {
	pipeThen(ctx, also, wg, m, connIsTarget, conn, ch, nil)
}

// pipeThen is pipe, calling then (if not nil) once the stream has ended:
// the server's per-key count of the stream.
func pipeThen(ctx, also context.Context, wg *sync.WaitGroup, m *meter, connIsTarget bool, conn net.Conn, ch ssh.Channel, then func()) {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	stopAlso := func() bool { return false }
	if also != nil {
		stopAlso = context.AfterFunc(also, func() { conn.Close() })
	}
	end := m.open(false)
	toCh, fromCh := &m.toTarget, &m.fromTarget
	if connIsTarget {
		toCh, fromCh = fromCh, toCh
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer stop()
		defer stopAlso()
		defer end()
		if then != nil {
			defer then()
		}
		relay.PipeCount(conn, ch, toCh, fromCh)
	}()
}
