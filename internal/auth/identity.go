package auth

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"

	"github.com/pinhole-dev/pinhole/internal/ssh"
	"github.com/pinhole-dev/pinhole/internal/ssh/agent"
)

// defaultIdentities are tried, in order, in ~/.ssh when no identity file
// is named, as ssh(1) does.
func defaultIdentities() ([]string, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return nil, fmt.Errorf("auth: finding default identity files: %w; pass an identity file explicitly", err)
	}
	dir := filepath.Join(home, ".ssh")
	return []string{
		filepath.Join(dir, "id_ed25519"),
		filepath.Join(dir, "id_ecdsa"),
		filepath.Join(dir, "id_rsa"),
	}, nil
}

// ClientSigners returns the signers for public key authentication: those
// of the ssh-agent listening on agentSocket (usually $SSH_AUTH_SOCK; ""
// means none; an agent that cannot be reached is skipped), followed by
// those from the identity files. If files is empty, ~/.ssh/id_ed25519,
// id_ecdsa and id_rsa are tried and missing ones skipped; a named file
// that is missing or unreadable is an error. A passphrase-protected file
// whose key the agent does not hold is an error: pinhole does not prompt,
// the key must be added to the agent with ssh-add; among the default files
// such a key is skipped, and only reported when no key is left. A file key
// the agent already holds is not returned twice. A named file that does
// not exist, beside others that do, is passed to warn (nil: dropped) and
// skipped, as ssh does; every named file missing is an error. Having no
// signer at all is an error too.
//
// closeFn closes the agent connection; it is never nil and must be called
// once the signers are no longer used.
func ClientSigners(files []string, agentSocket string, warn func(error)) (signers []ssh.Signer, closeFn func() error, err error) {
	return Signers{Files: files, AgentSocket: agentSocket, Warn: warn}.Load()
}

// Signers says which keys Load returns, as ssh's -i, IdentityFile,
// IdentityAgent and IdentitiesOnly do.
type Signers struct {
	// Files are named on the command line (-i): a missing one is an error.
	Files []string
	// ConfigFiles come from ssh_config's IdentityFile: a missing one is
	// skipped, as ssh skips it. With no Files and no ConfigFiles the
	// defaults are tried (ClientSigners).
	ConfigFiles []string
	// AgentSocket is the ssh-agent's socket; "" means no agent.
	AgentSocket string
	// IdentitiesOnly keeps only the agent's keys whose public key one of
	// the identity files (or its .pub) holds, as ssh's IdentitiesOnly.
	IdentitiesOnly bool
	// Warn is told of each of Files that does not exist when others do
	// (they are skipped); nil drops the warnings.
	Warn func(error)
}

// Load returns the signers as ClientSigners documents, for o's files.
func (o Signers) Load() (signers []ssh.Signer, closeFn func() error, err error) {
	closeFn = func() error { return nil }
	type file struct {
		path     string
		required bool
	}
	var files []file
	for _, f := range o.Files {
		files = append(files, file{f, true})
	}
	for _, f := range o.ConfigFiles {
		if !slices.Contains(o.Files, f) {
			files = append(files, file{f, false})
		}
	}
	if len(files) == 0 {
		defaults, err := defaultIdentities()
		if err != nil {
			return nil, closeFn, err
		}
		for _, f := range defaults {
			files = append(files, file{f, false})
		}
	}
	if o.AgentSocket != "" {
		if conn, err := net.Dial("unix", o.AgentSocket); err == nil {
			if as, err := agent.NewClient(conn).Signers(); err == nil {
				if o.IdentitiesOnly {
					as = slices.DeleteFunc(as, func(s ssh.Signer) bool {
						for _, f := range files {
							if pub := filePublicKey(f.path); pub != nil && bytes.Equal(pub.Marshal(), s.PublicKey().Marshal()) {
								return false
							}
						}
						return true
					})
				}
				signers = append(signers, as...)
				closeFn = conn.Close
			} else {
				conn.Close()
			}
		}
	}
	var skipped error   // a key that could not be used and was not required
	var missing []error // of Files, those that do not exist
	for _, f := range files {
		s, err := loadIdentity(f.path, signers)
		switch {
		case errors.Is(err, fs.ErrNotExist) && !f.required:
			continue
		case errors.Is(err, fs.ErrNotExist):
			missing = append(missing, err)
		case err != nil && !f.required:
			// Like ssh, go on with the other keys; say why only if none
			// is left.
			skipped = err
		case err != nil:
			closeFn()
			return nil, func() error { return nil }, err
		case s != nil:
			signers = append(signers, s)
		}
	}
	if len(o.Files) > 0 && len(missing) == len(o.Files) {
		closeFn()
		return nil, func() error { return nil }, missing[0]
	}
	if o.Warn != nil {
		for _, err := range missing {
			o.Warn(err)
		}
	}
	if len(signers) == 0 {
		closeFn()
		if skipped != nil {
			return nil, func() error { return nil }, skipped
		}
		return nil, func() error { return nil }, errors.New("auth: no identities: no ssh-agent keys and no identity file; " +
			"create a key with ssh-keygen -t ed25519, or name one with -i FILE")
	}
	return signers, closeFn, nil
}

// filePublicKey is the public key of the identity file at path: from the
// private key (even an encrypted one in OpenSSH's format), else from
// path.pub; nil if neither says.
func filePublicKey(path string) ssh.PublicKey {
	if data, err := os.ReadFile(path); err == nil {
		s, err := ssh.ParsePrivateKey(data)
		var missing *ssh.PassphraseMissingError
		switch {
		case err == nil:
			return s.PublicKey()
		case errors.As(err, &missing) && missing.PublicKey != nil:
			return missing.PublicKey
		}
	}
	return readPublicKey(path + ".pub")
}

// loadIdentity reads the private key at path. It returns nil, nil when the
// key is encrypted but one of have (the agent's keys) is its public key.
func loadIdentity(path string, have []ssh.Signer) (ssh.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("auth: identity file %s does not exist; check the path or create a key with ssh-keygen -t ed25519 -f %s: %w", path, path, err)
		}
		return nil, fmt.Errorf("auth: cannot read identity file: %w", err)
	}
	s, err := ssh.ParsePrivateKey(data)
	var missing *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &missing):
		pub := missing.PublicKey
		if pub == nil {
			// Older PEM files carry no public key; ssh(1) then reads FILE.pub.
			pub = readPublicKey(path + ".pub")
		}
		if pub != nil && holds(have, pub) {
			return nil, nil
		}
		return nil, fmt.Errorf("auth: identity file %s is protected by a passphrase and pinhole does not prompt for it; "+
			"add it to ssh-agent with ssh-add %s", path, path)
	case err != nil:
		if _, _, _, _, perr := ssh.ParseAuthorizedKey(data); perr == nil {
			return nil, fmt.Errorf("auth: identity file %s holds a public key; name the private key file (without .pub)", path)
		}
		return nil, fmt.Errorf("auth: identity file %s: %w", path, err)
	}
	if holds(have, s.PublicKey()) {
		return nil, nil
	}
	return s, nil
}

// readPublicKey returns the public key in the file at path, or nil.
func readPublicKey(path string) ssh.PublicKey {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey(data)
	if err != nil {
		return nil
	}
	return k
}

// holds reports whether one of signers has the public key k.
func holds(signers []ssh.Signer, k ssh.PublicKey) bool {
	want := k.Marshal()
	for _, s := range signers {
		if bytes.Equal(s.PublicKey().Marshal(), want) {
			return true
		}
	}
	return false
}
