package tunnel

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/pinhole-dev/pinhole/internal/auth"
	"github.com/pinhole-dev/pinhole/internal/observe"
	"github.com/pinhole-dev/pinhole/internal/ssh"
)

// Why a key was refused, as the "auth failed" log line's reason says it
// (docs/logging.md lists them; they are part of the line's stable format).
const (
	reasonUnknownKey = string(observe.AuthUnknownKey) // not in authorized_keys
	reasonFrom       = string(observe.AuthFrom)       // listed, but from= does not match the client's address
	reasonExpired    = string(observe.AuthExpired)    // listed, but expiry-time= has passed
	reasonNoKeys     = string(observe.AuthNoKeys)     // the server has no Authorize at all
	reasonKeysError  = string(observe.AuthKeysError)  // authorized_keys could not be read
	reasonMethod     = string(observe.AuthMethod)     // password, keyboard-interactive, ...: pinhole takes keys only
	reasonBadRequest = string(observe.AuthBadRequest) // a publickey request the server could not use (algorithm, key format)
)

// The userauth banners pinhole server sends about a refused key. A pinhole
// client reads them (authmsg.go) to say why it was refused; a stock ssh
// shows them to its user. docs/protocol.md has them.
const (
	bannerPrefix     = "pinhole: the server refused key "
	bannerNotListed  = "it is not in the server's authorized_keys"
	bannerFromFormat = "it is in the server's authorized_keys, but its from= option does not allow your address (%s)"
	bannerExpired    = "it is in the server's authorized_keys, but its expiry-time= option has passed"
)

// refusal is why the server refused a key, for the log line and the banner.
type refusal struct {
	key    string // SHA256 fingerprint
	reason string // one of the reason constants
	err    error  // the detail, for the log
}

func (r *refusal) Error() string {
	return fmt.Sprintf("tunnel: key %s refused (%s): %v", r.key, r.reason, r.err)
}

func (r *refusal) Unwrap() error { return r.err }

// banner is the userauth banner that tells the client about r, one line.
func (r *refusal) banner(meta ssh.ConnMetadata) string {
	var why string
	switch r.reason {
	case reasonUnknownKey:
		why = bannerNotListed
	case reasonFrom:
		why = fmt.Sprintf(bannerFromFormat, hostOf(meta.RemoteAddr()))
	case reasonExpired:
		why = bannerExpired
	default:
		return ""
	}
	return bannerPrefix + r.key + ": " + why + "\r\n"
}

func hostOf(a net.Addr) string {
	if host, _, err := net.SplitHostPort(a.String()); err == nil {
		return host
	}
	return a.String()
}

type refusalKey struct{}

// publicKey is the ssh.ServerConfig callback, called once per key a
// connection offers (the fork caches the answer). A key that is not
// listed is refused here; a pinhole client is also sent a banner saying
// so, which tells it nothing the refusal did not (a listed key that
// options refuse is not refused here). A listed key refused by from= or
// expiry-time= is accepted here and refused by verifiedKey, once the
// client has proved it holds the key: only the key's holder learns that
// the server knows it, and why it was refused.
func (s *Server) publicKey(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	fp := ssh.FingerprintSHA256(key)
	if s.cfg.Authorize == nil {
		return nil, &refusal{fp, reasonNoKeys, errors.New("no authorized keys configured")}
	}
	opts, err := s.cfg.Authorize(meta, key)
	switch {
	case errors.Is(err, auth.ErrNotFrom), errors.Is(err, auth.ErrExpired):
		reason := reasonFrom
		if errors.Is(err, auth.ErrExpired) {
			reason = reasonExpired
		}
		return &ssh.Permissions{
			ExtraData: map[any]any{refusalKey{}: &refusal{fp, reason, err}},
		}, nil
	case err != nil:
		return nil, &refusal{fp, reasonKeysError, err}
	case opts == nil:
		r := &refusal{fp, reasonUnknownKey, errors.New("not in authorized_keys")}
		if capsOf(meta.ClientVersion()).banners {
			return nil, &ssh.BannerError{Err: r, Message: r.banner(meta)}
		}
		return nil, r
	}
	return &ssh.Permissions{
		Extensions: map[string]string{"pubkey-fp": fp},
		ExtraData:  map[any]any{optionsKey{}: opts},
	}, nil
}

