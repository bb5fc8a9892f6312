// Package config reads the file of `pinhole up`: named tunnels, each to a
// server with its own login, host key check, keepalive and forwards, in
// TOML (docs/config.md lists every key). Parse validates it whole and
// reports each mistake as file:line:col with what to write instead; Diff
// says what a reload must start, stop, restart and change, so that a
// tunnel that did not change is never touched.
//
// The package is pure: it reads no files and no environment. Paths are
// kept as written, relative ones made relative to the config file's
// directory; expanding "~" is the caller's.
package config

import (
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/pinhole-dev/pinhole/internal/spec"
)

// Defaults of the keys left out, the same as pinhole connect's flags.
const (
	DefaultPort           = 22
	DefaultHostKeyCheck   = "accept-new"
	DefaultKeepalive      = 5 * time.Second
	DefaultKeepaliveCount = 3
	DefaultUDPIdle        = 60 * time.Second
	DefaultUDPMaxFlows    = 1024
	DefaultDrain          = 10 * time.Second
)

// Config is one parsed, valid file.
type Config struct {
	// File is the name Parse was given, for messages.
	File string
	// Drain is how long a stopping tunnel's open streams may take to
	// finish: at a reload that removes or restarts it, and at exit.
	Drain time.Duration
	// DebugAddr serves net/http/pprof (--debug-addr); read at start only.
	DebugAddr string
	// Tunnels, sorted by name.
	Tunnels []*Tunnel
}

// Tunnel returns the tunnel named name, or nil.
func (c *Config) Tunnel(name string) *Tunnel {
	for _, t := range c.Tunnels {
		if t.Name == name {
			return t
		}
	}
	return nil
}

// Tunnel is one [tunnel.NAME] table.
type Tunnel struct {
	Name string
	// Conn is what the connection is made with: a change restarts the
	// tunnel.
	Conn Conn
	// Forwards are its -L, -R and -D, in the order of the file (local,
	// then remote, then dynamic); no two are equal. Adding or removing
	// one changes that forward alone.
	Forwards []spec.Forward
	// Files are the files its keys name, for CheckFiles. Not compared:
	// the paths are in Conn.
	Files []FileRef
}

// FileRef is a file a tunnel's key names, and where in the config.
type FileRef struct {
	Key       string // identity, known-hosts, proxy-auth-file or tls-ca
	Path      string // relative ones made relative to the config's directory
	Line, Col int
}

// CheckFiles reports, at the line and column that names it, each file of
// cfg's tunnels that must exist and that check (given a path, with "~"
// left in it) finds missing or unreadable: identity, proxy-auth-file and
// tls-ca files, and known-hosts under host-key-check = "yes".
func CheckFiles(cfg *Config, check func(path string) error) error {
	var es Errors
	for _, t := range cfg.Tunnels {
		for _, f := range t.Files {
			if f.Key == "known-hosts" && t.Conn.HostKeyCheck != "yes" {
				continue // accept-new and no create it
			}
			err := check(f.Path)
			if err == nil {
				continue
			}
			var hint string
			switch f.Key {
			case "identity":
				hint = fmt.Sprintf("create the key with ssh-keygen -t ed25519 -f %s, or fix the path", f.Path)
			case "proxy-auth-file":
				hint = "create it, one user:pass a line, or fix the path"
			case "tls-ca":
				hint = "put the CA certificates (PEM) that signed the server's certificate there, or fix the path"
			default:
				hint = "with host-key-check = \"yes\" it must list the server: add it with ssh-keyscan, or write host-key-check = \"accept-new\""
			}
			es = append(es, &Error{File: cfg.File, Line: f.Line, Col: f.Col, Msg: fmt.Sprintf("%s %q: %v: %s", f.Key, f.Path, err, hint)})
		}
	}
	if len(es) > 0 {
		slices.SortStableFunc(es, func(a, b *Error) int {
			if a.Line != b.Line {
				return a.Line - b.Line
			}
			return a.Col - b.Col
		})
		return es
	}
	return nil
}

// Conn is a tunnel's connection settings, each the value of the
// pinhole connect flag of the same name.
type Conn struct {
	Host string // the destination's host (host = "[user@]host"), or the host of URL
	Port uint16 // -p, or the port of URL (its scheme's default when it names none)
	// URL is the destination when host is written as one (ssh://,
	// tls://, ws://, wss://), as transport.Endpoint.String writes it and
	// without its user (that is User); "" for a plain [user@]host.
	URL            string
	TLSCA          string   // --tls-ca: a PEM file of CA certificates; "" means the system's
	TLSFingerprint string   // --tls-fingerprint: SHA256:... of the server's certificate
	Proxy          string   // --proxy: a proxy URL, "none", or "" for the environment's (for a URL host)
	User           string   // -l, or the user@ of host; "" means the caller's user
	Identity       []string // -i, in order; none means the defaults and ssh-agent
	KnownHosts     string   // --known-hosts; "" means ~/.ssh/known_hosts
	HostKeyCheck   string   // --host-key-check: yes, accept-new or no
	Keepalive      time.Duration
	KeepaliveCount int
	ProxyAuth      string // --proxy-auth user:pass
	ProxyAuthFile  string // --proxy-auth-file
	AllowOpenProxy bool
	UDPIdle        time.Duration
	UDPMaxFlows    int
	Jump           string // -J [user@]host[:port][,...]
	Bind           string // -b ADDR
	AddressFamily  string // "inet" (-4), "inet6" (-6); "" any
}

// Equal reports whether a and b make the same connection.
func (a Conn) Equal(b Conn) bool {
	ia, ib := a.Identity, b.Identity
	a.Identity, b.Identity = nil, nil
	return reflect.DeepEqual(a, b) && slices.Equal(ia, ib)
}

// Error is one mistake in the file, at a line and column (both from 1).
type Error struct {
	File      string
	Line, Col int
	Msg       string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// Errors is every mistake Parse found, in the order of the file.
type Errors []*Error

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// AsErrors returns the mistakes in err, which Parse returned.
func AsErrors(err error) Errors {
	var es Errors
	if errors.As(err, &es) {
		return es
	}
	return nil
}

// resolve makes a relative path relative to the directory of file; "~"
// and "~/..." are left for the caller.
func resolve(file, p string) string {
	if p == "" || p == "~" || strings.HasPrefix(p, "~/") || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(filepath.Dir(file), p)
}

// TunnelKeys, TopKeys and ServerKeys are the keys a [tunnel.NAME] table,
// the top level of up's file and pinhole server's file take, for tests
// that hold them against the flags.
func TunnelKeys() []string { return slices.Clone(tunnelKeys) }
func TopKeys() []string    { return slices.Clone(topKeys) }
func ServerKeys() []string { return slices.Clone(serverKeys) }
