package cli

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/pinhole-dev/pinhole/internal/tunnel"
)

// TestVersion: pinhole version and --version print the same three facts.
func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}, {"-version"}} {
		code, stdout, stderr := run(t, args...)
		want := "pinhole " + tunnel.Version + "\n"
		if code != 0 || !strings.HasPrefix(stdout, want) || !strings.Contains(stdout, runtime.Version()+" "+runtime.GOOS+"/"+runtime.GOARCH+"\n") || !strings.Contains(stdout, "commit ") {
			t.Errorf("pinhole %s: exit %d, stdout %q, stderr %q; want the version, the commit and %s", args[0], code, stdout, stderr, runtime.Version())
		}
	}
	if code, _, stderr := run(t, "version", "extra"); code != 2 || !strings.Contains(stderr, `unexpected argument "extra"`) {
		t.Errorf("pinhole version extra: exit %d, stderr %q", code, stderr)
	}
}

func TestVersionText(t *testing.T) {
	tests := []struct {
		name string
		info *debug.BuildInfo
		want []string
	}{
		{"no build info", nil, []string{"pinhole " + tunnel.Version + "\n", "commit unknown (built without version control information)\n", runtime.Version()}},
		{"clean", &debug.BuildInfo{GoVersion: "go1.99.1", Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
			{Key: "vcs.time", Value: "2026-12-01T09:00:00Z"},
			{Key: "vcs.modified", Value: "false"},
		}}, []string{"commit 0123456789abcdef0123456789abcdef01234567 of 2026-12-01T09:00:00Z\n", "go1.99.1 " + runtime.GOOS}},
		{"modified", &debug.BuildInfo{Main: debug.Module{Path: "github.com/pinhole-dev/pinhole", Version: "v0.1.0"}, Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "abc"},
			{Key: "vcs.modified", Value: "true"},
		}}, []string{"module github.com/pinhole-dev/pinhole v0.1.0\n", "commit abc, modified (changes not committed)\n"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := versionText(tt.info)
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("versionText = %q; want it to contain %q", got, w)
				}
			}
			if tt.name == "clean" && strings.Contains(got, "modified") {
				t.Errorf("versionText = %q; a clean tree is not modified", got)
			}
		})
	}
}

// TestHelpCommand: pinhole help CMD prints CMD's usage and flags on
// stdout, the same text as pinhole CMD -h; pinhole help, the list.
func TestHelpCommand(t *testing.T) {
	for _, c := range commands() {
		code, stdout, stderr := run(t, "help", c.name)
		_, _, dashH := run(t, c.name, "-h")
		if code != 0 || !strings.HasPrefix(stdout, "usage: pinhole "+c.name) || stdout != dashH {
			t.Errorf("pinhole help %s: exit %d, stdout:\n%s\nstderr %q\nwant the text of pinhole %s -h:\n%s", c.name, code, stdout, stderr, c.name, dashH)
		}
		for _, f := range flagsOf(flagSet(c)) {
			if !strings.Contains(stdout, "  -"+f.name) {
				t.Errorf("pinhole help %s: no -%s in:\n%s", c.name, f.name, stdout)
			}
		}
	}
	code, stdout, _ := run(t, "help")
	if code != 0 || !strings.Contains(stdout, "commands:") || !strings.Contains(stdout, "completion") {
		t.Errorf("pinhole help: exit %d, stdout:\n%s", code, stdout)
	}
	code, _, stderr := run(t, "help", "nope")
	if code != 1 || !strings.Contains(stderr, `unknown command "nope"; the commands are server, connect`) {
		t.Errorf("pinhole help nope: exit %d, stderr %q", code, stderr)
	}
}

// TestFlagSetDoesNothing: describing a command's flags starts nothing and
// prints nothing (flagSet runs it up to its parse).
func TestFlagSetDoesNothing(t *testing.T) {
	for _, c := range commands() {
		fs := flagSet(c)
		if fs.Name() != "pinhole "+c.name {
			t.Errorf("flagSet(%s).Name() = %q", c.name, fs.Name())
		}
		syn, desc := usageText(fs)
		if len(syn) == 0 || !strings.HasPrefix(syn[0], "pinhole "+c.name) || desc == "" {
			t.Errorf("pinhole %s: usage lines %q, description %q; want \"usage: pinhole %s ...\", a blank line, a description", c.name, syn, desc, c.name)
		}
	}
}
