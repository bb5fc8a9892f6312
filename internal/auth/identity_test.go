package auth

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/ssh"
)

// writeKey writes a new ed25519 private key to dir/name, encrypted with
// passphrase unless it is empty, and returns its public key.
func writeKey(t *testing.T, dir, name, passphrase string) ssh.PublicKey {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	writePriv(t, filepath.Join(dir, name), priv, passphrase)
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s.PublicKey()
}

func writePriv(t *testing.T, path string, priv ed25519.PrivateKey, passphrase string) {
	t.Helper()
	var block *pem.Block
	var err error
	if passphrase == "" {
		block, err = ssh.MarshalPrivateKey(priv, "test")
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "test", []byte(passphrase))
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
}

func pubKeys(signers []ssh.Signer) []string {
	var out []string
	for _, s := range signers {
		out = append(out, ssh.FingerprintSHA256(s.PublicKey()))
	}
	return out
}

func TestClientSignersFiles(t *testing.T) {
	dir := t.TempDir()
	plain := writeKey(t, dir, "plain", "")
	writeKey(t, dir, "encrypted", "secret")
	if err := os.WriteFile(filepath.Join(dir, "plain.pub"), ssh.MarshalAuthorizedKey(plain), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "garbage"), []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := func(name string) string { return filepath.Join(dir, name) }

	tests := []struct {
		name    string
		files   []string
		want    []ssh.PublicKey
		wantErr string
	}{
		{"plain", []string{p("plain")}, []ssh.PublicKey{plain}, ""},
		{"twice", []string{p("plain"), p("plain")}, []ssh.PublicKey{plain}, ""},
		{"encrypted", []string{p("encrypted")}, nil, "add it to ssh-agent with ssh-add " + p("encrypted")},
		{"one missing", []string{p("missing"), p("plain")}, []ssh.PublicKey{plain}, ""},
		{"all missing", []string{p("missing"), p("missing2")}, nil, "identity file " + p("missing") + " does not exist"},
		{"public key", []string{p("plain.pub")}, nil, "without .pub"},
		{"garbage", []string{p("garbage")}, nil, "auth: identity file " + p("garbage")},
		{"no agent here", []string{p("plain")}, []ssh.PublicKey{plain}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sock := ""
			if tt.name == "no agent here" {
				sock = p("no-such-agent.sock")
			}
			var warned []string
			signers, closeFn, err := ClientSigners(tt.files, sock, func(err error) { warned = append(warned, err.Error()) })
			if closeFn == nil {
				t.Fatal("closeFn is nil")
			}
			defer closeFn()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ClientSigners = %v, %v; want error containing %q", pubKeys(signers), err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(signers) != len(tt.want) {
				t.Fatalf("got %d signers, want %d", len(signers), len(tt.want))
			}
			if tt.name == "one missing" {
				if len(warned) != 1 || !strings.Contains(warned[0], p("missing")+" does not exist") {
					t.Fatalf("warnings %q; want one about %s", warned, p("missing"))
				}
			} else if len(warned) > 0 {
				t.Fatalf("warnings %q; want none", warned)
			}
			for i, k := range tt.want {
				if !bytes.Equal(signers[i].PublicKey().Marshal(), k.Marshal()) {
					t.Errorf("signer %d differs", i)
				}
			}
		})
	}
}

