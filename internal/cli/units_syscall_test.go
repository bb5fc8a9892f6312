package cli

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/sshtest"
	"github.com/pinhole-dev/pinhole/internal/streamtest"
)

// syscallGroups expands systemd's syscall groups (@system-service, …)
// into system call names, as systemd-analyze syscall-filter lists them.
func syscallGroups(t *testing.T, sa string) map[string][]string {
	t.Helper()
	out, err := exec.Command(sa, "syscall-filter", "--no-pager").Output()
	if err != nil {
		t.Fatalf("systemd-analyze syscall-filter: %v", err)
	}
	groups := map[string][]string{}
	cur := ""
	for _, line := range strings.Split(string(out), "\n") {
		s := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "@"):
			cur = s
		case s == "" || strings.HasPrefix(s, "#") || cur == "":
		default:
			groups[cur] = append(groups[cur], s)
		}
	}
	return groups
}

func expandGroup(groups map[string][]string, g string, into map[string]bool) {
	for _, x := range groups[g] {
		if strings.HasPrefix(x, "@") {
			expandGroup(groups, x, into)
		} else {
			into[x] = true
		}
	}
}

// TestUnitSyscallFilter: the system calls pinhole server makes (start and
// host key generation, a stock OpenSSH ssh -L carrying a stream, a
// reload, a graceful stop), traced with strace, are all in the unit's
// SystemCallFilter=@system-service and none in ~@privileged, so the
// seccomp filter of pinhole-server.service never kills it.
func TestUnitSyscallFilter(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not found (Debian package systemd): the system call filter is not checked")
	}
	strace, err := exec.LookPath("strace")
	if err != nil {
		t.Skip("strace not found (Debian package strace): the system call filter is not checked")
	}
	sshtest.Need(t, sshtest.SSHPath)
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildPinhole(t)
	dir := t.TempDir()
	trace := filepath.Join(dir, "trace")
	wrapper := filepath.Join(dir, "pinhole-traced")
	script := fmt.Sprintf("#!/bin/sh\nexec %s -f -qq -o %s %s \"$@\"\n", strace, trace, bin)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	key := sshtest.NewKey(t, dir, "id_client")
	srv, known := startServerProc(t, wrapper, dir, key)
	echo := streamtest.NewEcho(t)
	ssh, port := sshtest.StartSSHForward(t, sshtest.SSHOptions{Addr: srv.addr, Key: key, KnownHosts: known},
		func(p int) []string { return []string{"-L", fmt.Sprintf("127.0.0.1:%d:%s", p, echo.Addr())} }, nil)
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	payload := bytes.Repeat([]byte("pinhole "), 128<<10)
	go func() {
		conn.Write(payload)
		conn.(*net.TCPConn).CloseWrite()
	}()
	conn.SetReadDeadline(time.Now().Add(time.Minute))
	got, err := io.ReadAll(conn)
	conn.Close()
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("1 MiB through ssh -L: %d bytes back, equal %v, %v", len(got), bytes.Equal(got, payload), err)
	}
	ssh.Stop()

	// pinhole is strace's child; its pid is the first in the trace.
	f, err := os.Open(trace)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := bufio.NewReader(f).ReadString(' ')
	f.Close()
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		t.Fatalf("no pid at the start of the trace: %q", first)
	}
	syscall.Kill(pid, syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(srv.stderr.String(), "reload: authorized_keys read again") {
		if time.Now().After(deadline) {
			t.Fatalf("no reload after SIGHUP; stderr:\n%s", srv.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	syscall.Kill(pid, syscall.SIGTERM)
	if code := srv.waitExit(t, 30*time.Second); code != 0 {
		t.Fatalf("exit %d after SIGTERM, want 0", code)
	}

	data, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	call := regexp.MustCompile(`(?m)^\d+ +([a-z0-9_]+)\(`)
	used := map[string]bool{}
	for _, m := range call.FindAllStringSubmatch(string(data), -1) {
		used[m[1]] = true
	}
	if !used["accept4"] || !used["execve"] {
		t.Fatalf("the trace lacks execve or accept4: strace did not trace pinhole? %d calls", len(used))
	}
	groups := syscallGroups(t, sa)
	allowed, privileged := map[string]bool{}, map[string]bool{}
	expandGroup(groups, "@system-service", allowed)
	expandGroup(groups, "@privileged", privileged)
	if len(allowed) < 100 {
		t.Fatalf("@system-service expanded to %d calls only: systemd-analyze syscall-filter changed its output?", len(allowed))
	}
	var names, denied []string
	for s := range used {
		names = append(names, s)
		if !allowed[s] || privileged[s] {
			denied = append(denied, s)
		}
	}
	slices.Sort(names)
	slices.Sort(denied)
	if len(denied) > 0 {
		t.Errorf("pinhole server called %v, which the unit's SystemCallFilter= denies (EPERM)", denied)
	}
	t.Logf("%d system calls, all allowed: %s", len(names), strings.Join(names, " "))
}
