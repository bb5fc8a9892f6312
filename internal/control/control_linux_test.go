package control

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestBusySocketKept: a live process whose socket's backlog is full (a
// dial gets EAGAIN, not ECONNREFUSED) keeps its socket: Listen is
// ErrInUse and does not remove the file.
func TestBusySocketKept(t *testing.T) {
	path := filepath.Join(t.TempDir(), "busy.sock")
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	if err := syscall.Bind(fd, &syscall.SockaddrUnix{Name: path}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil { // a backlog of one, never accepted
		t.Fatal(err)
	}
	full := false
	for range 16 {
		c, err := net.DialTimeout("unix", path, time.Second)
		if err != nil {
			if !errors.Is(err, syscall.EAGAIN) {
				t.Fatalf("dial of a busy socket: %v; want EAGAIN", err)
			}
			full = true
			break
		}
		defer c.Close()
	}
	if !full {
		t.Fatal("the backlog did not fill in 16 connections")
	}
	before, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if ln, err := Listen(path); !errors.Is(err, ErrInUse) {
		if ln != nil {
			ln.Close()
		}
		t.Errorf("Listen on a busy live socket: %v; want ErrInUse", err)
	}
	after, err := os.Lstat(path)
	if err != nil || !os.SameFile(before, after) {
		t.Errorf("the busy socket after Listen: %v; want the same file kept", err)
	}
}
