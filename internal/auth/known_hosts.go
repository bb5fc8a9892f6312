package auth

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/pinhole-dev/pinhole/internal/ssh"
	"github.com/pinhole-dev/pinhole/internal/ssh/knownhosts"
)

// HostKeyMode says what to do with a server's host key.
type HostKeyMode int

const (
	// HostKeyYes accepts only keys listed in known_hosts.
	HostKeyYes HostKeyMode = iota
	// HostKeyAcceptNew adds the key of a host not yet listed, like
	// OpenSSH's StrictHostKeyChecking=accept-new; a changed key is still
	// refused.
	HostKeyAcceptNew
	// HostKeyNo accepts any key. It gives up protection against
	// man-in-the-middle attacks.
	HostKeyNo
)

// String returns the spelling ParseHostKeyMode takes.
func (m HostKeyMode) String() string {
	switch m {
	case HostKeyYes:
		return "yes"
	case HostKeyAcceptNew:
		return "accept-new"
	case HostKeyNo:
		return "no"
	}
	return fmt.Sprintf("HostKeyMode(%d)", int(m))
}

// ParseHostKeyMode parses "yes", "accept-new" or "no".
func ParseHostKeyMode(s string) (HostKeyMode, error) {
	switch s {
	case "yes":
		return HostKeyYes, nil
	case "accept-new":
		return HostKeyAcceptNew, nil
	case "no":
		return HostKeyNo, nil
	}
	return 0, fmt.Errorf("auth: unknown host key check mode %q; use yes, accept-new or no", s)
}

var (
	// ErrHostKeyMismatch is wrapped by the host key callback's error when
	// the server's key differs from the one in known_hosts.
	ErrHostKeyMismatch = errors.New("auth: host key mismatch")
	// ErrHostKeyUnknown is wrapped by the host key callback's error when
	// the mode is HostKeyYes and the host is not in known_hosts.
	ErrHostKeyUnknown = errors.New("auth: host key unknown")
)

// KnownHosts checks server host keys against an OpenSSH known_hosts file.
// It is safe for concurrent use.
type KnownHosts struct {
	path string   // read, and where new keys are added
	more []string // read too
	mode HostKeyMode
	log  *slog.Logger

	mu     sync.Mutex
	check  ssh.HostKeyCallback // from knownhosts.New; replaced after an append
	warned bool                // HostKeyNo warning logged
}

// OpenKnownHosts reads the known_hosts file at path; a missing file counts
// as empty. With HostKeyAcceptNew the key of an unknown host is appended
// to the file (created with mode 0600, its directory 0700) as OpenSSH
// does: the host name normalised with knownhosts.Normalize, so
// "[127.0.0.1]:2222" for ports other than 22. A nil log discards.
func OpenKnownHosts(path string, mode HostKeyMode, log *slog.Logger) (*KnownHosts, error) {
	return OpenKnownHostsFiles([]string{path}, mode, log)
}

