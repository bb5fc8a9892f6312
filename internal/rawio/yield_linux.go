//go:build linux

package rawio

import (
	"os"
	"sync"
	"syscall"
)

// poller is the event pollYield waits for: an eventfd in the runtime's
// poller, one for the process. Its fd's read lock is held for the whole of
// a yield, so yields take turns and armed needs no lock of its own.
var poller struct {
	once  sync.Once
	rc    syscall.RawConn // nil if the eventfd could not be made
	armed bool
}

// pollYield makes the eventfd readable and waits for the poller to say so.
// The goroutine parks, so the scheduler runs what is runnable and then,
// with nothing left, polls the network: the poller's answer brings back
// this goroutine and every one whose socket became ready. Gosched then
// lets those run first. If the eventfd cannot be made (no descriptors
// left), it only calls Gosched.
func pollYield() {
	poller.once.Do(func() {
		fd, _, errno := syscall.RawSyscall(syscall.SYS_EVENTFD2, 0, syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
		if errno != 0 {
			return
		}
		rc, err := os.NewFile(fd, "pinhole-poll-yield").SyscallConn()
		if err != nil {
			return
		}
		poller.rc = rc
	})
	if poller.rc == nil {
		goschedYield()
		return
	}
	var counter [8]byte
	err := poller.rc.Read(func(fd uintptr) bool {
		ReadOnce(fd, counter[:]) // drains the event, leftover or ours
		if poller.armed {
			poller.armed = false
			return true
		}
		one := [8]byte{1} // a nonzero uint64 whatever the byte order
		if _, err := WriteOnce(fd, one[:]); err != nil {
			return true
		}
		poller.armed = true
		return false // wait in the poller until it reports the write
	})
	if err != nil {
		poller.armed = false
	}
	goschedYield()
}
