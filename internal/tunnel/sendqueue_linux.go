//go:build linux

package tunnel

import (
	"net"

	"golang.org/x/sys/unix"
)

// sendQueueLowWater is the most the kernel holds unsent on an SSH
// connection's socket (TCP_NOTSENT_LOWAT): past it, a write waits in
// pinhole instead. A small packet of one channel written behind a bulk
// transfer on another then waits behind at most this much of it in the
// kernel, not behind a send buffer that autotuning grows to megabytes,
// which at an uplink's few MB/s is seconds. Bytes sent and not yet
// acknowledged do not count, so a long fat link still fills. HTTP/2
// servers set it for the same reason (16–128 KiB); pinhole's data packets
// are 128 KiB, and a lower mark cost throughput on loopback
// (BENCHMARKS.md, "Latency beside a download").
const sendQueueLowWater = 128 << 10

// shortSendQueue sets sendQueueLowWater on c. It is advice: where the
// kernel refuses it, the socket stays as it was.
func shortSendQueue(c *net.TCPConn) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	rc.Control(func(fd uintptr) {
		unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_NOTSENT_LOWAT, sendQueueLowWater)
	})
}