func TestClientSignersDefaults(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HOME", home)
	if _, _, err := ClientSigners(nil, "", nil); err == nil || !strings.Contains(err.Error(), "ssh-keygen") {
		t.Fatalf("no keys at all: %v, want an error that says how to create one", err)
	}
	sshDir := filepath.Join(home, ".ssh")
	if err := os.Mkdir(sshDir, 0o700); err != nil {
		t.Fatal(err)
	}
	ecdsa := writeKey(t, sshDir, "id_ecdsa", "") // only the middle default exists
	signers, closeFn, err := ClientSigners(nil, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeFn()
	if len(signers) != 1 || !bytes.Equal(signers[0].PublicKey().Marshal(), ecdsa.Marshal()) {
		t.Fatalf("signers = %v, want the id_ecdsa key", pubKeys(signers))
	}
}

// startAgent starts a real ssh-agent on a socket in a temp dir and stops
// it when the test ends.
func startAgent(t *testing.T) string {
	t.Helper()
	for _, bin := range []string{"ssh-agent", "ssh-add"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s not installed (Debian package openssh-client); skipping the agent test", bin)
		}
	}
	// A short directory: unix socket paths are limited to about 100 bytes.
	dir, err := os.MkdirTemp("", "pha")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "agent.sock")
	cmd := exec.Command("ssh-agent", "-D", "-a", sock)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	for i := 0; i < 200; i++ { // at most about 10 s
		if _, err := os.Stat(sock); err == nil {
			return sock
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("ssh-agent did not create its socket")
	return ""
}

func TestClientSignersAgent(t *testing.T) {
	sock := startAgent(t)
	dir := t.TempDir()

	// The same key in two files: plain for ssh-add, encrypted for us.
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	writePriv(t, filepath.Join(dir, "plain"), priv, "")
	writePriv(t, filepath.Join(dir, "encrypted"), priv, "secret")
	agentSigner, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	add := exec.Command("ssh-add", filepath.Join(dir, "plain"))
	add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("ssh-add: %v\n%s", err, out)
	}
	other := writeKey(t, dir, "other", "")
	writeKey(t, dir, "other-encrypted", "secret")

	tests := []struct {
		name    string
		files   []string
		want    []ssh.PublicKey
		wantErr string
	}{
		{"encrypted key held by agent", []string{filepath.Join(dir, "encrypted")}, []ssh.PublicKey{agentSigner.PublicKey()}, ""},
		{"plain key held by agent", []string{filepath.Join(dir, "plain")}, []ssh.PublicKey{agentSigner.PublicKey()}, ""},
		{"agent then file", []string{filepath.Join(dir, "other")}, []ssh.PublicKey{agentSigner.PublicKey(), other}, ""},
		{"encrypted key not in agent", []string{filepath.Join(dir, "other-encrypted")}, nil, "ssh-add"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			signers, closeFn, err := ClientSigners(tt.files, sock, nil)
			if tt.wantErr != "" {
				closeFn()
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ClientSigners = %v, %v; want error containing %q", pubKeys(signers), err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(signers) != len(tt.want) {
				t.Fatalf("signers = %v, want %d", pubKeys(signers), len(tt.want))
			}
			for i, k := range tt.want {
				if !bytes.Equal(signers[i].PublicKey().Marshal(), k.Marshal()) {
					t.Errorf("signer %d differs", i)
				}
			}
			// The agent's signer works while the connection is open.
			if _, err := signers[0].Sign(rand.Reader, []byte("data")); err != nil {
				t.Errorf("agent Sign: %v", err)
			}
			if err := closeFn(); err != nil {
				t.Errorf("close: %v", err)
			}
		})
	}
}

// TestSignersConfigFilesAndIdentitiesOnly: ssh_config's identity files
// are skipped when missing, and IdentitiesOnly keeps only the agent keys
// those files hold, as ssh does.
func TestSignersConfigFilesAndIdentitiesOnly(t *testing.T) {
	sock := startAgent(t)
	dir := t.TempDir()
	inAgent := writeKey(t, dir, "in-agent", "")
	add := exec.Command("ssh-add", filepath.Join(dir, "in-agent"))
	add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("ssh-add: %v\n%s", err, out)
	}
	other := writeKey(t, dir, "other", "")
	missing := filepath.Join(dir, "missing")

	// A missing config file is skipped; the agent's key comes first.
	signers, closeFn, err := Signers{ConfigFiles: []string{missing, filepath.Join(dir, "other")}, AgentSocket: sock}.Load()
	if err != nil {
		t.Fatal(err)
	}
	closeFn()
	if got, want := pubKeys(signers), []string{ssh.FingerprintSHA256(inAgent), ssh.FingerprintSHA256(other)}; !reflect.DeepEqual(got, want) {
		t.Errorf("without IdentitiesOnly: %d signers, want the agent's and the file's", len(got))
	}
	// IdentitiesOnly: the agent's key is not one of the files': dropped.
	signers, closeFn, err = Signers{ConfigFiles: []string{filepath.Join(dir, "other")}, AgentSocket: sock, IdentitiesOnly: true}.Load()
	if err != nil {
		t.Fatal(err)
	}
	closeFn()
	if got := pubKeys(signers); !reflect.DeepEqual(got, []string{ssh.FingerprintSHA256(other)}) {
		t.Errorf("IdentitiesOnly kept %d signers, want only the file's", len(got))
	}
	// IdentitiesOnly with the agent's key named by its file (the private
	// key moved away, only the .pub left): the agent's key is kept.
	os.Rename(filepath.Join(dir, "in-agent"), filepath.Join(dir, "moved"))
	os.WriteFile(filepath.Join(dir, "in-agent.pub"), ssh.MarshalAuthorizedKey(inAgent), 0o644)
	signers, closeFn, err = Signers{ConfigFiles: []string{filepath.Join(dir, "in-agent")}, AgentSocket: sock, IdentitiesOnly: true}.Load()
	if err != nil {
		t.Fatal(err)
	}
	closeFn()
	if got := pubKeys(signers); !reflect.DeepEqual(got, []string{ssh.FingerprintSHA256(inAgent)}) {
		t.Errorf("IdentitiesOnly with the .pub: %d signers, want the agent's", len(got))
	}
	// A missing -i file is still an error.
	if _, closeFn, err := (Signers{Files: []string{missing}, AgentSocket: sock}).Load(); err == nil {
		closeFn()
		t.Error("a missing -i file was accepted")
	}
}
