package tunnel

import (
	"errors"
	"strings"
	"testing"
)

func TestAuthRefused(t *testing.T) {
	sshErr := errors.New("ssh: handshake failed: ssh: unable to authenticate")
	notListed := bannerPrefix + "SHA256:aaa: " + bannerNotListed + "\r\n"
	from := bannerPrefix + "SHA256:bbb: it is in the server's authorized_keys, but its from= option does not allow your address (192.0.2.7)\r\n"
	for _, tc := range []struct {
		name, banners string
		want, not     []string
	}{
		{"not listed", notListed, []string{"refused our keys", "no key offered is in the server's authorized_keys (SHA256:aaa)", "add your public key", "-i"}, []string{"from="}},
		{"from", "Welcome to the machine\n" + from, []string{"key SHA256:bbb", "from=", "192.0.2.7", "adding a key will not help"}, []string{"add your public key", "Welcome"}},
		{"from and one not listed", notListed + from, []string{"key SHA256:bbb", "from=", "(SHA256:aaa) are not in it"}, []string{"add your public key"}},
		{"stock sshd", "", []string{"either the key is not in the server's authorized_keys", "add your public key", "from=", "expiry-time="}, nil},
		{"forged line", bannerPrefix + "SHA256:a b: x\n", []string{"either the key"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := authRefused("host:22", "me", tc.banners, sshErr)
			if !errors.Is(err, sshErr) {
				t.Errorf("does not wrap the ssh error: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("does not say %q: %v", w, err)
				}
			}
			for _, w := range tc.not {
				if strings.Contains(err.Error(), w) {
					t.Errorf("says %q: %v", w, err)
				}
			}
		})
	}
}

func TestAuthBanners(t *testing.T) {
	var b authBanners
	b.record("one\n")
	b.record(strings.Repeat("x", maxBannerBytes))
	b.record("two\n")
	if got := b.take(); got != "one\ntwo\n" {
		t.Fatalf("take = %q, want the two small banners (the big one is past the bound)", got)
	}
	if got := b.take(); got != "" {
		t.Fatalf("second take = %q, want nothing", got)
	}
}
