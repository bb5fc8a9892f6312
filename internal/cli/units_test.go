package cli

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// unitDir holds the systemd units of contrib/systemd.
const unitDir = "../../contrib/systemd"

// unitLines returns the KEY=value lines of a unit's [Service] section,
// in order.
func unitLines(t *testing.T, name string) (service [][2]string) {
	t.Helper()
	f, err := os.Open(filepath.Join(unitDir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = line
		case section == "[Service]":
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: %q is not KEY=value", name, line)
			}
			service = append(service, [2]string{k, v})
		}
	}
	return service
}

// TestUnits: the units of contrib/systemd have the lines docs/systemd.md
// describes, and their ExecStart uses flags the pinhole of this tree has.
func TestUnits(t *testing.T) {
	want := map[string]string{
		"Type":                    "notify",
		"NotifyAccess":            "main",
		"ExecReload":              "/bin/kill -HUP $MAINPID",
		"DynamicUser":             "yes",
		"AmbientCapabilities":     "CAP_NET_BIND_SERVICE",
		"CapabilityBoundingSet":   "CAP_NET_BIND_SERVICE",
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX AF_NETLINK",
		"WatchdogSec":             "30s",
	}
	for unit, exec := range map[string]string{
		"pinhole-server.service": "/usr/local/bin/pinhole server --listen :443 --authorized-keys /etc/pinhole/authorized_keys",
		"pinhole-up.service":     "/usr/local/bin/pinhole up -c /etc/pinhole/up.toml",
	} {
		t.Run(unit, func(t *testing.T) {
			got := map[string]string{}
			for _, kv := range unitLines(t, unit) {
				got[kv[0]] = kv[1]
			}
			for k, v := range want {
				if got[k] != v {
					t.Errorf("%s=%q, want %q", k, got[k], v)
				}
			}
			if !strings.HasPrefix(got["StateDirectory"], "pinhole-") {
				t.Errorf("StateDirectory=%q, want pinhole-…", got["StateDirectory"])
			}
			if got["ExecStart"] != exec {
				t.Errorf("ExecStart=%q, want %q (docs/systemd.md shows it)", got["ExecStart"], exec)
			}
			args := strings.Fields(got["ExecStart"])[1:]
			if args[0] == "up" {
				if _, ok := findCommand("up"); !ok {
					t.Logf("this tree has no pinhole up yet: its flags are not checked")
					return
				}
			}
			// Every flag parses: the command stops at the -h after them.
			var stderr syncBuffer
			if code := Main(context.Background(), append(args, "-h"), new(syncBuffer), &stderr); code != 0 {
				t.Errorf("pinhole %s -h: exit %d, want 0:\n%s", strings.Join(args, " "), code, &stderr)
			}
		})
	}
}

func findCommand(name string) (command, bool) {
	for _, c := range commands() {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// TestUnitsVerify checks the units with systemd's own tools, where the
// systemd package is there: systemd-analyze verify must find nothing to
// say, and systemd-analyze security must rate each unit's exposure OK
// (below 2.0 of 10). ExecStart must name an executable file for verify,
// so the copies it checks name the pinhole binary built from this tree.
func TestUnitsVerify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not found (Debian package systemd): the units are not verified")
	}
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildPinhole(t)
	dir := t.TempDir()
	units, err := filepath.Glob(filepath.Join(unitDir, "*.service"))
	if err != nil || len(units) < 2 {
		t.Fatalf("units in %s: %v, %v", unitDir, units, err)
	}
	var copies []string
	for _, u := range units {
		data, err := os.ReadFile(u)
		if err != nil {
			t.Fatal(err)
		}
		s := string(data)
		if !strings.Contains(s, "ExecStart=/usr/local/bin/pinhole ") {
			t.Fatalf("%s: no ExecStart=/usr/local/bin/pinhole", u)
		}
		s = strings.ReplaceAll(s, "ExecStart=/usr/local/bin/pinhole ", "ExecStart="+bin+" ")
		c := filepath.Join(dir, filepath.Base(u))
		if err := os.WriteFile(c, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		copies = append(copies, c)
	}
	out, err := exec.Command(sa, append([]string{"verify", "--man=no"}, copies...)...).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	score := regexp.MustCompile(`Overall exposure level for \S+: ([0-9.]+)`)
	for _, c := range copies {
		out, err := exec.Command(sa, "security", "--offline=yes", "--no-pager", c).CombinedOutput()
		if err != nil && strings.Contains(string(out), "offline") {
			t.Logf("systemd-analyze security --offline is not in this systemd: exposure not checked")
			continue
		}
		m := score.FindSubmatch(out)
		if m == nil {
			t.Errorf("systemd-analyze security %s: %v, no exposure level in:\n%s", filepath.Base(c), err, out)
			continue
		}
		if v, _ := strconv.ParseFloat(string(m[1]), 64); v >= 2 {
			t.Errorf("%s: exposure %s, want below 2.0 (OK); systemd-analyze security said:\n%s", filepath.Base(c), m[1], out)
		} else {
			t.Logf("%s: exposure %s (OK)", filepath.Base(c), m[1])
		}
	}
}
