package cli

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestSSHConfigHosts(t *testing.T) {
	config := `# a comment: Host commented
Host alpha beta
  HostName 192.0.2.1
host=gamma
HOST = delta # trailing comment
Host *.corp web? !nothere epsilon
	Host	zeta "quoted"
Match host theta
Host alpha
Hostname notahost
`
	got := sshConfigHosts(strings.NewReader(config))
	want := []string{"alpha", "beta", "gamma", "delta", "epsilon", "zeta"}
	if !slices.Equal(got, want) {
		t.Fatalf("sshConfigHosts = %q, want %q", got, want)
	}
}

func FuzzSSHConfigHosts(f *testing.F) {
	f.Add("Host a b\nHost=c\n")
	f.Add("Host *.x !y z # c\n")
	f.Fuzz(func(t *testing.T, config string) {
		for _, h := range sshConfigHosts(strings.NewReader(config)) {
			if h == "" || strings.ContainsAny(h, "*?! \t\n\"'") || strings.HasPrefix(h, "#") {
				t.Fatalf("host %q from %q", h, config)
			}
		}
	})
}

// pinholeOnPath puts a "pinhole" on a new PATH that runs this test binary
// as pinhole (TestMain), and returns that PATH.
func pinholeOnPath(t *testing.T) string {
	t.Helper()
	bin := t.TempDir()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf("#!/bin/sh\n%s=1 exec %q \"$@\"\n", childEnv, self)
	if err := os.WriteFile(filepath.Join(bin, "pinhole"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin + string(os.PathListSeparator) + os.Getenv("PATH")
}

// completionHome is a HOME with a ~/.ssh/config of three plain hosts.
func completionHome(t *testing.T) string {
	t.Helper()
	home := t.TempDir()
	os.MkdirAll(filepath.Join(home, ".ssh"), 0o700)
	config := "Host alpha alpine\nHost *.corp\nHost beta\n"
	if err := os.WriteFile(filepath.Join(home, ".ssh", "config"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	return home
}

// TestBashCompletion loads "pinhole completion bash" into a real bash and
// runs its completion function on command lines, as bash does at a TAB.
func TestBashCompletion(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash is not installed (Debian package bash): bash completion not checked")
	}
	code, script, stderr := run(t, "completion", "bash")
	if code != 0 {
		t.Fatalf("pinhole completion bash: exit %d: %s", code, stderr)
	}
	dir := t.TempDir()
	scriptFile := filepath.Join(dir, "pinhole.bash")
	os.WriteFile(scriptFile, []byte(script), 0o644)
	os.WriteFile(filepath.Join(dir, "key_file"), nil, 0o600)
	path, home := pinholeOnPath(t), completionHome(t)

	// complete runs the completion function on words, the last one being
	// completed, and returns what it offers.
	complete := func(t *testing.T, words ...string) []string {
		t.Helper()
		var quoted []string
		for _, w := range words {
			quoted = append(quoted, fmt.Sprintf("%q", w))
		}
		prog := fmt.Sprintf(`source %q || exit 3
complete -p pinhole | grep -q -- '-F _pinhole' || { echo "complete -p: $(complete -p pinhole)"; exit 4; }
COMP_WORDS=(%s); COMP_CWORD=%d; COMP_LINE="${COMP_WORDS[*]}"; COMP_POINT=${#COMP_LINE}
_pinhole
printf '%%s\n' "${COMPREPLY[@]}"`, scriptFile, strings.Join(quoted, " "), len(words)-1)
		cmd := exec.Command("bash", "--norc", "--noprofile", "-c", prog)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "PATH="+path, "HOME="+home)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("bash completing %q: %v\n%s", words, err, out)
		}
		return strings.Fields(string(out))
	}
	tests := []struct {
		words []string
		want  []string
	}{
		{[]string{"pinhole", "co"}, []string{"completion", "connect"}},
		{[]string{"pinhole", "--ver"}, []string{"--version"}},
		{[]string{"pinhole", "connect", "--known-h"}, []string{"--known-hosts"}},
		{[]string{"pinhole", "server", "--auth"}, []string{"--authorized-keys"}},
		{[]string{"pinhole", "connect", "-p", "22", "al"}, []string{"alpha", "alpine"}},
		{[]string{"pinhole", "connect", "me@b"}, []string{"me@beta"}},
		// bash's default COMP_WORDBREAKS has @: it hands "me", "@", "b".
		{[]string{"pinhole", "connect", "me", "@", "b"}, []string{"beta"}},
		{[]string{"pinhole", "connect", "-L", "8080:db:5432", "-i", "key_"}, []string{"key_file"}},
		{[]string{"pinhole", "connect", "--known-hosts", "=", "key_"}, []string{"key_file"}},
		{[]string{"pinhole", "help", "ser"}, []string{"server"}},
		{[]string{"pinhole", "man", "m"}, []string{"man", "map"}},
		{[]string{"pinhole", "completion", "f"}, []string{"fish"}},
		{[]string{"pinhole", "map", "--v"}, []string{"--via"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.words, " "), func(t *testing.T) {
			got := complete(t, tt.words...)
			slices.Sort(got)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("completing %q: %q, want %q", tt.words, got, tt.want)
			}
		})
	}
	// Every flag of every command, from the FlagSet it parses.
	for _, c := range commands() {
		got := complete(t, "pinhole", c.name, "-")
		for _, f := range flagsOf(flagSet(c)) {
			if !slices.Contains(got, f.dashed()) {
				t.Errorf("pinhole %s -<TAB>: %q has no %s", c.name, got, f.dashed())
			}
		}
	}
}

