package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/ssh"
)

// newSigner returns a fresh ed25519 signer.
func newSigner(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// pubLine returns "ssh-ed25519 AAAA..." for s, without a newline.
func pubLine(s ssh.Signer) string {
	return strings.TrimSuffix(string(ssh.MarshalAuthorizedKey(s.PublicKey())), "\n")
}

func TestParseAuthorizedKeys(t *testing.T) {
	k := make([]ssh.Signer, 6)
	for i := range k {
		k[i] = newSigner(t)
	}
	file := strings.Join([]string{
		"# comment",
		"",
		pubLine(k[0]) + " alice@laptop", // 3
		`restrict,port-forwarding,permitopen="db:5432" ` + pubLine(k[1]) + " bob", // 4
		`permitopne="db:5432" ` + pubLine(k[2]),                                   // 5: unknown option
		"cert-authority " + pubLine(k[3]),                                         // 6: unsupported
		"ssh-ed25519 not-base64!",                                                 // 7
		"   \t" + pubLine(k[4]) + "\r",                                            // 8: CRLF, indent
		`command="echo \"a b\"",no-pty ` + pubLine(k[5]) + "  two  words ",        // 9
		"ssh-rsa " + strings.Fields(pubLine(k[0]))[1],                             // 10: type mismatch
		"no-pty",                             // 11: options only
		"no-pty ssh-ed25519",                 // 12
		`from="10.0.0.1/8" ` + pubLine(k[0]), // 13: bad from
	}, "\n")
	keys, problems := ParseAuthorizedKeys([]byte(file))

	type want struct {
		signer  ssh.Signer
		line    int
		comment string
	}
	wantKeys := []want{{k[0], 3, "alice@laptop"}, {k[1], 4, "bob"}, {k[4], 8, ""}, {k[5], 9, "two  words"}}
	if len(keys) != len(wantKeys) {
		t.Fatalf("got %d keys, want %d; problems: %v", len(keys), len(wantKeys), problems)
	}
	for i, w := range wantKeys {
		t.Run(w.comment, func(t *testing.T) {
			got := keys[i]
			if string(got.Key.Marshal()) != string(w.signer.PublicKey().Marshal()) || got.Line != w.line || got.Comment != w.comment {
				t.Errorf("key %d = line %d comment %q, want line %d comment %q (or key differs)", i, got.Line, got.Comment, w.line, w.comment)
			}
		})
	}
	if !keys[0].Options.PortForwarding || keys[0].Options.PermitOpen != nil {
		t.Errorf("line without options: %+v, want port forwarding to anywhere", keys[0].Options)
	}
	if o := keys[1].Options; !o.PortForwarding || len(o.PermitOpen) != 1 || o.PermitOpen[0] != (Permit{"db", 5432}) {
		t.Errorf("line 4 options = %+v", o)
	}
	if keys[3].Options.Command != `echo "a b"` {
		t.Errorf("line 9 command = %q", keys[3].Options.Command)
	}

	wantProblems := []string{
		`auth: authorized_keys line 5: unknown option "permitopne"; see sshd(8) AUTHORIZED_KEYS FILE FORMAT`,
		"auth: authorized_keys line 6: cert-authority is not supported",
		"auth: authorized_keys line 7: ",
		"auth: authorized_keys line 10: key type",
		"auth: authorized_keys line 11: no key after the options",
		"auth: authorized_keys line 12: ",
		"auth: authorized_keys line 13: ",
	}
	if len(problems) != len(wantProblems) {
		t.Fatalf("got %d problems, want %d: %v", len(problems), len(wantProblems), problems)
	}
	for i, w := range wantProblems {
		if !strings.HasPrefix(problems[i].Error(), w) {
			t.Errorf("problem %d = %q, want prefix %q", i, problems[i], w)
		}
	}
}

func TestKeyFile(t *testing.T) {
	alice, bob := newSigner(t), newSigner(t)
	path := filepath.Join(t.TempDir(), "authorized_keys")

	kf := NewKeyFile(path, nil)
	if _, err := kf.Load(); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "--authorized-keys") {
		t.Fatalf("Load of missing file: %v, want ErrNotExist that mentions --authorized-keys", err)
	}
	if k, err := kf.Lookup(alice.PublicKey()); err == nil || k != nil {
		t.Fatalf("Lookup with missing file = %v, %v; want an error", k, err)
	}

	write := func(content string, mtime time.Time) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		// Set the time explicitly: two writes within the file system's
		// time granularity must still be told apart.
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	write("no-port-forwarding "+pubLine(alice)+"\nbogus\n", t0)
	problems, err := kf.Load()
	if err != nil || len(problems) != 1 {
		t.Fatalf("Load = %v, %v; want one problem", problems, err)
	}

	k, err := kf.Lookup(alice.PublicKey())
	if err != nil || k == nil || k.Options.PortForwarding || k.Line != 1 {
		t.Fatalf("Lookup(alice) = %+v, %v; want line 1 without port forwarding", k, err)
	}
	if k, err := kf.Lookup(bob.PublicKey()); k != nil || err != nil {
		t.Fatalf("Lookup(bob) = %+v, %v; want nil, nil", k, err)
	}

	// Same size, new time: the edit is seen without Load.
	write("no-port-forwarding "+pubLine(bob)+"\nbogus\n", t0.Add(time.Second))
	if k, err := kf.Lookup(alice.PublicKey()); k != nil || err != nil {
		t.Fatalf("after edit, Lookup(alice) = %+v, %v; want nil, nil", k, err)
	}
	if k, err := kf.Lookup(bob.PublicKey()); k == nil || err != nil {
		t.Fatalf("after edit, Lookup(bob) = %+v, %v; want bob", k, err)
	}

	// Same time, new size.
	write(pubLine(alice)+"\n", t0.Add(time.Second))
	if k, err := kf.Lookup(alice.PublicKey()); k == nil || err != nil || !k.Options.PortForwarding {
		t.Fatalf("after second edit, Lookup(alice) = %+v, %v; want alice with port forwarding", k, err)
	}

	// A returned entry is a copy.
	k, _ = kf.Lookup(alice.PublicKey())
	k.Options.PortForwarding = false
	if k, _ := kf.Lookup(alice.PublicKey()); !k.Options.PortForwarding {
		t.Error("changing a returned entry changed the KeyFile")
	}

	// Removing the file refuses everybody.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if k, err := kf.Lookup(alice.PublicKey()); k != nil || err == nil {
		t.Fatalf("after remove, Lookup(alice) = %+v, %v; want an error", k, err)
	}
}

