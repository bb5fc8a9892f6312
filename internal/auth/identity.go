package auth

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"

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
// id_ecdsa and id_rsa are tried and missing ones skipped. A named file
// that does not exist is skipped with a warning passed to warn (nil:
// none), as ssh does, while at least one named file exists; when none of
// them does, that is an error. A named file that is unreadable or holds no
// private key is an error. A passphrase-protected file whose key the agent
// does not hold is an error: pinhole does not prompt, the key must be
// added to the agent with ssh-add; among the default files such a key is
// skipped, and only reported when no key is left. A file key the agent
// already holds is not returned twice. Having no signer at all is an
// error too.
//
// closeFn closes the agent connection; it is never nil and must be called
// once the signers are no longer used.
func ClientSigners(files []string, agentSocket string, warn func(error)) (signers []ssh.Signer, closeFn func() error, err error) {
	closeFn = func() error { return nil }
	if agentSocket != "" {
		if conn, err := net.Dial("unix", agentSocket); err == nil {
			if as, err := agent.NewClient(conn).Signers(); err == nil {
				signers = append(signers, as...)
				closeFn = conn.Close
			} else {
				conn.Close()
			}
		}
	}
	explicit := len(files) > 0
	if !explicit {
		if files, err = defaultIdentities(); err != nil {
			closeFn()
			return nil, func() error { return nil }, err
		}
	}
	var skipped error   // a default key that could not be used
	var missing []error // named files that do not exist
	for _, path := range files {
		s, err := loadIdentity(path, signers)
		switch {
		case errors.Is(err, fs.ErrNotExist) && !explicit:
			continue
		case errors.Is(err, fs.ErrNotExist):
			missing = append(missing, err)
		case err != nil && !explicit:
			// Like ssh, go on with the other default keys; say why only
			// if none is left.
			skipped = err
		case err != nil:
			closeFn()
			return nil, func() error { return nil }, err
		case s != nil:
			signers = append(signers, s)
		}
	}
	if explicit && len(missing) == len(files) {
		closeFn()
		return nil, func() error { return nil }, missing[0]
	}
	if warn != nil {
		for _, err := range missing {
			warn(err)
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
