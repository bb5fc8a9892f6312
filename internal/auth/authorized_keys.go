package auth

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pinhole-dev/pinhole/internal/ssh"
)

// AuthorizedKey is one usable line of an authorized_keys file.
type AuthorizedKey struct {
	Key     ssh.PublicKey
	Comment string
	Line    int // 1-based line number in the file
	Options Options
}

// ParseAuthorizedKeys parses a whole authorized_keys file. Good lines
// become keys; each bad line (malformed key, unknown option, bad option
// value, cert-authority, which pinhole does not support) is skipped and
// reported as an error naming its line number. A skipped line means that
// key is refused, which is safe. Blank lines and # comments are ignored.
func ParseAuthorizedKeys(data []byte) (keys []AuthorizedKey, problems []error) {
	for n := 1; len(data) > 0; n++ {
		var line []byte
		line, data, _ = bytes.Cut(data, []byte("\n"))
		s := strings.Trim(string(line), " \t\r")
		if s == "" || s[0] == '#' {
			continue
		}
		k, err := parseAuthorizedKeyLine(s)
		if err != nil {
			problems = append(problems, fmt.Errorf("auth: authorized_keys line %d: %w", n, err))
			continue
		}
		k.Line = n
		keys = append(keys, k)
	}
	return keys, problems
}

// parseAuthorizedKeyLine parses one non-blank, non-comment line:
// [options] keytype base64-key [comment]. Like sshd, it first tries the
// line as a key and only then as options followed by a key.
func parseAuthorizedKeyLine(s string) (AuthorizedKey, error) {
	k, keyErr := parseKey(s)
	if keyErr == nil {
		k.Options = Options{PortForwarding: true, Comment: k.Comment}
		return k, nil
	}
	if looksLikeKeyType(s) {
		return AuthorizedKey{}, keyErr
	}
	optText, rest, err := splitOptions(s)
	if err != nil {
		return AuthorizedKey{}, err
	}
	opts, err := parseOptions(optText)
	if err != nil {
		return AuthorizedKey{}, err
	}
	if rest == "" {
		return AuthorizedKey{}, errors.New("no key after the options; want [options] keytype base64-key [comment]")
	}
	k, err = parseKey(rest)
	if err != nil {
		return AuthorizedKey{}, err
	}
	k.Options = opts
	k.Options.Comment = k.Comment
	return k, nil
}

// parseKey parses "keytype base64-key [comment]".
func parseKey(s string) (AuthorizedKey, error) {
	typ, rest, _ := cutSpace(s)
	blob, comment, _ := cutSpace(rest)
	if blob == "" {
		return AuthorizedKey{}, errors.New("want [options] keytype base64-key [comment]")
	}
	raw, err := base64.StdEncoding.DecodeString(blob)
	if err != nil {
		return AuthorizedKey{}, fmt.Errorf("key %q is not valid base64; copy the whole line from the .pub file", typ)
	}
	key, err := ssh.ParsePublicKey(raw)
	if err != nil {
		return AuthorizedKey{}, fmt.Errorf("bad %s key: %w", typ, err)
	}
	if key.Type() != typ {
		return AuthorizedKey{}, fmt.Errorf("key type %q does not match the key, which is %q", typ, key.Type())
	}
	return AuthorizedKey{Key: key, Comment: comment}, nil
}

// looksLikeKeyType reports whether line starts with a key type name
// rather than options, to report the better of two errors.
func looksLikeKeyType(line string) bool {
	typ, _, _ := cutSpace(line)
	for _, p := range []string{"ssh-", "ecdsa-", "sk-", "rsa-"} {
		if strings.HasPrefix(typ, p) && !strings.ContainsAny(typ, "=,\"") {
			return true
		}
	}
	return false
}

// cutSpace splits s at the first run of spaces and tabs.
func cutSpace(s string) (before, after string, found bool) {
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s, "", false
	}
	return s[:i], strings.TrimLeft(s[i:], " \t"), true
}

// KeyFile is an authorized_keys file that is read again when its
// modification time or size changes, checked with one stat per Lookup, so
// edits take effect without a restart. It is safe for concurrent use.
type KeyFile struct {
	path string
	log  *slog.Logger

	mu      sync.Mutex
	loaded  bool
	modTime time.Time
	size    int64
	keys    []AuthorizedKey
}

// NewKeyFile returns a KeyFile for path; it reads nothing yet. Problems
// found in the file are logged as warnings on every (re)load. A nil log
// discards them.
func NewKeyFile(path string, log *slog.Logger) *KeyFile {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &KeyFile{path: path, log: log}
}

// Load reads the file now. It returns the problems of lines it skipped, and
// an error if the file cannot be read; then the keys loaded before, if
// any, are dropped so that every key is refused.
func (f *KeyFile) Load() (problems []error, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.load()
}

func (f *KeyFile) load() ([]error, error) {
	fi, err := os.Stat(f.path)
	if err == nil {
		var data []byte
		if data, err = os.ReadFile(f.path); err == nil {
			keys, problems := ParseAuthorizedKeys(data)
			f.keys, f.loaded = keys, true
			f.modTime, f.size = fi.ModTime(), fi.Size()
			for _, p := range problems {
				f.log.Warn("skipping authorized key", "file", f.path, "err", p)
			}
			f.log.Debug("loaded authorized keys", "file", f.path, "keys", len(keys))
			return problems, nil
		}
	}
	f.keys, f.loaded = nil, false
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("auth: authorized keys file %s does not exist; create it with one public key per line (e.g. from ~/.ssh/id_ed25519.pub) or pass --authorized-keys: %w", f.path, err)
	}
	return nil, fmt.Errorf("auth: cannot read authorized keys file: %w", err)
}

// Lookup returns the first entry for key, reading the file again first if
// it changed. It returns nil, nil if key is not listed, and an error if the
// file cannot be read; callers must then refuse the key.
func (f *KeyFile) Lookup(key ssh.PublicKey) (*AuthorizedKey, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fi, err := os.Stat(f.path)
	if err != nil || !f.loaded || !fi.ModTime().Equal(f.modTime) || fi.Size() != f.size {
		if _, err := f.load(); err != nil {
			return nil, err
		}
	}
	want := key.Marshal()
	for i := range f.keys {
		if bytes.Equal(f.keys[i].Key.Marshal(), want) {
			k := f.keys[i]
			k.Options.From = slices.Clone(k.Options.From)
			k.Options.PermitOpen = slices.Clone(k.Options.PermitOpen)
			k.Options.PermitListen = slices.Clone(k.Options.PermitListen)
			return &k, nil
		}
	}
	return nil, nil
}
