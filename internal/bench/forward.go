package bench

import (
	"context"
	"fmt"
)

// startForward is the pinhole forward setup: the relay on one box, no
// tunnel, beside socat's row. One process relays the three pairs: TCP to
// iperf3 and to the echo server, UDP to the UDP echo server.
func startForward(ctx context.Context, l *lab, dir string) (*forwarding, error) {
	return started(func(f *forwarding) error {
		iperf, err := l.startIperf(ctx, f)
		if err != nil {
			return err
		}
		p, ports, err := startOnPorts(ctx, 3, func(ports []int) (*proc, error) {
			pair := func(proto string, listen, target int) []string {
				return []string{fmt.Sprintf("%s://%s", proto, loopback(listen)), fmt.Sprintf("%s://%s", proto, loopback(target))}
			}
			args := []string{"forward"}
			args = append(args, pair("tcp", ports[0], iperf)...)
			args = append(args, pair("tcp", ports[1], l.echo.Port())...)
			args = append(args, pair("udp", ports[2], l.udpEcho.Port())...)
			return startProc(l.pinhole, args...)
		}, forwarderReady)
		if err != nil {
			return err
		}
		f.add(p)
		f.iperfPort, f.echoPort, f.udpPort = ports[0], ports[1], ports[2]
		f.pids = func() ([]int, error) { return []int{p.Pid()}, nil }
		return nil
	})
}
