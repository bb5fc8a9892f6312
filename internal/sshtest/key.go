package sshtest

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pinhole-dev/pinhole/internal/ssh"
)

// Key is an ed25519 key pair, in memory and in OpenSSH's files.
type Key struct {
	Signer ssh.Signer
	Public ssh.PublicKey

	PrivateFile string // OpenSSH private key, mode 0600
	PublicFile  string // PrivateFile + ".pub"

	// AuthorizedLine is the public key as one line of authorized_keys or a
	// .pub file, comment and newline included: "ssh-ed25519 AAAA... name\n".
	AuthorizedLine string
}

// NewKey makes a fresh key pair and writes it to dir/name and
// dir/name.pub, with name as the comment.
func NewKey(t testing.TB, dir, name string) *Key {
	t.Helper()
	k, err := WriteKey(dir, name)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// WriteKey is NewKey for a program that is not a test (the benchmark
// command): it returns the error instead of failing a test.
func WriteKey(dir, name string) (*Key, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("sshtest: generating key %s: %w", name, err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, fmt.Errorf("sshtest: key %s: %w", name, err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("sshtest: key %s: %w", name, err)
	}
	block, err := ssh.MarshalPrivateKey(priv, name)
	if err != nil {
		return nil, fmt.Errorf("sshtest: key %s: %w", name, err)
	}
	k := &Key{
		Signer:         signer,
		Public:         sshPub,
		PrivateFile:    filepath.Join(dir, name),
		PublicFile:     filepath.Join(dir, name+".pub"),
		AuthorizedLine: strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(sshPub)), "\n") + " " + name + "\n",
	}
	if err := os.WriteFile(k.PrivateFile, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, fmt.Errorf("sshtest: %w", err)
	}
	if err := os.WriteFile(k.PublicFile, []byte(k.AuthorizedLine), 0o644); err != nil {
		return nil, fmt.Errorf("sshtest: %w", err)
	}
	return k, nil
}
