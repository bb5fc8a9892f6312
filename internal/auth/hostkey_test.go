package auth

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/pinhole-dev/pinhole/internal/ssh"
)

func TestLoadOrCreateHostKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "pinhole")
	path := filepath.Join(dir, "host_ed25519_key")

	s1, created, err := LoadOrCreateHostKey(path)
	if err != nil || !created {
		t.Fatalf("first call: created %v, %v; want created", created, err)
	}
	if s1.PublicKey().Type() != ssh.KeyAlgoED25519 {
		t.Errorf("key type %s, want ed25519", s1.PublicKey().Type())
	}
	if runtime.GOOS != "windows" {
		for p, want := range map[string]os.FileMode{path: 0o600, dir: 0o700} {
			if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != want {
				t.Errorf("mode of %s = %v, %v; want %v", p, fi.Mode().Perm(), err, want)
			}
		}
	}

	s2, created, err := LoadOrCreateHostKey(path)
	if err != nil || created {
		t.Fatalf("second call: created %v, %v; want loaded", created, err)
	}
	if !bytes.Equal(s1.PublicKey().Marshal(), s2.PublicKey().Marshal()) {
		t.Error("the loaded key differs from the created one")
	}

	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Skip("ssh-keygen not installed (Debian package openssh-client); skipping the check that OpenSSH reads the key")
	}
	out, err := exec.Command("ssh-keygen", "-y", "-f", path).Output()
	if err != nil {
		t.Fatalf("ssh-keygen -y: %v", err)
	}
	k, _, _, _, err := ssh.ParseAuthorizedKey(out)
	if err != nil || !bytes.Equal(k.Marshal(), s1.PublicKey().Marshal()) {
		t.Errorf("ssh-keygen -y printed %q (%v), want our public key", out, err)
	}
}

func TestLoadHostKeyErrors(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	if _, _, err := LoadOrCreateHostKey(good); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // past the umask
			t.Fatal(err)
		}
		return p
	}
	encDir := t.TempDir()
	writeKey(t, encDir, "enc", "secret")
	enc, err := os.ReadFile(filepath.Join(encDir, "enc"))
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name, path, want string
		unixOnly         bool
	}{
		{"garbage", write("garbage", []byte("not a key"), 0o600), "auth: host key", false},
		{"readable by others", write("open", data, 0o644), "chmod 600", true},
		{"encrypted", write("enc", enc, 0o600), "passphrase", false},
		{"directory", dir, "auth: ", false},
		{"parent is a file", filepath.Join(good, "key"), "auth: ", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.unixOnly && runtime.GOOS == "windows" {
				t.Skip("no Unix permissions")
			}
			s, created, err := LoadOrCreateHostKey(tt.path)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("LoadOrCreateHostKey = %v, %v, %v; want error containing %q", s, created, err, tt.want)
			}
		})
	}
}

func TestDefaultHostKeyPath(t *testing.T) {
	if got, want := DefaultHostKeyPath("/var/lib/pinhole"), filepath.FromSlash("/var/lib/pinhole/host_ed25519_key"); got != want {
		t.Errorf("DefaultHostKeyPath = %q, want %q", got, want)
	}
}
