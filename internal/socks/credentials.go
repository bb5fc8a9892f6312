package socks

import (
	"bufio"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
)

// StaticCredentials is a set of user:password pairs, keyed by user name.
// Passwords are compared in constant time.
type StaticCredentials map[string]string

// Valid reports whether password is the password of user.
func (s StaticCredentials) Valid(user, password string) bool {
	want, ok := s[user]
	// Compare digests, so that neither the length nor the content of the
	// password shows in the time taken, and compare even for an unknown
	// user.
	a := sha256.Sum256([]byte(want))
	b := sha256.Sum256([]byte(password))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1 && ok
}

// maxCredential is the longest user name or password SOCKS5 can carry
// (RFC 1929).
const maxCredential = 255

// ParseCredentials parses one "user:password" pair. The password may
// contain colons; neither part may be empty or longer than 255 bytes.
func ParseCredentials(s string) (StaticCredentials, error) {
	user, password, err := parsePair(s)
	if err != nil {
		return nil, fmt.Errorf("socks: %w", err)
	}
	return StaticCredentials{user: password}, nil
}

// parsePair parses "user:password"; its errors have no package prefix.
func parsePair(s string) (user, password string, err error) {
	user, password, ok := strings.Cut(s, ":")
	switch {
	case !ok || user == "" || password == "":
		return "", "", errors.New(`proxy credentials must be "user:password" with neither part empty`)
	case len(user) > maxCredential || len(password) > maxCredential:
		return "", "", fmt.Errorf("proxy user name and password must be at most %d bytes each", maxCredential)
	case strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return "", "", errors.New("proxy credentials must not contain control characters")
	}
	return user, password, nil
}

// LoadCredentialsFile reads user:password pairs from the file at path, one
// a line. Blank lines and lines starting with # are skipped; spaces around
// a line are not part of it.
func LoadCredentialsFile(path string) (StaticCredentials, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("socks: proxy credentials: %w", err)
	}
	defer f.Close()
	creds := make(StaticCredentials)
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, password, err := parsePair(line)
		if err != nil {
			return nil, fmt.Errorf("socks: %s:%d: %w", path, n, err)
		}
		if _, dup := creds[user]; dup {
			return nil, fmt.Errorf("socks: %s:%d: user %q appears twice; keep one line per user", path, n, user)
		}
		creds[user] = password
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("socks: reading %s: %w", path, err)
	}
	if len(creds) == 0 {
		return nil, fmt.Errorf("socks: %s has no user:password lines", path)
	}
	return creds, nil
}

// ErrOpenProxy is returned by CheckOpen for a proxy that anyone who can
// reach it could use.
var ErrOpenProxy = errors.New("socks: refusing to run an open proxy")

// CheckOpen returns an error wrapping ErrOpenProxy if a proxy listening on
// addr ("host:port") would be reachable from other machines without
// authentication. Loopback addresses, and "localhost", are fine; an empty
// host, an unspecified address or any other name or address is not.
func CheckOpen(addr string, hasAuth bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("socks: listen address %q: %w", addr, err)
	}
	if hasAuth || host == "localhost" {
		return nil
	}
	if ip, err := netip.ParseAddr(host); err == nil && ip.Unmap().IsLoopback() {
		return nil
	}
	return fmt.Errorf("%w on %s without authentication: anyone who can reach it could use it; "+
		"set --proxy-auth user:pass or --proxy-auth-file FILE, listen on 127.0.0.1, "+
		"or pass --allow-open-proxy if that is really what you want", ErrOpenProxy, addr)
}
