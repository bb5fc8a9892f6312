//go:build linux

package webtest

import (
	"bufio"
	"errors"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPortTaken: on a port another program listens on, squid and nginx
// fail with errPortTaken (so StartSquid and StartNginx try another port),
// and do so at once, without nginx's 2.5 s of retries.
func TestPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	taken := ln.Addr().(*net.TCPAddr).AddrPort()
	for _, tc := range []struct {
		name string
		try  func(t *testing.T) error
	}{
		{"squid", func(t *testing.T) error { return newSquid(t, SquidConfig{}).tryPort(taken) }},
		{"nginx", func(t *testing.T) error { return newNginx(t, NginxConfig{Upstream: taken}).tryPort(taken) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			if err := tc.try(t); !errors.Is(err, errPortTaken) {
				t.Fatalf("on a port in use: %v, want errPortTaken", err)
			}
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("took %v to see the port was in use", took)
			}
		})
	}
}

// TestDieWithTest: when the test process dies without cleaning up (killed
// here), the kernel kills its squid (running as another user when root)
// and nginx too.
func TestDieWithTest(t *testing.T) {
	if os.Getenv("WEBTEST_HELPER") == "1" {
		s := StartSquid(t, SquidConfig{})
		up, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		n := StartNginx(t, NginxConfig{Upstream: up.Addr().(*net.TCPAddr).AddrPort()})
		os.Stdout.WriteString("pids " + strconv.Itoa(s.Pid) + " " + strconv.Itoa(n.Pid) + " " + s.Dir + "\n")
		time.Sleep(30 * time.Second) // until killed
		return
	}
	Need(t, "squid", "nginx")
	cmd := exec.Command(os.Args[0], "-test.run=^TestDieWithTest$", "-test.v")
	cmd.Env = append(os.Environ(), "WEBTEST_HELPER=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait() // a second Wait returns at once
	defer cmd.Process.Kill()
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "pids ") {
				lines <- sc.Text()
			}
		}
		close(lines)
	}()
	var line string
	select {
	case line = <-lines:
	case <-time.After(30 * time.Second):
		t.Fatal("the helper test started no squid and nginx in 30 s")
	}
	f := strings.Fields(line)
	if len(f) != 4 {
		t.Fatalf("the helper test said %q", line)
	}
	defer os.RemoveAll(f[3]) // squid's directory, which the dead test leaves
	cmd.Process.Kill()
	cmd.Wait()
	defer deleteStaleShm() // the killed squid's segments: its test process is gone
	for _, s := range f[1:3] {
		pid, _ := strconv.Atoi(s)
		deadline := time.Now().Add(5 * time.Second)
		for alive(pid) {
			if time.Now().After(deadline) {
				syscall.Kill(pid, syscall.SIGKILL)
				t.Fatalf("pid %d still runs 5 s after its test process died", pid)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// alive reports whether pid runs: it exists and is not a zombie (whose
// reaper may be slow, or missing in a container).
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return !errors.Is(err, os.ErrNotExist)
	}
	// pid (comm) S ...: the state follows the last ')'.
	i := strings.LastIndexByte(string(stat), ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

// TestMissing: the skip line names the program and its Debian package.
func TestMissing(t *testing.T) {
	for _, tc := range []struct {
		programs []string
		want     string
	}{
		{[]string{"sh"}, ""},
		{[]string{"sh", "/nonexistent/sbin/squid"}, "webtest: skipping: /nonexistent/sbin/squid not found (install squid, or run scripts/test which installs it)"},
		{[]string{"/nonexistent/nginx"}, "webtest: skipping: /nonexistent/nginx not found (install nginx, or run scripts/test which installs it)"},
		{[]string{"no-such-program-webtest"}, "webtest: skipping: no-such-program-webtest not found (install it, or run scripts/test which installs it)"},
	} {
		if got := missing(tc.programs); got != tc.want {
			t.Errorf("missing(%q) = %q, want %q", tc.programs, got, tc.want)
		}
	}
}
