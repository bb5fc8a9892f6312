//go:build linux

package tunnel

import (
	"testing"

	"golang.org/x/sys/unix"

	"github.com/pinhole-dev/pinhole/internal/streamtest"
)

// TestSSHSocketShortSendQueue: the socket under an SSH transport keeps at
// most sendQueueLowWater unsent in the kernel.
func TestSSHSocketShortSendQueue(t *testing.T) {
	c, _ := streamtest.TCPPair(t)
	newBufferedConn(c)
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var got int
	var gerr error
	rc.Control(func(fd uintptr) {
		got, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT)
	})
	if gerr != nil {
		t.Fatal(gerr)
	}
	if got != sendQueueLowWater {
		t.Fatalf("TCP_NOTSENT_LOWAT is %d, want %d", got, sendQueueLowWater)
	}
}
