package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/pinhole-dev/pinhole/internal/ssh/knownhosts"
	"github.com/pinhole-dev/pinhole/internal/sshtest"
)

// baseline names the setup every ratio is taken against.
const baseline = "openssh"

// setup is one way of carrying traffic from a local port to the
// benchmark's servers: one row of the table.
type setup struct {
	name  string // what -only selects it by
	title string // the row's label
	udp   bool   // carries UDP (-L .../udp): pinhole ends only, or direct
	// memory: its forwarder processes serve every connection, so their
	// growth is what an idle connection costs. Not so for socat, which
	// forks a process per connection, nor direct, which has none.
	memory bool
	// start runs the setup's forwarder, with its files in dir, and says
	// where it takes traffic in.
	start func(ctx context.Context, l *lab, dir string) (*forwarding, error)
}

func setups() []setup {
	return []setup{
		{name: "direct", title: "direct (no forwarder)", udp: true, start: startDirect},
		{name: "socat", title: "socat relay", start: startSocat},
		{name: baseline, title: "OpenSSH ssh → OpenSSH sshd", memory: true, start: startTunnel(true, true)},
		{name: "pinhole", title: "pinhole connect → pinhole server", udp: true, memory: true, start: startTunnel(false, false)},
		{name: "ssh-pinhole", title: "OpenSSH ssh → pinhole server", memory: true, start: startTunnel(true, false)},
		{name: "pinhole-sshd", title: "pinhole connect → OpenSSH sshd", memory: true, start: startTunnel(false, true)},
	}
}

// forwarding is a setup that runs: where each kind of traffic goes in.
type forwarding struct {
	iperfPort int // TCP to iperf3 -s
	echoPort  int // TCP to the echo server
	udpPort   int // UDP to the UDP echo server; 0 when the setup has no UDP

	// pids returns the forwarder's processes, whose memory an idle
	// connection costs; set for the setups with memory.
	pids func() ([]int, error)

	closers []io.Closer // closed last first
}

func (f *forwarding) add(c io.Closer) { f.closers = append(f.closers, c) }

// Close stops everything the setup started. It is idempotent.
func (f *forwarding) Close() error {
	for i := len(f.closers) - 1; i >= 0; i-- {
		f.closers[i].Close()
	}
	f.closers = nil
	return nil
}

type closerFunc func()

func (f closerFunc) Close() error { f(); return nil }

// lab holds what every setup of a run shares: the pinhole binary, the
// client's key, and the echo servers behind every forward.
type lab struct {
	pinhole string
	key     *sshtest.Key
	echo    *echoChild
	udpEcho *udpEcho
}

// newLab writes the client key into dir and starts the echo servers the
// setups forward to; close ends them.
func newLab(dir, pinhole string) (*lab, error) {
	key, err := sshtest.WriteKey(dir, "client_key")
	if err != nil {
		return nil, err
	}
	l := &lab{pinhole: pinhole, key: key}
	if l.echo, err = startEchoChild(); err != nil {
		return nil, err
	}
	if l.udpEcho, err = newUDPEcho(); err != nil {
		l.echo.Close()
		return nil, fmt.Errorf("bench: %w", err)
	}
	return l, nil
}

func (l *lab) close() {
	l.udpEcho.Close()
	l.echo.Close()
}

