package tunnel

import (
	"fmt"
	"strings"
	"sync"
)

// authBanners keeps the userauth banners a server sends while a client
// logs in, so that a refusal can say why (authRefused). Its record method
// is an ssh.BannerCallback; its zero value is ready.
type authBanners struct {
	mu   sync.Mutex
	msgs []string
}

// maxBannerBytes bounds what authBanners keeps of one login: a server may
// send any number of banners.
const maxBannerBytes = 8 << 10

// record is the ssh.ClientConfig.BannerCallback.
func (b *authBanners) record(msg string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, m := range b.msgs {
		n += len(m)
	}
	if n+len(msg) <= maxBannerBytes {
		b.msgs = append(b.msgs, msg)
	}
	return nil
}

// take returns the banners recorded since the last take, and forgets them.
func (b *authBanners) take() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := strings.Join(b.msgs, "")
	b.msgs = nil
	return s
}

// keyRefusal is what one pinhole banner said about one key.
type keyRefusal struct {
	key, why string
}

// parseRefusals reads the lines of pinhole server's refusal banners
// (serverauth.go, docs/protocol.md) out of banners; other lines, such as
// a stock sshd's Banner, are left out.
func parseRefusals(banners string) (notListed []string, byOption []keyRefusal) {
	for _, line := range strings.Split(banners, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimRight(line, "\r"), bannerPrefix)
		if !ok {
			continue
		}
		key, why, ok := strings.Cut(rest, ": ")
		if !ok || !strings.HasPrefix(key, "SHA256:") || strings.ContainsAny(key, " \t") {
			continue
		}
		if why == bannerNotListed {
			notListed = append(notListed, key)
		} else {
			byOption = append(byOption, keyRefusal{key, why})
		}
	}
	return notListed, byOption
}

// isAuthRefusal reports whether err, from ssh.NewClientConn, means the
// server refused every key we offered: it said so, or it disconnected us
// for too many failures (MaxAuthTries: more keys offered than it allows).
func isAuthRefusal(err error) bool {
	s := err.Error()
	return strings.Contains(s, "unable to authenticate") || strings.Contains(s, "too many authentication failures")
}

// authRefused is the error for a server at addr that refused every key
// offered for user, built from the banners it sent during that login and
// the ssh package's error err. A pinhole server says, per key, whether it
// is not in authorized_keys or an option of its line (from=, expiry-time=)
// refused it, and the error says which and what to do. A server that
// says nothing (a stock sshd) gets an error that names both
// possibilities.
func authRefused(addr, user, banners string, err error) error {
	notListed, byOption := parseRefusals(banners)
	switch {
	case len(byOption) > 0:
		var b strings.Builder
		for i, r := range byOption {
			if i > 0 {
				b.WriteString("; ")
			}
			fmt.Fprintf(&b, "key %s: %s", r.key, r.why)
		}
		if len(notListed) > 0 {
			fmt.Fprintf(&b, "; the other keys offered (%s) are not in it", strings.Join(notListed, ", "))
		}
		hint := "the server's admin must change that option of its authorized_keys line"
		if strings.Contains(b.String(), "from=") {
			hint += ", or connect from an address its from= allows"
		}
		return fmt.Errorf("tunnel: %s refused our keys for user %q: %s; adding a key will not help: %s (%w)", addr, user, b.String(), hint, err)
	case len(notListed) > 0:
		return fmt.Errorf("tunnel: %s refused our keys for user %q: no key offered is in the server's authorized_keys (%s): add your public key (~/.ssh/id_ed25519.pub) to it, or name the right one with -i (%w)", addr, user, strings.Join(notListed, ", "), err)
	}
	return fmt.Errorf("tunnel: %s refused our keys for user %q: either the key is not in the server's authorized_keys (add your public key, ~/.ssh/id_ed25519.pub, to it, or name the right one with -i), or an option on its line refuses it (from= without your address, or an expiry-time= that has passed); the server's log says which (%w)", addr, user, err)
}