// OpenKnownHostsFiles is OpenKnownHosts for several files, as ssh's
// UserKnownHostsFile lists them: all are read, and a new key is added to
// the first.
func OpenKnownHostsFiles(paths []string, mode HostKeyMode, log *slog.Logger) (*KnownHosts, error) {
	if len(paths) == 0 {
		return nil, errors.New("auth: no known_hosts file; name one")
	}
	path := paths[0]
	if mode < HostKeyYes || mode > HostKeyNo {
		return nil, fmt.Errorf("auth: invalid host key mode %d", int(mode))
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	k := &KnownHosts{path: path, more: paths[1:], mode: mode, log: log}
	if err := k.reload(); err != nil {
		if mode != HostKeyNo {
			return nil, err
		}
		// Nothing is checked: a broken file must not stop the connection.
		if k.check, err = knownhosts.New(); err != nil {
			return nil, fmt.Errorf("auth: known hosts: %w", err)
		}
	}
	return k, nil
}

// reload reads the file again; k.mu is held or k is not yet shared.
func (k *KnownHosts) reload() error {
	var files []string
	for _, p := range append([]string{k.path}, k.more...) {
		if _, err := os.Stat(p); err == nil {
			files = append(files, p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("auth: known hosts: %w", err)
		}
	}
	cb, err := knownhosts.New(files...)
	if err != nil {
		return fmt.Errorf("auth: known hosts files %s: %w; fix or remove the bad lines", strings.Join(files, ", "), err)
	}
	k.check = cb
	return nil
}

// Callback returns the callback for ssh.ClientConfig.HostKeyCallback.
func (k *KnownHosts) Callback() ssh.HostKeyCallback {
	return k.verify
}

func (k *KnownHosts) verify(hostname string, remote net.Addr, key ssh.PublicKey) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.mode == HostKeyNo {
		if !k.warned {
			k.warned = true
			k.log.Warn("HOST KEY CHECKING IS OFF: any server, or anyone in the path to it, can pose as it; use --host-key-check accept-new or yes",
				"host", hostname, "fingerprint", ssh.FingerprintSHA256(key))
		}
		return nil
	}
	err := k.check(hostname, remote, key)
	if err == nil {
		return nil
	}
	var revoked *knownhosts.RevokedError
	if errors.As(err, &revoked) {
		return fmt.Errorf("auth: host key %s of %s is marked @revoked in %s line %d; refusing to connect: %w",
			ssh.FingerprintSHA256(key), hostname, revoked.Revoked.Filename, revoked.Revoked.Line, err)
	}
	var keyErr *knownhosts.KeyError
	if !errors.As(err, &keyErr) {
		return fmt.Errorf("auth: checking host key of %s: %w", hostname, err)
	}
	host := knownhosts.Normalize(hostname)
	if len(keyErr.Want) > 0 {
		w := keyErr.Want[0]
		return fmt.Errorf("%w: %s presented %s key %s, but %s line %d has a different %s key for it. "+
			"This may be an attack (someone in the middle), or the server's key really changed. "+
			"If you are sure it changed, remove the old key with: ssh-keygen -R '%s' -f %s",
			ErrHostKeyMismatch, hostname, key.Type(), ssh.FingerprintSHA256(key),
			w.Filename, w.Line, w.Key.Type(), host, k.path)
	}
	if k.mode != HostKeyAcceptNew {
		h, p, err := net.SplitHostPort(hostname)
		if err != nil {
			h, p = hostname, "22"
		}
		return fmt.Errorf("%w: %s (%s key %s) is not in %s. "+
			"Compare the fingerprint with the server's, then connect once with --host-key-check accept-new, "+
			"or add it with: ssh-keyscan -p %s %s >> %s",
			ErrHostKeyUnknown, hostname, key.Type(), ssh.FingerprintSHA256(key), k.path, p, h, k.path)
	}
	if err := k.appendLine(knownhosts.Line([]string{host}, key)); err != nil {
		return err
	}
	k.log.Info("added host key to known hosts", "host", host, "fingerprint", ssh.FingerprintSHA256(key), "file", k.path)
	return k.reload()
}

// appendLine appends line to the file, creating it and its directory.
func (k *KnownHosts) appendLine(line string) error {
	if err := os.MkdirAll(filepath.Dir(k.path), 0o700); err != nil {
		return fmt.Errorf("auth: adding host key: %w", err)
	}
	f, err := os.OpenFile(k.path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("auth: adding host key: %w", err)
	}
	// Start on a new line if the file does not end with one.
	if fi, err := f.Stat(); err == nil && fi.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, fi.Size()-1); err == nil && last[0] != '\n' {
			line = "\n" + line
		}
	}
	_, err = f.WriteString(line + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("auth: adding host key: %w", err)
	}
	return nil
}

// Algorithms returns the host key algorithms for
// ssh.ClientConfig.HostKeyAlgorithms so that the server at hostport
// presents a key of a type known for it: a known ssh-rsa key gives
// rsa-sha2-512, rsa-sha2-256 and ssh-rsa. It returns nil when the host is
// unknown, or known only with key types x/crypto/ssh cannot check.
func (k *KnownHosts) Algorithms(hostport string) []string {
	k.mu.Lock()
	check := k.check
	k.mu.Unlock()
	// The knownhosts package has no lookup: ask it about a key that
	// matches nothing, and read the known keys from the mismatch error.
	err := check(hostport, probeAddr{}, probeKey{})
	var keyErr *knownhosts.KeyError
	if !errors.As(err, &keyErr) {
		return nil
	}
	var algos []string
	for _, w := range keyErr.Want {
		for _, a := range algorithmsFor(w.Key.Type()) {
			if !slices.Contains(algos, a) {
				algos = append(algos, a)
			}
		}
	}
	return algos
}

// algorithmsFor returns the host key algorithms that present a key of
// type typ, or nil if x/crypto/ssh cannot verify them.
func algorithmsFor(typ string) []string {
	switch typ {
	case ssh.KeyAlgoRSA:
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	case ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
		ssh.KeyAlgoMLDSA44, ssh.KeyAlgoMLDSA65, ssh.KeyAlgoMLDSA87:
		return []string{typ}
	}
	return nil
}

// probeKey is a public key that equals no real key.
type probeKey struct{}

func (probeKey) Type() string    { return "pinhole-probe@pinhole" }
func (probeKey) Marshal() []byte { return []byte("\x00\x00\x00\x15pinhole-probe@pinhole") }
func (probeKey) Verify([]byte, *ssh.Signature) error {
	return errors.New("auth: probe key verifies nothing")
}

// probeAddr is the remote address handed along with probeKey; knownhosts
// prefers the host name and only needs this to parse.
type probeAddr struct{}

func (probeAddr) Network() string { return "tcp" }
func (probeAddr) String() string  { return "0.0.0.0:0" }
