package natlab

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

const supported = true

// InNamespace runs f on an OS thread that has entered the network
// namespace ns (a name from `ip netns`), then puts the thread back. Sockets
// that f opens stay in ns for their whole life, whichever thread later
// reads or writes them: that is how Listen and Dial open sockets in the
// lab from the test process. f must not start goroutines that open
// sockets; the Go runtime starts new threads from a clean template thread
// while f runs, so nothing else ends up in ns.
func InNamespace(ns string, f func() error) error {
	target, err := os.Open(filepath.Join("/run/netns", ns))
	if err != nil {
		return fmt.Errorf("natlab: namespace %s: %w", ns, err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Unlocked only once the thread is back in its own namespace:
		// if it cannot get back, the goroutine ends locked and the
		// runtime ends the thread with it.
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("natlab: this thread's network namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := setns(target); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("natlab: entering namespace %s: %w", ns, err)
			return
		}
		ferr := f()
		if err := setns(orig); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("natlab: leaving namespace %s: %w", ns, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

func setns(f *os.File) error {
	return unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
}

// dieWithTest makes the kernel kill cmd when the test process dies, so a
// test binary that panics or times out (and so runs no Cleanup) leaves no
// miniupnpd or pinhole behind.
func dieWithTest(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// DeleteStale deletes the namespaces of labs whose test process died
// without cleaning up (killed by a test timeout, say): those named
// prefix+PID+"-..." whose PID no longer runs. New calls it with natlab's
// prefix; other labs built on these helpers (faultlab) with theirs.
func DeleteStale(ip, prefix string) {
	entries, err := os.ReadDir("/run/netns")
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok {
			continue
		}
		pidText, _, ok := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); err == nil || errors.Is(err, syscall.EPERM) {
			continue // still running
		}
		exec.Command(ip, "netns", "delete", e.Name()).Run()
	}
}