// verifiedKey is the ssh.ServerConfig callback after the client signed
// with a key publicKey accepted: it refuses the keys that publicKey let
// through only to refuse here, with a banner that says why.
func (s *Server) verifiedKey(meta ssh.ConnMetadata, _ ssh.PublicKey, perms *ssh.Permissions, _ string) (*ssh.Permissions, error) {
	if r, ok := perms.ExtraData[refusalKey{}].(*refusal); ok {
		return nil, &ssh.BannerError{Err: r, Message: r.banner(meta)}
	}
	return perms, nil
}

// authAttempts is what one connection did before it authenticated, for
// the line that says how its handshake ended.
type authAttempts struct {
	user     string
	failures int
}

// authConfig returns the ssh.ServerConfig for one connection: s.sshCfg
// with an AuthLogCallback that writes one "auth failed" line per failed
// attempt and counts them in a.
func (s *Server) authConfig(a *authAttempts) *ssh.ServerConfig {
	cfg := *s.sshCfg
	cfg.AuthLogCallback = func(meta ssh.ConnMetadata, method string, err error) {
		a.user = meta.User()
		if err == nil || method == "none" && errors.Is(err, ssh.ErrNoAuth) {
			return // success, or the "none" every client starts with
		}
		a.failures++
		key, reason, detail := "none", reasonMethod, err
		var r *refusal
		if errors.As(err, &r) {
			key, reason, detail = r.key, r.reason, r.err
		} else if method == "publickey" {
			reason = reasonBadRequest
		}
		// The format of this line is stable: docs/logging.md, and the
		// fail2ban filter in contrib/fail2ban rely on it. peer comes
		// right after msg, before anything the client chose.
		peer := meta.RemoteAddr().String()
		s.log.Warn("auth failed", "peer", peer, "user", meta.User(),
			"method", method, "key", key, "reason", reason, "err", detail)
		s.events.Add(observe.Event{Reason: observe.Reason(reason), Tunnel: key, Forward: method, Peer: peer, Detail: detail.Error()})
	}
	return &cfg
}

// logHandshakeEnd writes the one line for a handshake that failed: the
// login grace time ran out, the client failed too many attempts, the
// client left after failing, or the protocol failed (anything else).
// A connection that closes before saying anything (a port scan, a
// dropped TCP probe) is logged at debug level only.
func (s *Server) logHandshakeEnd(peer string, a *authAttempts, err error) {
	var authErr *ssh.ServerAuthError
	isAuth := errors.As(err, &authErr)
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		s.log.Warn("login grace expired", "peer", peer, "user", a.user, "failures", a.failures, "after", s.cfg.HandshakeTimeout)
	case isAuth && len(authErr.Errors) > 0 && strings.Contains(authErr.Errors[len(authErr.Errors)-1].Error(), "too many authentication"):
		s.log.Warn("too many auth failures", "peer", peer, "user", a.user, "failures", a.failures)
	case isAuth:
		s.log.Info("client left before authenticating", "peer", peer, "user", a.user, "failures", a.failures)
	case errors.Is(err, io.EOF) && a.user == "":
		s.log.Debug("connection closed before authentication", "peer", peer, "err", err)
	default:
		s.log.Warn("handshake failed", "peer", peer, "user", a.user, "err", err)
	}
}

// loginGrace sets c's deadline for the handshake, if there is one.
func (s *Server) loginGrace(c net.Conn) {
	if s.cfg.HandshakeTimeout > 0 {
		c.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	}
}
