package cli

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLowPortWithAmbientCapability: what the units' AmbientCapabilities=,
// CapabilityBoundingSet= and NoNewPrivileges= give, made by setpriv
// (util-linux) instead of systemd: pinhole server as user nobody, with no
// new privileges, cannot listen on a port below 1024 and says what to do;
// with CAP_NET_BIND_SERVICE as its only (ambient) capability it can.
func TestLowPortWithAmbientCapability(t *testing.T) {
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv not found (Debian package util-linux): the capability is not checked")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to run pinhole as another user: the capability is not checked")
	}
	if testing.Short() {
		t.Skip("builds the binary")
	}
	// A directory user nobody may enter, with files it owns.
	dir, err := os.MkdirTemp("", "pinhole-caps-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src := buildPinhole(t)
	bin := filepath.Join(dir, "pinhole")
	if out, err := exec.Command("cp", src, bin).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	const nobody = 65534
	if err := os.Chown(state, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	// A free port below 1024 on loopback, found by binding it as root
	// and handing the listener's port over only after it is closed: the
	// window is small, and a port below 1024 is rarely wanted by tests.
	port := 0
	for p := 1023; p > 900; p-- {
		if ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
			ln.Close()
			port = p
			break
		}
	}
	if port == 0 {
		t.Skip("no free port from 901 to 1023 on 127.0.0.1")
	}
	listen := fmt.Sprintf("127.0.0.1:%d", port)
	base := []string{"--reuid", "nobody", "--regid", "nogroup", "--clear-groups", "--no-new-privs"}
	server := []string{bin, "server", "--listen", listen, "--authorized-keys", filepath.Join(dir, "none")}
	env := append(os.Environ(), "STATE_DIRECTORY="+state)

	// Without the capability: refused, with what to do.
	cmd := exec.Command(setpriv, append(append(base, "--inh-caps", "-all", "--bounding-set", "-all"), server...)...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "CAP_NET_BIND_SERVICE") || !strings.Contains(string(out), "--listen") {
		t.Fatalf("pinhole server on %s as nobody without capabilities: %v\n%s\nwant a refusal naming CAP_NET_BIND_SERVICE and --listen", listen, err, out)
	}

	// With CAP_NET_BIND_SERVICE ambient, and no other in the bounding set.
	caps := []string{"--inh-caps", "-all,+net_bind_service", "--ambient-caps", "+net_bind_service", "--bounding-set", "-all,+net_bind_service"}
	cmd = exec.Command(setpriv, append(append(base, caps...), server...)...)
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr := new(syncBuffer)
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	listening := make(chan string, 1)
	go func() {
		rx := regexp.MustCompile(`listening on (\S+)`)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := rx.FindStringSubmatch(sc.Text()); m != nil {
				listening <- m[1]
			}
		}
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	select {
	case addr := <-listening:
		if addr != listen {
			t.Fatalf("listening on %s, want %s", addr, listen)
		}
	case <-exited:
		t.Fatalf("pinhole server with CAP_NET_BIND_SERVICE exited; stderr:\n%s", stderr)
	case <-time.After(30 * time.Second):
		t.Fatalf("pinhole server with CAP_NET_BIND_SERVICE printed no address; stderr:\n%s", stderr)
	}
	c, err := net.DialTimeout("tcp", listen, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	banner, err := bufio.NewReader(c).ReadString('\n')
	c.Close()
	if !strings.HasPrefix(banner, "SSH-2.0-") {
		t.Fatalf("%s sent %q, %v; want an SSH banner", listen, banner, err)
	}
	fi, err := os.Stat(filepath.Join(state, "host_ed25519_key"))
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != nobody || fi.Mode().Perm() != 0o600 {
		t.Errorf("host key owned by %d, mode %#o; want nobody's, 0600", st.Uid, fi.Mode().Perm())
	}
}
