package auth

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/pinhole-dev/pinhole/internal/ssh"
	"github.com/pinhole-dev/pinhole/internal/ssh/knownhosts"
)

var testRemote = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2222}

const testHost = "127.0.0.1:2222"

func TestParseHostKeyMode(t *testing.T) {
	tests := []struct {
		in   string
		want HostKeyMode
		err  bool
	}{
		{"yes", HostKeyYes, false},
		{"accept-new", HostKeyAcceptNew, false},
		{"no", HostKeyNo, false},
		{"Yes", 0, true},
		{"ask", 0, true},
		{"", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseHostKeyMode(tt.in)
			if (err != nil) != tt.err || got != tt.want {
				t.Fatalf("ParseHostKeyMode(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.err)
			}
			if err == nil && got.String() != tt.in {
				t.Errorf("String = %q, want %q", got.String(), tt.in)
			}
		})
	}
}

func TestKnownHostsAcceptNew(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ssh")
	path := filepath.Join(dir, "known_hosts")
	key, other := newSigner(t).PublicKey(), newSigner(t).PublicKey()

	kh, err := OpenKnownHosts(path, HostKeyAcceptNew, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := kh.Algorithms(testHost); got != nil {
		t.Errorf("Algorithms of unknown host = %v, want nil", got)
	}
	cb := kh.Callback()
	if err := cb(testHost, testRemote, key); err != nil {
		t.Fatalf("first connection: %v", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := knownhosts.Line([]string{"[127.0.0.1]:2222"}, key) + "\n"; string(data) != want {
		t.Errorf("file = %q, want %q", data, want)
	}
	for p, want := range map[string]os.FileMode{path: 0o600, dir: 0o700} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != want {
			t.Errorf("mode of %s = %v, %v; want %v", p, fi.Mode().Perm(), err, want)
		}
	}

	// The same process sees the new line.
	if err := cb(testHost, testRemote, key); err != nil {
		t.Errorf("second connection: %v", err)
	}
	if got, want := kh.Algorithms(testHost), []string{ssh.KeyAlgoED25519}; !reflect.DeepEqual(got, want) {
		t.Errorf("Algorithms = %v, want %v", got, want)
	}
	if data2, _ := os.ReadFile(path); !bytes.Equal(data, data2) {
		t.Errorf("known host added twice: %q", data2)
	}

	// A changed key is refused even in accept-new mode.
	err = cb(testHost, testRemote, other)
	if !errors.Is(err, ErrHostKeyMismatch) {
		t.Fatalf("changed key: %v, want ErrHostKeyMismatch", err)
	}
	for _, want := range []string{ssh.FingerprintSHA256(other), path + " line 1", "attack", "ssh-keygen -R '[127.0.0.1]:2222' -f " + path} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("mismatch error %q does not mention %q", err, want)
		}
	}

	// OpenSSH finds the line.
	if _, err := exec.LookPath("ssh-keygen"); err != nil {
		t.Skip("ssh-keygen not installed (Debian package openssh-client); skipping the check that OpenSSH reads the line")
	}
	out, err := exec.Command("ssh-keygen", "-F", "[127.0.0.1]:2222", "-f", path).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte(strings.Fields(string(data))[2])) {
		t.Errorf("ssh-keygen -F: %v\n%s", err, out)
	}
}

func TestKnownHostsAppendsOnNewLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "known_hosts")
	a, b := newSigner(t).PublicKey(), newSigner(t).PublicKey()
	// An existing file without a final newline.
	if err := os.WriteFile(path, []byte(knownhosts.Line([]string{"a.example"}, a)), 0o600); err != nil {
		t.Fatal(err)
	}
	kh, err := OpenKnownHosts(path, HostKeyAcceptNew, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := kh.Callback()("b.example:22", testRemote, b); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	want := knownhosts.Line([]string{"a.example"}, a) + "\n" + knownhosts.Line([]string{"b.example"}, b) + "\n"
	if string(data) != want {
		t.Errorf("file = %q, want %q", data, want)
	}
	kh2, err := OpenKnownHosts(path, HostKeyYes, nil)
	if err != nil {
		t.Fatal(err)
	}
	for host, key := range map[string]ssh.PublicKey{"a.example:22": a, "b.example:22": b} {
		if err := kh2.Callback()(host, testRemote, key); err != nil {
			t.Errorf("%s: %v", host, err)
		}
	}
}

