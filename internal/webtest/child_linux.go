package webtest

import (
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// sysProcAttr makes the kernel kill the child when the test process dies,
// so a test binary that panics or times out (and so runs no Cleanup)
// leaves no squid or nginx behind. With as set (a user name, and webtest
// running as root) the child runs as that user from the start, keeping
// CAP_NET_BIND_SERVICE when lowPort (a port below 1024) is set: a program
// that changed its user itself would lose Pdeathsig.
func sysProcAttr(as string, lowPort bool) (*syscall.SysProcAttr, error) {
	attr := &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if as == "" {
		return attr, nil
	}
	u, err := user.Lookup(as)
	if err != nil {
		return nil, err
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, err
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, err
	}
	attr.Credential = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{uint32(gid)}}
	if lowPort {
		const capNetBindService = 10
		attr.AmbientCaps = []uintptr{capNetBindService}
	}
	return attr, nil
}

// removeShm deletes the shared memory segments of squid service name.
func removeShm(service string) {
	files, _ := filepath.Glob(filepath.Join("/dev/shm", service+"-*.shm"))
	for _, f := range files {
		os.Remove(f)
	}
}

// deleteStaleShm deletes the segments of webtest squids whose test process
// died without cleaning up: the kernel killed the squid, and nobody
// removed its segments.
func deleteStaleShm() {
	files, _ := filepath.Glob(filepath.Join("/dev/shm", servicePrefix+"*x*-*.shm"))
	for _, f := range files {
		pidText, _, ok := strings.Cut(strings.TrimPrefix(filepath.Base(f), servicePrefix), "x")
		pid, err := strconv.Atoi(pidText)
		if !ok || err != nil || pid <= 0 || pid == os.Getpid() {
			continue
		}
		if err := syscall.Kill(pid, 0); err == nil || errors.Is(err, syscall.EPERM) {
			continue // still running
		}
		os.Remove(f)
	}
}
