// Package vhost gives remote forwards public names: `ssh -R
// myapp:80:localhost:3000 server` makes http://myapp.DOMAIN and
// https://myapp.DOMAIN reach the user's port 3000. A Router is both the
// http.Handler that serves those names (behind transport.Dispatcher, on
// the server's shared ports) and the tunnel.NameListener that a remote
// forward asking for a name gets its listener from, so that a name
// registers as a port does (and is taken over from a dead connection of
// the same key as a port is). Which key holds which name lives in a
// Store, a file now, something shared for a fleet later.
package vhost

import (
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// ErrNotAName is CheckName's error for a bind address that is an address,
// not a name: such a forward listens as today.
var ErrNotAName = errors.New("vhost: not a name")

// IsNameRequest reports whether a remote forward's bind address asks for
// a name rather than an address: anything but "", "*", "localhost" and IP
// addresses.
func IsNameRequest(bindHost string) bool {
	switch bindHost {
	case "", "*", "localhost":
		return false
	}
	if _, err := netip.ParseAddr(strings.Trim(bindHost, "[]")); err == nil {
		return false
	}
	return true
}

// CheckName checks a name a forward asks for: a DNS label, lowercase
// letters, digits and hyphens, 1 to 63 of them, not starting or ending
// with a hyphen. The error says why not, for the ssh user to read.
func CheckName(name string) error {
	switch {
	case name == "":
		return errors.New("vhost: an empty name")
	case len(name) > 63:
		return fmt.Errorf("vhost: name %q is %d characters; a DNS label has at most 63", name, len(name))
	case strings.Contains(name, "."):
		return fmt.Errorf("vhost: name %q has a dot: ask for one label, such as myapp, and the server adds its domain", name)
	case name[0] == '-' || name[len(name)-1] == '-':
		return fmt.Errorf("vhost: name %q starts or ends with a hyphen, which a DNS label cannot", name)
	}
	for _, r := range name {
		switch {
		case 'a' <= r && r <= 'z', '0' <= r && r <= '9', r == '-':
		case 'A' <= r && r <= 'Z':
			return fmt.Errorf("vhost: name %q has capitals: ask for %q (names are lowercase, as DNS compares them)", name, strings.ToLower(name))
		default:
			return fmt.Errorf("vhost: name %q has %q: a name is lowercase letters, digits and hyphens", name, r)
		}
	}
	return nil
}

// IsDomain reports whether a name is a custom domain (shop.example.org):
// it has a dot, where a name under the server's domain is one label.
func IsDomain(name string) bool { return strings.Contains(name, ".") }

// CheckDomain checks a custom domain a forward asks for: labels as
// CheckName's, at least two, at most 253 characters in all.
func CheckDomain(name string) error {
	if len(name) > 253 {
		return fmt.Errorf("vhost: domain %q is %d characters; a DNS name has at most 253", name, len(name))
	}
	labels := strings.Split(name, ".")
	if len(labels) < 2 {
		return fmt.Errorf("vhost: %q is one label, not a domain", name)
	}
	for _, l := range labels {
		if err := CheckName(l); err != nil {
			return fmt.Errorf("vhost: domain %q: %s", name, strings.TrimPrefix(err.Error(), "vhost: "))
		}
	}
	return nil
}

// KeyName is the name the server gives a forward that asks for none
// (`-R 80:localhost:3000`): derived from the key's fingerprint, so that
// it is the same on every connection of that key.
func KeyName(fingerprint string) string {
	sum := sha256.Sum256([]byte(fingerprint))
	return "k" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:])[:11])
}
