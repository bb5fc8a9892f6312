package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/pinhole-dev/pinhole/internal/ssh"
)

// LoadOrCreateHostKey reads the server's OpenSSH private key from path or,
// if the file does not exist, generates an ed25519 key and writes it there
// (OpenSSH format, mode 0600, the directory created with mode 0700).
// created reports which happened. Like sshd, it refuses a key file that
// others can read.
func LoadOrCreateHostKey(path string) (signer ssh.Signer, created bool, err error) {
	signer, err = loadHostKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return signer, false, err
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, false, fmt.Errorf("auth: generating host key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "pinhole host key")
	if err != nil {
		return nil, false, fmt.Errorf("auth: encoding host key: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, fmt.Errorf("auth: creating host key directory: %w", err)
	}
	// O_EXCL: if another process created the key meanwhile, use theirs.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		signer, err = loadHostKey(path)
		return signer, false, err
	}
	if err != nil {
		return nil, false, fmt.Errorf("auth: writing host key: %w", err)
	}
	_, err = f.Write(pem.EncodeToMemory(block))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, false, fmt.Errorf("auth: writing host key: %w", err)
	}
	signer, err = ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, false, fmt.Errorf("auth: host key: %w", err)
	}
	return signer, true, nil
}

// loadHostKey reads and parses a host key; the error wraps
// fs.ErrNotExist if the file is missing.
func loadHostKey(path string) (ssh.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: reading host key: %w", err)
	}
	if err := checkKeyFileMode(path); err != nil {
		return nil, err
	}
	s, err := ssh.ParsePrivateKey(data)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		return nil, fmt.Errorf("auth: host key %s is protected by a passphrase; a server key cannot be: "+
			"remove the passphrase with ssh-keygen -p -N '' -f %s", path, path)
	}
	if err != nil {
		return nil, fmt.Errorf("auth: host key %s: %w", path, err)
	}
	return s, nil
}

// DefaultHostKeyPath is the host key's file in pinhole's state
// directory stateDir, which the caller finds (cli: $STATE_DIRECTORY under
// systemd, else $XDG_STATE_HOME/pinhole or ~/.local/state/pinhole).
func DefaultHostKeyPath(stateDir string) string {
	return filepath.Join(stateDir, "host_ed25519_key")
}