// TestZshFishCompletion loads the zsh and fish scripts where those shells
// are installed.
func TestZshFishCompletion(t *testing.T) {
	path, home := pinholeOnPath(t), completionHome(t)
	t.Run("zsh", func(t *testing.T) {
		if _, err := exec.LookPath("zsh"); err != nil {
			t.Skip("zsh is not installed (Debian package zsh): zsh completion not checked")
		}
		_, script, _ := run(t, "completion", "zsh")
		f := filepath.Join(t.TempDir(), "_pinhole")
		os.WriteFile(f, []byte(script), 0o644)
		cmd := exec.Command("zsh", "-f", "-c", fmt.Sprintf(`autoload -U compinit && compinit -u -D && source %q && print -r -- $_comps[pinhole]`, f))
		cmd.Env = append(os.Environ(), "PATH="+path, "HOME="+home)
		out, err := cmd.CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "_pinhole" {
			t.Fatalf("zsh with the script loaded: %v; _comps[pinhole] = %q, want _pinhole", err, out)
		}
		// The function itself, with compadd, compset and _files standing
		// in for the completion system's (they print what they are given;
		// compadd does not filter by the prefix).
		for line, want := range map[string]string{
			"pinhole co":                "connect",
			"pinhole connect --known-h": "--known-hosts",
			"pinhole server -":          "--authorized-keys",
			"pinhole connect -p 22 al":  "alpha",
			"pinhole connect -i ke":     "_files",
			"pinhole help se":           "server",
		} {
			words := strings.Fields(line)
			prog := fmt.Sprintf(`source %q || exit 3
compadd() { print -rl -- "${@:#--}" }
compset() { : }
_files() { print _files }
words=(%s); CURRENT=%d
_pinhole`, f, strings.Join(words, " "), len(words))
			cmd := exec.Command("zsh", "-f", "-c", prog)
			cmd.Env = append(os.Environ(), "PATH="+path, "HOME="+home)
			out, err := cmd.CombinedOutput()
			if err != nil || !slices.Contains(strings.Fields(string(out)), want) {
				t.Errorf("zsh completing %q: %v; got %q, want %q among them", line, err, out, want)
			}
		}
	})
	t.Run("fish", func(t *testing.T) {
		if _, err := exec.LookPath("fish"); err != nil {
			t.Skip("fish is not installed (Debian package fish): fish completion not checked")
		}
		_, script, _ := run(t, "completion", "fish")
		f := filepath.Join(t.TempDir(), "pinhole.fish")
		os.WriteFile(f, []byte(script), 0o644)
		for line, want := range map[string]string{
			"pinhole co":                "connect",
			"pinhole connect --known-h": "--known-hosts",
			"pinhole connect al":        "alpha",
		} {
			cmd := exec.Command("fish", "--no-config", "-c", fmt.Sprintf("source %q; complete -C %q", f, line))
			cmd.Env = append(os.Environ(), "PATH="+path, "HOME="+home)
			out, err := cmd.CombinedOutput()
			if err != nil || !strings.Contains(string(out), want) {
				t.Errorf("fish complete -C %q: %v; got %q, want %q among them", line, err, out, want)
			}
		}
	})
}
