package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/portmap/portmaptest"
	"github.com/pinhole-dev/pinhole/internal/ssh"
)

// The tests here run pinhole map and pinhole server --map against the fake
// router of portmaptest on 127.0.0.1, reached only through --gateway and
// --ssdp: nothing is ever sent to this machine's real gateway or to the
// SSDP multicast group. The real router (miniupnpd) is map_lab_test.go's.

// fakeArgs are the flags that point pinhole map at g.
func fakeArgs(g *portmaptest.Gateway, prefix string) []string {
	return []string{
		"--" + prefix + "gateway", fmt.Sprintf("%s:%d", g.Addr, g.PMPPort),
		"--" + prefix + "ssdp", g.SSDPAddr.String(),
	}
}

// waitStderr waits until stderr matches expr, for at most 30 s.
func (p *proc) waitStderr(t *testing.T, expr string) {
	t.Helper()
	re := regexp.MustCompile(expr)
	for deadline := time.Now().Add(30 * time.Second); !re.MatchString(p.stderr.String()); {
		if time.Now().After(deadline) {
			t.Fatalf("no stderr matching %q within 30 s; stderr:\n%s", expr, p.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop cancels the command as SIGINT would and returns its exit code and
// every stdout line it printed after the ones already read.
func (p *proc) stop(t *testing.T) (int, []string) {
	t.Helper()
	p.cancel()
	var rest []string
	for line := range p.lines {
		rest = append(rest, line)
	}
	code := <-p.code
	p.code <- code // for start's cleanup
	return code, rest
}

// TestMapCommand: pinhole map with each --via prints exactly one line,
// ADDRESS:PORT, logs a renewal of its short lease, and on SIGINT removes
// the mapping, says so and exits 0.
func TestMapCommand(t *testing.T) {
	for _, via := range []string{"pcp", "natpmp", "upnp", "auto"} {
		for _, proto := range []string{"tcp", "udp"} {
			t.Run(via+"/"+proto, func(t *testing.T) {
				t.Parallel()
				g := portmaptest.Start(t, portmaptest.Config{})
				args := append([]string{"map"}, fakeArgs(g, "")...)
				args = append(args, "--via", via, "--proto", proto, "--lifetime", "2s", "--external", "18080", "8080")
				p := start(t, args...)
				m := p.waitLine(t, `^.*$`)
				if m[0] != "203.0.113.7:18080" {
					t.Fatalf("stdout line %q, want 203.0.113.7:18080", m[0])
				}
				ms := g.Mappings()
				if len(ms) != 1 || ms[0].Proto != proto || ms[0].External != 18080 || ms[0].Internal.Port() != 8080 {
					t.Fatalf("router has %+v", ms)
				}
				if via != "auto" && ms[0].Method != via {
					t.Errorf("mapped with %s, want %s", ms[0].Method, via)
				}
				p.waitStderr(t, `portmap: mapped.* method=`)
				p.waitStderr(t, `\brenewed\b`)
				code, rest := p.stop(t)
				if code != 0 {
					t.Errorf("exit code %d after SIGINT, want 0; stderr:\n%s", code, p.stderr)
				}
				if len(rest) != 0 {
					t.Errorf("more stdout after the address: %q", rest)
				}
				if !strings.Contains(p.stderr.String(), "removed") {
					t.Errorf("stderr does not say the mapping was removed:\n%s", p.stderr)
				}
				if ms := g.Mappings(); len(ms) != 0 {
					t.Errorf("after exit the router still has %+v", ms)
				}
			})
		}
	}
}

func TestMapCommandErrors(t *testing.T) {
	g := portmaptest.Start(t, portmaptest.Config{})
	g.Add(portmaptest.Mapping{Method: "upnp", Proto: "tcp", External: 18080, Description: "another host's"})
	none := portmaptest.Start(t, portmaptest.Config{NoPCP: true, NoNATPMP: true, NoUPnP: true})
	for _, tc := range []struct {
		name string
		args []string
		code int
		says []string
	}{
		{"no port", []string{"map"}, 2, []string{"INTERNAL_PORT"}},
		{"two ports", []string{"map", "1", "2"}, 2, []string{"INTERNAL_PORT"}},
		{"port zero", []string{"map", "0"}, 1, []string{"1 to 65535"}},
		{"port too big", []string{"map", "70000"}, 1, []string{"1 to 65535"}},
		{"external too big", []string{"map", "--external", "70000", "80"}, 1, []string{"--external"}},
		{"bad proto", []string{"map", "--proto", "sctp", "80"}, 1, []string{"tcp or udp"}},
		{"bad suffix", []string{"map", "80/sctp"}, 1, []string{"tcp or udp"}},
		{"protos disagree", []string{"map", "--proto", "tcp", "80/udp"}, 1, []string{"disagree"}},
		{"bad via", []string{"map", "--via", "igd", "80"}, 1, []string{"--via", "auto, pcp, natpmp or upnp"}},
		{"bad gateway", []string{"map", "--gateway", "router.lan", "80"}, 1, []string{"--gateway"}},
		{"bad lifetime", []string{"map", "--lifetime", "-1s", "80"}, 1, []string{"--lifetime"}},
		{"two modes", []string{"map", "--probe", "--list"}, 2, []string{"exclude"}},
		{"probe with port", []string{"map", "--probe", "80"}, 2, []string{"unexpected"}},
		{"conflict", append(fakeArgs(g, ""), "map", "--via", "upnp", "--external", "18080", "8080"), 1, []string{"ConflictInMappingEntry", "another --external"}},
		{"nothing answers", append(fakeArgs(none, ""), "map", "8080"), 1, []string{"pcp:", "natpmp:", "upnp:", "turn on UPnP or NAT-PMP"}},
		{"list with natpmp", append(fakeArgs(g, ""), "map", "--list", "--via", "natpmp"), 1, []string{"cannot list"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// Flags may come before the subcommand's own ones: move
			// "map" to the front.
			args := tc.args
			for i, a := range args {
				if a == "map" {
					args = append(append([]string{"map"}, args[:i]...), args[i+1:]...)
					break
				}
			}
			code, out, errOut := run(t, args...)
			if code != tc.code {
				t.Errorf("exit code %d, want %d; stderr:\n%s", code, tc.code, errOut)
			}
			if out != "" {
				t.Errorf("stdout %q, want nothing", out)
			}
			for _, want := range tc.says {
				if !strings.Contains(errOut, want) {
					t.Errorf("stderr does not say %q:\n%s", want, errOut)
				}
			}
		})
	}
}

func TestMapProbe(t *testing.T) {
	g := portmaptest.Start(t, portmaptest.Config{})
	code, out, errOut := run(t, append([]string{"map", "--probe"}, fakeArgs(g, "")...)...)
	if code != 0 {
		t.Fatalf("exit code %d; stderr:\n%s", code, errOut)
	}
	want := "pcp: ok, external 203.0.113.7\nnatpmp: ok, external 203.0.113.7\nupnp: ok, external 203.0.113.7\n"
	if out != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", out, want)
	}

	half := portmaptest.Start(t, portmaptest.Config{NoPCP: true, NoNATPMP: true})
	code, out, errOut = run(t, append([]string{"map", "--probe"}, fakeArgs(half, "")...)...)
	if code != 0 || !regexp.MustCompile(`(?m)^pcp: no answer: .*port unreachable.*\nnatpmp: no answer: .*\nupnp: ok, external 203\.0\.113\.7$`).MatchString(out) {
		t.Errorf("UPnP-only router: exit code %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}

	none := portmaptest.Start(t, portmaptest.Config{NoPCP: true, NoNATPMP: true, NoUPnP: true})
	code, out, errOut = run(t, append([]string{"map", "--probe"}, fakeArgs(none, "")...)...)
	if code != 1 || strings.Count(out, "no answer") != 3 || !strings.Contains(errOut, "answered no port mapping protocol") {
		t.Errorf("silent router: exit code %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
}

func TestMapListDelete(t *testing.T) {
	g := portmaptest.Start(t, portmaptest.Config{})
	p := start(t, append([]string{"map", "--via", "upnp", "--external", "30100", "8080/udp"}, fakeArgs(g, "")...)...)
	p.waitLine(t, `^203\.0\.113\.7:30100$`)

	code, out, errOut := run(t, append([]string{"map", "--list"}, fakeArgs(g, "")...)...)
	if code != 0 || !regexp.MustCompile(`(?m)^udp +203\.0\.113\.7:30100 +127\.0\.0\.1:8080 +\S+ +true +pinhole$`).MatchString(out) {
		t.Errorf("--list: exit code %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}

	// As after a kill -9: the mapping stays, and --delete removes it.
	code, out, errOut = run(t, append([]string{"map", "--delete", "--proto", "udp", "--via", "upnp", "--external", "30100", "8080"}, fakeArgs(g, "")...)...)
	if code != 0 || out != "removed udp external port 30100 (to internal port 8080) with upnp\n" {
		t.Errorf("--delete: exit code %d, stdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if ms := g.Mappings(); len(ms) != 0 {
		t.Errorf("after --delete the router has %+v", ms)
	}
	code, out, _ = run(t, append([]string{"map", "--list"}, fakeArgs(g, "")...)...)
	if code != 0 || out != "the router lists no mappings\n" {
		t.Errorf("--list of an empty table: exit code %d, stdout %q", code, out)
	}
}

// TestServerMap: pinhole server --map maps its port, prints where it is
// reachable, and removes the mapping when it stops; a router that does
// not answer is a warning, and the server runs on.
func TestServerMap(t *testing.T) {
	dir := t.TempDir()
	hostKey := filepath.Join(dir, "host_key")
	authKeys := filepath.Join(dir, "authorized_keys")
	_, pub := writeKey(t, dir, "client")
	if err := os.WriteFile(authKeys, ssh.MarshalAuthorizedKey(pub), 0o600); err != nil {
		t.Fatal(err)
	}
	g := portmaptest.Start(t, portmaptest.Config{})
	p := start(t, append([]string{"server", "--listen", "127.0.0.1:0", "--host-key", hostKey, "--authorized-keys", authKeys, "--map"}, fakeArgs(g, "map-")...)...)
	m := p.waitLine(t, `^pinhole server: listening on .*:(\d+)$`)
	m = p.waitLine(t, `^pinhole server: reachable from the internet at (203\.0\.113\.7:)(\d+)$`)
	p.waitLine(t, `^  ssh -N -p \d+ -R 8080:localhost:3000 \S+@203\.0\.113\.7$`)
	if ms := g.Mappings(); len(ms) != 1 || ms[0].Proto != "tcp" || fmt.Sprint(ms[0].External) != m[2] {
		t.Errorf("router has %+v, want the server's port", ms)
	}
	if code, _ := p.stop(t); code != 0 {
		t.Errorf("exit code %d; stderr:\n%s", code, p.stderr)
	}
	if ms := g.Mappings(); len(ms) != 0 {
		t.Errorf("after the server stopped the router still has %+v", ms)
	}

	none := portmaptest.Start(t, portmaptest.Config{NoPCP: true, NoNATPMP: true, NoUPnP: true})
	p = start(t, append([]string{"server", "--listen", "127.0.0.1:0", "--host-key", hostKey, "--authorized-keys", authKeys, "--map"}, fakeArgs(none, "map-")...)...)
	p.waitLine(t, `^pinhole server: listening on`)
	p.waitStderr(t, `warning: --map: .*no port mapping protocol worked`)
	p.waitStderr(t, `the server runs on`)
	select {
	case code := <-p.code:
		p.code <- code
		t.Fatalf("the server exited (%d) when the router did not answer", code)
	default:
	}
}
