package sshconfig

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/spec"
	"github.com/pinhole-dev/pinhole/internal/sshtest"
)

// badConfigs are refused by ssh -G and by pinhole, and pinhole's error
// names the line and says what to write.
var badConfigs = []struct {
	name, text string
	line       string // "config:N"
	want       string
}{
	{"unknown keyword", "Host x\n  HostNmae foo\n", ":2:", "did you mean HostName"},
	{"bad port", "Port 99999\n", ":1:", "1 to 65535"},
	{"port not a number", "Port notaservice\n", ":1:", "e.g. Port 2222"},
	{"no value", "\n\nUser\n", ":3:", "User alice"},
	{"unclosed quote", "User \"bob\n", ":1:", "quote"},
	{"two values", "HostName a b\n", ":1:", "one value"},
	{"bad flag", "IdentitiesOnly maybe\n", ":1:", "yes or no"},
	{"bad time", "ConnectTimeout 5x\n", ":1:", "30s"},
	{"bad strict", "StrictHostKeyChecking sometimes\n", ":1:", "accept-new"},
	{"bad family", "AddressFamily ipx\n", ":1:", "inet6"},
	{"bad forward", "Host other\n  LocalForward 8080\n", ":2:", "two values"},
	{"bad forward port", "LocalForward 8080 db:99999\n", ":1:", "99999"},
	{"bad match criterion", "Match colour blue\n", ":1:", "host, originalhost, user"},
	{"match without value", "Match host\n", ":1:", "Match host *.example.com"},
	{"match all combined", "Match all host x\n", ":1:", "alone"},
	{"known hosts none not alone", "UserKnownHostsFile none /x\n", ":1:", "alone"},
	{"bad agent variable", "IdentityAgent $BAD-NAME\n", ":1:", "variable name"},
	{"unknown in inactive block", "Host nothere\n  Bogus 1\n", ":2:", "unknown keyword"},
	{"empty host pattern", "Host \"\"\n", ":1:", "Host myserver"},
}

// TestBadConfigs: what ssh refuses, pinhole refuses, naming file:line.
func TestBadConfigs(t *testing.T) {
	haveSSH := true
	if _, err := os.Stat(sshtest.SSHPath); err != nil {
		haveSSH = false
		t.Logf("not comparing with ssh: %s is not installed", sshtest.SSHPath)
	}
	for _, tc := range badConfigs {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			config := filepath.Join(dir, "config")
			if err := os.WriteFile(config, []byte(tc.text), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Resolve("x", Options{ConfigFile: config, Home: dir, LocalUser: "me"})
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("Resolve: %v, want an *Error", err)
			}
			if !strings.Contains(err.Error(), config+tc.line) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not name %s%s and say %q", err, config, tc.line, tc.want)
			}
			if haveSSH {
				cmd := exec.Command(sshtest.SSHPath, "-F", config, "-G", "x")
				var out bytes.Buffer
				cmd.Stderr = &out
				if cmd.Run() == nil {
					t.Errorf("ssh -G accepts this config; pinhole refused it with %v", err)
				}
			}
		})
	}
}

// TestKeywordsKnownToSSH: every keyword pinhole takes for OpenSSH's is one
// the installed ssh accepts (those of later releases skipped).
func TestKeywordsKnownToSSH(t *testing.T) {
	sshtest.Need(t, sshtest.SSHPath)
	dir := t.TempDir()
	for k := range openSSHKeywords {
		switch k {
		case "host", "match", "include":
			continue
		}
		if newerKeywords[k] {
			continue
		}
		config := filepath.Join(dir, "c")
		// One keyword per file: a bad value is fine (ssh checks values
		// after the keyword), "Bad configuration option" is not.
		os.WriteFile(config, []byte(k+" x\n"), 0o600)
		out, _ := exec.Command(sshtest.SSHPath, "-F", config, "-G", "h").CombinedOutput()
		if bytes.Contains(out, []byte("Bad configuration option")) {
			t.Errorf("ssh does not know %s: %s", k, out)
		}
	}
}

func TestParseErrorsWithoutSSH(t *testing.T) {
	for _, text := range []string{"Port 0", "Foo bar", "LocalForward 1 /unix/socket", "RemoteForward 1080", "ProxyJump @x"} {
		if _, err := Parse("t", text, "h"); err == nil {
			t.Errorf("Parse(%q) accepted it", text)
		}
	}
}