// started runs start on a new forwarding and closes it on failure.
func started(build func(f *forwarding) error) (*forwarding, error) {
	f := &forwarding{}
	if err := build(f); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func startDirect(ctx context.Context, l *lab, dir string) (*forwarding, error) {
	return started(func(f *forwarding) error {
		iperf, err := l.startIperf(ctx, f)
		f.iperfPort, f.echoPort, f.udpPort = iperf, l.echo.Port(), l.udpEcho.Port()
		return err
	})
}

func startSocat(ctx context.Context, l *lab, dir string) (*forwarding, error) {
	return started(func(f *forwarding) error {
		iperf, err := l.startIperf(ctx, f)
		if err != nil {
			return err
		}
		socat := func(target int, ready func(*proc, []int) bool) (int, error) {
			p, ports, err := startOnPorts(ctx, 1, func(ports []int) (*proc, error) {
				return startProc("socat",
					fmt.Sprintf("TCP-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork", ports[0]),
					"TCP:"+loopback(target))
			}, ready)
			if err != nil {
				return 0, err
			}
			f.add(p)
			return ports[0], nil
		}
		if f.echoPort, err = socat(l.echo.Port(), func(_ *proc, ports []int) bool { return echoes(ports[0]) }); err != nil {
			return err
		}
		f.iperfPort, err = socat(iperf, func(_ *proc, ports []int) bool { return accepts(ports[0]) })
		return err
	})
}

// startTunnel returns the start of a setup made of an SSH client and
// server, each OpenSSH's or pinhole's. Only pinhole ends carry UDP.
func startTunnel(openSSHClient, openSSHServer bool) func(ctx context.Context, l *lab, dir string) (*forwarding, error) {
	return func(ctx context.Context, l *lab, dir string) (*forwarding, error) {
		return started(func(f *forwarding) error {
			iperf, err := l.startIperf(ctx, f)
			if err != nil {
				return err
			}
			var addr, user, knownHosts string
			var serverPids func() ([]int, error)
			if openSSHServer {
				sshd, err := l.startSSHD(dir, f)
				if err != nil {
					return err
				}
				addr, user, knownHosts = sshd.Addr, sshd.User, sshd.KnownHostsLine()
				// sshd with every process it forked for the connection
				serverPids = func() ([]int, error) { return withDescendants(sshd.Pid) }
			} else {
				p, a, kh, err := l.startPinholeServer(ctx, dir, f)
				if err != nil {
					return err
				}
				addr, user, knownHosts = a, "bench", kh
				serverPids = func() ([]int, error) { return []int{p.Pid()}, nil }
			}
			var client *proc
			if openSSHClient {
				o := sshtest.SSHOptions{Addr: addr, User: user, Key: l.key, KnownHosts: knownHosts}
				client, err = l.startSSH(ctx, dir, f, o, iperf)
			} else {
				client, err = l.startPinholeConnect(ctx, dir, f, addr, user, knownHosts, iperf, !openSSHServer)
			}
			if err != nil {
				return err
			}
			f.pids = func() ([]int, error) {
				pids, err := serverPids()
				return append([]int{client.Pid()}, pids...), err
			}
			return nil
		})
	}
}

// startIperf starts iperf3 -s for one setup and returns its port.
func (l *lab) startIperf(ctx context.Context, f *forwarding) (int, error) {
	p, ports, err := startOnPorts(ctx, 1, func(ports []int) (*proc, error) {
		return startProc("iperf3", "-s", "-B", "127.0.0.1", "-p", strconv.Itoa(ports[0]), "--forceflush")
	}, outputHas("Server listening on %d"))
	if err != nil {
		return 0, err
	}
	f.add(p)
	return ports[0], nil
}

// startSSHD starts a throwaway sshd that lets the client's key in. Its log
// level is sshd's default, so that it writes nothing per connection.
// sshtest's MaxSessions 1000 does not limit -L: direct-tcpip channels are
// not sessions, and conns10k holds 10,000 of them through it.
func (l *lab) startSSHD(dir string, f *forwarding) (*sshtest.SSHD, error) {
	sshd, err := sshtest.LaunchSSHD(dir, sshtest.SSHDConfig{
		AuthorizedKeys: l.key.AuthorizedLine,
		Extra:          []string{"LogLevel INFO"},
		RandomPort:     lowPort,
	})
	if err != nil {
		return nil, err
	}
	f.add(closerFunc(sshd.Stop))
	return sshd, nil
}

// startPinholeServer starts pinhole server with a new host key, letting
// the client's key in, and extra flags, and returns its address and
// known_hosts line.
func (l *lab) startPinholeServer(ctx context.Context, dir string, f *forwarding, extra ...string) (p *proc, addr, knownHosts string, err error) {
	hostKey, err := sshtest.WriteKey(dir, "pinhole_host_key")
	if err != nil {
		return nil, "", "", err
	}
	authorized := filepath.Join(dir, "pinhole_authorized_keys")
	if err := os.WriteFile(authorized, []byte(l.key.AuthorizedLine), 0o600); err != nil {
		return nil, "", "", fmt.Errorf("bench: %w", err)
	}
	p, ports, err := startOnPorts(ctx, 1, func(ports []int) (*proc, error) {
		args := []string{"server", "--listen", loopback(ports[0]),
			"--host-key", hostKey.PrivateFile, "--authorized-keys", authorized}
		return startProc(l.pinhole, append(args, extra...)...)
	}, outputHas("listening on 127.0.0.1:%d"))
	if err != nil {
		return nil, "", "", err
	}
	f.add(p)
	addr = loopback(ports[0])
	return p, addr, knownhosts.Line([]string{addr}, hostKey.Public) + "\n", nil
}

// forwardSpecs returns the -L arguments for a forwarder listening on
// ports: ports[0] to iperf3, ports[1] to the echo server, and, with a
// third port, ports[2] to the UDP echo server.
func (l *lab) forwardSpecs(ports []int, iperf int) []string {
	args := []string{
		"-L", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:%d", ports[0], iperf),
		"-L", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:%d", ports[1], l.echo.Port()),
	}
	if len(ports) > 2 {
		args = append(args, "-L", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:%d/udp", ports[2], l.udpEcho.Port()))
	}
	return args
}

// forwarderReady is startOnPorts' ready for a forwarder: its echo forward
// carries a round trip.
func forwarderReady(_ *proc, ports []int) bool { return echoes(ports[1]) }

// startSSH starts OpenSSH's ssh -N with o and forwards to iperf3 and the
// echo server.
func (l *lab) startSSH(ctx context.Context, dir string, f *forwarding, o sshtest.SSHOptions, iperf int) (*proc, error) {
	knownHosts := filepath.Join(dir, "ssh_known_hosts")
	if err := os.WriteFile(knownHosts, []byte(o.KnownHosts), 0o600); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	p, ports, err := startOnPorts(ctx, 2, func(ports []int) (*proc, error) {
		o := o
		o.Args = l.forwardSpecs(ports, iperf)
		args, err := o.CommandArgs(knownHosts)
		if err != nil {
			return nil, err
		}
		return startProc(sshtest.SSHPath, args...)
	}, forwarderReady)
	if err != nil {
		return nil, err
	}
	f.add(p)
	f.iperfPort, f.echoPort = ports[0], ports[1]
	return p, nil
}

// startPinholeConnect starts pinhole connect to addr with extra flags and
// forwards to iperf3 (or whatever listens on port iperf) and the echo
// server, and with udp one to the UDP echo server.
func (l *lab) startPinholeConnect(ctx context.Context, dir string, f *forwarding, addr, user, knownHosts string, iperf int, udp bool, extra ...string) (*proc, error) {
	host, port, err := splitHostPort(addr)
	if err != nil {
		return nil, err
	}
	knownHostsFile := filepath.Join(dir, "pinhole_known_hosts")
	if err := os.WriteFile(knownHostsFile, []byte(knownHosts), 0o600); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	n := 2
	if udp {
		n = 3
	}
	p, ports, err := startOnPorts(ctx, n, func(ports []int) (*proc, error) {
		args := []string{"connect", "-p", port, "-l", user, "-i", l.key.PrivateFile,
			"--known-hosts", knownHostsFile, "--host-key-check", "yes"}
		args = append(args, extra...)
		args = append(args, l.forwardSpecs(ports, iperf)...)
		return startProc(l.pinhole, append(args, host)...)
	}, forwarderReady)
	if err != nil {
		return nil, err
	}
	f.add(p)
	f.iperfPort, f.echoPort = ports[0], ports[1]
	if udp {
		f.udpPort = ports[2]
	}
	return p, nil
}