func TestKnownHostsYes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "known_hosts")
	key := newSigner(t).PublicKey()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaPub, err := ssh.NewPublicKey(&rsaKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	revoked := newSigner(t).PublicKey()
	lines := knownhosts.Line([]string{"[127.0.0.1]:2222"}, key) + "\n" +
		knownhosts.Line([]string{"rsa.example"}, rsaPub) + "\n" +
		knownhosts.Line([]string{"both.example"}, rsaPub) + "\n" +
		knownhosts.Line([]string{"both.example"}, key) + "\n" +
		"@revoked * " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(revoked))) + "\n"
	if err := os.WriteFile(path, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	kh, err := OpenKnownHosts(path, HostKeyYes, nil)
	if err != nil {
		t.Fatal(err)
	}
	cb := kh.Callback()

	tests := []struct {
		name    string
		host    string
		key     ssh.PublicKey
		wantErr error  // nil: success
		mention string // in the error
	}{
		{"known", testHost, key, nil, ""},
		{"known rsa", "rsa.example:22", rsaPub, nil, ""},
		{"mismatch", testHost, rsaPub, ErrHostKeyMismatch, "ssh-keygen -R '[127.0.0.1]:2222'"},
		{"unknown host", "127.0.0.1:2223", key, ErrHostKeyUnknown, "--host-key-check accept-new"},
		{"unknown port 22", "new.example:22", key, ErrHostKeyUnknown, "ssh-keyscan"},
		{"revoked", "other.example:22", revoked, nil, "revoked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := cb(tt.host, testRemote, tt.key)
			switch {
			case tt.mention == "" && err != nil:
				t.Fatalf("callback: %v", err)
			case tt.mention == "":
				return
			case err == nil:
				t.Fatal("callback accepted the key")
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Errorf("error %v does not wrap %v", err, tt.wantErr)
			case !strings.Contains(err.Error(), tt.mention):
				t.Errorf("error %q does not mention %q", err, tt.mention)
			}
			if errors.Is(err, ErrHostKeyUnknown) && errors.Is(err, ErrHostKeyMismatch) {
				t.Errorf("error %v wraps both sentinels", err)
			}
		})
	}
	// Nothing was written in mode yes.
	if data, _ := os.ReadFile(path); string(data) != lines {
		t.Errorf("mode yes changed the file to %q", data)
	}

	algTests := []struct {
		host string
		want []string
	}{
		{testHost, []string{ssh.KeyAlgoED25519}},
		{"rsa.example:22", []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}},
		{"both.example:22", []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA, ssh.KeyAlgoED25519}},
		{"nobody.example:22", nil},
		{"no-port", nil},
	}
	for _, tt := range algTests {
		t.Run("Algorithms "+tt.host, func(t *testing.T) {
			if got := kh.Algorithms(tt.host); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Algorithms(%q) = %v, want %v", tt.host, got, tt.want)
			}
		})
	}
}

func TestKnownHostsNo(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	path := filepath.Join(t.TempDir(), "known_hosts")
	kh, err := OpenKnownHosts(path, HostKeyNo, log)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if err := kh.Callback()(testHost, testRemote, newSigner(t).PublicKey()); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	if n := strings.Count(logs.String(), "level=WARN"); n != 1 {
		t.Errorf("logged %d warnings, want 1:\n%s", n, logs.String())
	}
	if _, err := os.Stat(path); err == nil {
		t.Error("mode no wrote a known_hosts file")
	}

	// A broken file does not matter when nothing is checked.
	if err := os.WriteFile(path, []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenKnownHosts(path, HostKeyNo, nil); err != nil {
		t.Errorf("OpenKnownHosts of a broken file in mode no: %v", err)
	}
}

func TestOpenKnownHostsErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("this is not a known_hosts line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
		mode HostKeyMode
	}{
		{"only bad lines", bad, HostKeyYes},
		{"bad mode", filepath.Join(dir, "x"), HostKeyMode(7)},
		{"directory", dir, HostKeyYes},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := OpenKnownHosts(tt.path, tt.mode, nil); err == nil || !strings.HasPrefix(err.Error(), "auth: ") {
				t.Errorf("OpenKnownHosts = %v, want an auth: error", err)
			}
		})
	}
}

// TestKnownHostsHandshake checks that Algorithms makes a server holding
// several host keys present the known one.
func TestKnownHostsHandshake(t *testing.T) {
	edHost := newSigner(t)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaHost, err := ssh.NewSignerFromKey(rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(path, []byte(knownhosts.Line([]string{"[127.0.0.1]:2222"}, edHost.PublicKey())+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	kh, err := OpenKnownHosts(path, HostKeyYes, nil)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		algos []string
		ok    bool
	}{
		{"with Algorithms", kh.Algorithms(testHost), true},
		{"server prefers rsa", []string{ssh.KeyAlgoRSASHA256}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Not net.Pipe: both ends write their version line first, and
			// an unbuffered pipe would deadlock.
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			c1, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c1.Close()
			c2, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			defer c2.Close()
			srvConf := &ssh.ServerConfig{NoClientAuth: true}
			srvConf.AddHostKey(rsaHost)
			srvConf.AddHostKey(edHost)
			done := make(chan struct{})
			go func() {
				defer close(done)
				if conn, _, _, err := ssh.NewServerConn(c2, srvConf); err == nil {
					conn.Close()
				}
				c2.Close()
			}()
			conf := &ssh.ClientConfig{User: "u", HostKeyCallback: kh.Callback(), HostKeyAlgorithms: tt.algos}
			conn, _, _, err := ssh.NewClientConn(c1, testHost, conf)
			if conn != nil {
				conn.Close()
			}
			c1.Close()
			<-done
			if tt.ok && err != nil {
				t.Fatalf("handshake: %v", err)
			}
			if !tt.ok && !errors.Is(err, ErrHostKeyMismatch) {
				t.Fatalf("handshake: %v, want ErrHostKeyMismatch", err)
			}
		})
	}
}

// TestKnownHostsFiles: every file is read, a new key goes to the first.
func TestKnownHostsFiles(t *testing.T) {
	dir := t.TempDir()
	first, second := filepath.Join(dir, "first"), filepath.Join(dir, "second")
	key, newKey := newSigner(t).PublicKey(), newSigner(t).PublicKey()
	os.WriteFile(second, []byte(knownhosts.Line([]string{"[127.0.0.1]:2222"}, key)+"\n"), 0o600)
	kh, err := OpenKnownHostsFiles([]string{first, second}, HostKeyYes, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := kh.Callback()(testHost, testRemote, key); err != nil {
		t.Fatalf("the key in the second file: %v", err)
	}
	kh, err = OpenKnownHostsFiles([]string{first, second}, HostKeyAcceptNew, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := kh.Callback()("[127.0.0.1]:2223", testRemote, newKey); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(first); !strings.Contains(string(data), "[127.0.0.1]:2223") {
		t.Errorf("the new key was not added to the first file: %q", data)
	}
	if _, err := OpenKnownHostsFiles(nil, HostKeyYes, nil); err == nil {
		t.Error("no files accepted")
	}
}
