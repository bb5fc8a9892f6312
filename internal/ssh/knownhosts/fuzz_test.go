package knownhosts

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/pinhole-dev/pinhole/internal/ssh"
)

// FuzzKnownHosts reads arbitrary known_hosts contents (pinhole's addition
// to the fork; see FORK.md). Read never panics; every entry it keeps names
// a line of the input and holds a key; a check of any key against it ends
// in nil, a *KeyError or a *RevokedError; and each key kept, written back
// with Line or as a hashed entry, reads back as an entry that accepts that
// key for that host.
func FuzzKnownHosts(f *testing.F) {
	for _, s := range []string{
		"server.org,1.2.3.4 " + edKeyStr,
		"[server.org]:2222 " + ecKeyStr + " comment",
		"*.example.com,!bad.example.com " + edKeyStr + "\n# comment\n\n\tserver.org " + alternateEdKeyStr,
		"@cert-authority *.example.com " + edKeyStr,
		"@revoked * " + alternateEdKeyStr,
		"@revoked @cert-authority * " + edKeyStr,
		"|1|JfKTdBh7rNbXkVAQCRp4OQoPfmI=|USECr3SWf1JUPsms5AqfD5QfxkM= " + edKeyStr,
		"h?st.example " + dsaKeyStr + "\r\n",
		"! " + edKeyStr,
		"[::1]:22 " + edKeyStr,
	} {
		f.Add([]byte(s))
	}
	hosts := []string{"server.org:22", "[server.org]:2222", "a.example.com:22", "1.2.3.4:22", "[::1]:22"}
	f.Fuzz(func(t *testing.T, data []byte) {
		db := newHostKeyDB()
		if err := db.Read(bytes.NewReader(data), "fuzz"); err != nil {
			return
		}
		lines := bytes.Count(data, []byte("\n")) + 1
		keys := []ssh.PublicKey{edKey}
		for _, l := range db.lines {
			if l.knownKey.Key == nil || l.knownKey.Line < 1 || l.knownKey.Line > lines || l.matcher == nil {
				t.Fatalf("entry %+v from %d lines", l.knownKey, lines)
			}
		}
		// Checks cost entries × keys: the properties below look at the
		// first few entries, so that a long input stays quick.
		entries := db.lines[:min(len(db.lines), 8)]
		for _, l := range entries {
			keys = append(keys, l.knownKey.Key)
		}
		for _, k := range db.revoked {
			if k.Key == nil || k.Line < 1 || k.Line > lines {
				t.Fatalf("revoked entry %+v from %d lines", k, lines)
			}
		}
		for _, h := range hosts {
			for _, k := range keys {
				err := db.check(h, testAddr, k)
				var keyErr *KeyError
				var revoked *RevokedError
				if err != nil && !errors.As(err, &keyErr) && !errors.As(err, &revoked) {
					t.Fatalf("check(%s, %s): %v", h, k.Type(), err)
				}
				if db.revoked[plainKeyBlob(k)] != nil && revoked == nil {
					t.Fatalf("check(%s) of a revoked %s key: %v", h, k.Type(), err)
				}
			}
		}
		for _, l := range entries {
			key := l.knownKey.Key
			const host = "[server.org]:2222"
			plain := Line([]string{host}, key)
			hashed := HashHostname(Normalize(host)) + " " + serialize(key)
			for _, line := range []string{plain, hashed} {
				again := newHostKeyDB()
				if err := again.Read(strings.NewReader(line), "again"); err != nil {
					t.Fatalf("%q, from an entry of %q: %v", line, data, err)
				}
				if len(again.lines) != 1 || !keyEq(again.lines[0].knownKey.Key, key) {
					t.Fatalf("%q read back as %d entries", line, len(again.lines))
				}
				if err := again.check(host, testAddr, key); err != nil {
					t.Fatalf("%q does not accept its own key: %v", line, err)
				}
			}
		}
	})
}
