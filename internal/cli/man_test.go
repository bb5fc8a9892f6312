package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestManPages: every page names every flag of its command, the pages in
// docs/man are what pinhole man prints (regenerate them with
// go run ./cmd/pinhole man --dir docs/man), and man renders them without
// a warning.
func TestManPages(t *testing.T) {
	pages := manPages()
	for _, c := range commands() {
		name := "pinhole-" + c.name + ".1"
		page := pages[name]
		code, stdout, stderr := run(t, "man", c.name)
		if code != 0 || stdout != page {
			t.Errorf("pinhole man %s: exit %d, stderr %q; its page differs from manPages()", c.name, code, stderr)
		}
		for _, f := range flagsOf(flagSet(c)) {
			if !strings.Contains(page, ".B"+map[bool]string{true: "I \"", false: " "}[f.takesValue]+roff(f.dashed())) {
				t.Errorf("%s has no entry for %s", name, f.dashed())
			}
		}
		if !strings.Contains(pages["pinhole.1"], ".BR pinhole\\-"+c.name+" (1)") {
			t.Errorf("pinhole.1 does not point at %s", name)
		}
	}
	if code, stdout, _ := run(t, "man"); code != 0 || stdout != pages["pinhole.1"] {
		t.Errorf("pinhole man: exit %d; want pinhole.1", code)
	}
	if code, _, stderr := run(t, "man", "nope"); code != 1 || !strings.Contains(stderr, `unknown command "nope"`) {
		t.Errorf("pinhole man nope: exit %d, stderr %q", code, stderr)
	}

	dir := filepath.Join("..", "..", "docs", "man")
	files, _ := filepath.Glob(filepath.Join(dir, "*.1"))
	if len(files) != len(pages) {
		t.Errorf("docs/man has %d pages, pinhole man makes %d: regenerate with go run ./cmd/pinhole man --dir docs/man (and remove pages of commands that are gone)", len(files), len(pages))
	}
	for name, page := range pages {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(got) != page {
			t.Errorf("docs/man/%s differs from what pinhole man prints (%v): regenerate with go run ./cmd/pinhole man --dir docs/man", name, err)
		}
	}

	written := t.TempDir()
	if code, _, stderr := run(t, "man", "--dir", written); code != 0 {
		t.Fatalf("pinhole man --dir: exit %d: %s", code, stderr)
	}
	if _, err := exec.LookPath("man"); err != nil {
		t.Skip("man is not installed (Debian package man-db): the pages' rendering is not checked")
	}
	for name := range pages {
		cmd := exec.Command("man", "--warnings", "-E", "UTF-8", "-l", filepath.Join(written, name))
		cmd.Env = append(os.Environ(), "MANWIDTH=80", "MANPAGER=cat", "PAGER=cat")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || stderr.Len() > 0 {
			t.Errorf("man -l %s: %v; stderr:\n%s", name, err, stderr.String())
			continue
		}
		text := string(out)
		title := strings.ToUpper(strings.TrimSuffix(name, ".1")) + "(1)"
		if !strings.Contains(text, title) || !strings.Contains(text, "NAME") || !strings.Contains(text, "EXIT STATUS") {
			t.Errorf("man -l %s: no %s, NAME or EXIT STATUS in:\n%s", name, title, text)
		}
		if name == "pinhole-connect.1" && (!strings.Contains(text, "--known-hosts") || !strings.Contains(text, "-L [bind:]port:host:hostport")) {
			t.Errorf("man -l %s: the flags do not render as typed:\n%s", name, text)
		}
	}
}