func TestResolveDetails(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(dir, "config")
	os.WriteFile(config, []byte(`
Host h
  Compression yes
  LocalForward 5353 10.0.0.53:53/udp
  ServerAliveInterval 0
  ConnectTimeout 1m30s
Match exec "true"
  Port 1
`), 0o600)
	s, err := Resolve("h", Options{ConfigFile: config, Home: dir, LocalUser: "me"})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Ignored) != 1 || !strings.Contains(s.Ignored[0], config+":3: Compression yes") {
		t.Errorf("Ignored = %q", s.Ignored)
	}
	if len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0], "Match exec is not supported") {
		t.Errorf("Warnings = %q", s.Warnings)
	}
	if s.Port != 0 {
		t.Errorf("the Match exec block applied: Port %d", s.Port)
	}
	if len(s.Local) != 1 || s.Local[0].Proto != spec.UDP {
		t.Errorf("Local = %v, want the /udp forward", s.Local)
	}
	if s.ServerAliveInterval >= 0 {
		t.Errorf("ServerAliveInterval 0 gave %v, want negative (off)", s.ServerAliveInterval)
	}
	if s.ConnectTimeout != 90*time.Second {
		t.Errorf("ConnectTimeout = %v", s.ConnectTimeout)
	}

	// A user file others may write is refused, as ssh refuses it.
	user := filepath.Join(dir, "user_config")
	os.WriteFile(user, []byte("Port 2\n"), 0o666)
	os.Chmod(user, 0o666)
	_, err = Resolve("h", Options{UserFile: user, SystemFile: filepath.Join(dir, "none"), Home: dir, LocalUser: "me"})
	if !errors.Is(err, ErrBadPermissions) || !strings.Contains(err.Error(), "chmod go-w") {
		t.Errorf("world-writable user file: %v", err)
	}
	// The default files: the user's first, then the system's.
	os.Chmod(user, 0o600)
	system := filepath.Join(dir, "system_config")
	os.WriteFile(system, []byte("Port 3\nUser sys\n"), 0o644)
	s, err = Resolve("h", Options{UserFile: user, SystemFile: system, Home: dir, LocalUser: "me"})
	if err != nil || s.Port != 2 || s.User != "sys" {
		t.Errorf("user then system file: %+v, %v", s, err)
	}
	// -F none reads nothing; a missing -F file is an error that says so.
	if s, err := Resolve("h", Options{ConfigFile: "none", UserFile: user, Home: dir, LocalUser: "me"}); err != nil || s.Port != 0 {
		t.Errorf("-F none: %+v, %v", s, err)
	}
	if _, err := Resolve("h", Options{ConfigFile: filepath.Join(dir, "missing"), Home: dir, LocalUser: "me"}); err == nil || !strings.Contains(err.Error(), "-F none") {
		t.Errorf("missing -F file: %v", err)
	}
	// An Include that includes itself stops at the depth limit.
	loop := filepath.Join(dir, "loop")
	os.WriteFile(loop, []byte("Include "+loop+"\n"), 0o600)
	if _, err := Resolve("h", Options{ConfigFile: loop, Home: dir, LocalUser: "me"}); err == nil || !strings.Contains(err.Error(), "deeper than 16") {
		t.Errorf("self-include: %v", err)
	}
}

func TestMatchPattern(t *testing.T) {
	for _, tc := range []struct {
		s, p string
		want bool
	}{
		{"abc", "abc", true}, {"abc", "a*", true}, {"abc", "*c", true}, {"abc", "a?c", true},
		{"abc", "a?", false}, {"", "*", true}, {"", "", true}, {"a", "", false},
		{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaab", "*a*a*a*a*a*a*a*a*a*a*a*a*c", false},
		{"x.example.com", "*.example.com", true}, {"example.com", "*.example.com", false},
	} {
		if got := matchPattern(tc.s, tc.p); got != tc.want {
			t.Errorf("matchPattern(%q, %q) = %v", tc.s, tc.p, got)
		}
	}
	if matchList("web", "!web,*", false) != -1 || matchList("db", "!web,*", false) != 1 || matchList("x", "a,b", false) != 0 {
		t.Error("matchList negation")
	}
}

// FuzzParse: any bytes as a config file never panic; what parses has
// settings with their documented form, and parses the same again.
func FuzzParse(f *testing.F) {
	for _, c := range gCases {
		for _, text := range c.files {
			f.Add(text, c.dest)
		}
	}
	for _, c := range badConfigs {
		f.Add(c.text, "x")
	}
	f.Add("Host *\n Match host a,!b user \"x y\"\n LocalForward [::1]:1 [::2]:2\n", "a")
	f.Fuzz(func(t *testing.T, text, host string) {
		if host == "" || len(text) > 1<<16 {
			return
		}
		s, err := Parse("fuzz", text, host)
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) && !strings.HasPrefix(err.Error(), "sshconfig: ") {
				t.Fatalf("error without the package's prefix: %v", err)
			}
			return
		}
		if s.HostName == "" || s.HostName != strings.ToLower(s.HostName) {
			t.Fatalf("HostName %q: want non-empty and lowercase", s.HostName)
		}
		for _, l := range [][]spec.Forward{s.Local, s.Remote, s.Dynamic} {
			for _, fw := range l {
				if again, err := spec.Parse(fw.Kind, fw.String()); err != nil || again != fw {
					t.Fatalf("forward %v does not round-trip: %v %v", fw, again, err)
				}
			}
		}
		switch s.StrictHostKeyChecking {
		case "", "yes", "no", "ask", "accept-new":
		default:
			t.Fatalf("StrictHostKeyChecking %q", s.StrictHostKeyChecking)
		}
		s2, err := Parse("fuzz", text, host)
		if err != nil || s2.HostName != s.HostName || s2.Port != s.Port || len(s2.Local) != len(s.Local) {
			t.Fatalf("second parse differs: %+v %v", s2, err)
		}
	})
}
