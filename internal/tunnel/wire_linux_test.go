package tunnel

import (
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestListenStreamsKeepAlive: what the default listener accepts has TCP
// keepalive on, at the system's timing (no TCP_KEEPIDLE of its own).
func TestListenStreamsKeepAlive(t *testing.T) {
	raw, err := os.ReadFile("/proc/sys/net/ipv4/tcp_keepalive_time")
	if err != nil {
		t.Skipf("cannot read the system's keepalive time: %v", err)
	}
	sysIdle, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := listenStreams("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	a, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	rc, err := a.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var on, idle int
	var serr error
	rc.Control(func(fd uintptr) {
		if on, serr = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE); serr == nil {
			idle, serr = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE)
		}
	})
	if serr != nil {
		t.Fatal(serr)
	}
	if on != 1 || idle != sysIdle {
		t.Errorf("SO_KEEPALIVE %d, TCP_KEEPIDLE %d s; want 1 and the system's %d s", on, idle, sysIdle)
	}
}