func TestKeyFileConcurrent(t *testing.T) {
	alice := newSigner(t)
	path := filepath.Join(t.TempDir(), "authorized_keys")
	if err := os.WriteFile(path, []byte(pubLine(alice)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	kf := NewKeyFile(path, nil)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 20; j++ {
				if k, err := kf.Lookup(alice.PublicKey()); k == nil || err != nil {
					t.Errorf("Lookup = %v, %v", k, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func FuzzParseAuthorizedKeys(f *testing.F) {
	s := newSigner(f)
	f.Add([]byte(pubLine(s) + " c\n"))
	f.Add([]byte(`restrict,permitopen="db:1",from="10.0.0.0/8" ` + pubLine(s) + "\n# x\n\n"))
	f.Add([]byte(`command="a \" b" ` + pubLine(s)))
	f.Add([]byte("no-pty ssh-ed25519 AAAA\r\nx"))
	f.Fuzz(func(t *testing.T, data []byte) {
		keys, problems := ParseAuthorizedKeys(data)
		lines := strings.Count(string(data), "\n") + 1
		for _, k := range keys {
			if k.Line <= 0 || k.Line > lines || k.Key == nil {
				t.Fatalf("key with line %d of %d, key %v", k.Line, lines, k.Key)
			}
		}
		for _, p := range problems {
			if !strings.HasPrefix(p.Error(), "auth: authorized_keys line ") {
				t.Fatalf("problem without line: %v", p)
			}
		}
	})
}
