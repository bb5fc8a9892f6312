package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/pinhole-dev/pinhole/internal/ssh/knownhosts"
	"github.com/pinhole-dev/pinhole/internal/sshtest"
	"github.com/pinhole-dev/pinhole/internal/transport"
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
	// holds: conns10k is measured on it, once per run.
	holds bool
	// http: it carries the HTTP service (forwarding.http), so http1 and
	// http64 are measured on it; onlyHTTP: nothing else is, its -L
	// forwards being the pinhole row's.
	http, onlyHTTP bool
	// start runs the setup's forwarder, with its files in dir, and says
	// where it takes traffic in.
	start func(ctx context.Context, l *lab, dir string) (*forwarding, error)
}

func setups() []setup {
	return []setup{
		{name: "direct", title: "direct (no forwarder)", udp: true, http: true, start: startDirect},
		{name: "socat", title: "socat relay", start: startSocat},
		{name: "forward", title: "pinhole forward relay", udp: true, memory: true, start: startForward},
		{name: baseline, title: "OpenSSH ssh → OpenSSH sshd", memory: true, holds: true, start: tunnelEnds{openSSHClient: true, openSSHServer: true}.start},
		{name: "pinhole", title: "pinhole connect → pinhole server", udp: true, memory: true, holds: true, start: tunnelEnds{}.start},
		{name: "pinhole-metrics", title: "pinhole connect → pinhole server, --metrics at both ends scraped every 15 s", udp: true, memory: true, start: tunnelEnds{scrape: 15 * time.Second}.start},
		{name: "pinhole-metrics1s", title: "pinhole connect → pinhole server, --metrics at both ends scraped every second", udp: true, memory: true, start: tunnelEnds{scrape: time.Second}.start},
		{name: "pinhole-tls", title: "pinhole connect tls:// → pinhole server", udp: true, memory: true, holds: true, start: tunnelEnds{scheme: transport.TLS}.start},
		{name: "pinhole-wss", title: "pinhole connect wss:// → pinhole server", udp: true, memory: true, holds: true, start: tunnelEnds{scheme: transport.WSS}.start},
		{name: "ssh-pinhole", title: "OpenSSH ssh → pinhole server", memory: true, start: tunnelEnds{openSSHClient: true}.start},
		{name: "pinhole-sshd", title: "pinhole connect → OpenSSH sshd", memory: true, start: tunnelEnds{openSSHServer: true}.start},
		{name: "http", title: "http:// name → pinhole server → pinhole connect -R", http: true, onlyHTTP: true, start: tunnelEnds{name: "http"}.start},
		{name: "https", title: "https:// name → pinhole server → pinhole connect -R", http: true, onlyHTTP: true, start: tunnelEnds{name: "https"}.start},
		{name: "ssh-http", title: "http:// name → pinhole server → OpenSSH ssh -R", http: true, onlyHTTP: true, start: tunnelEnds{openSSHClient: true, name: "http"}.start},
	}
}

// forwarding is a setup that runs: where each kind of traffic goes in.
type forwarding struct {
	iperfPort int        // TCP to iperf3 -s
	echoPort  int        // TCP to the echo server
	udpPort   int        // UDP to the UDP echo server; 0 when the setup has no UDP
	http      httpTarget // to the HTTP service, for the setups with http

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
// client's key, pinhole server's TLS certificate, and the echo servers
// behind every forward.
type lab struct {
	pinhole string
	key     *sshtest.Key
	// tlsFile holds pinhole server's TLS certificate and its key (one
	// PEM file, for both --tls-cert and --tls-key), so that no server
	// writes a self-signed one into the user's state directory;
	// tlsFingerprint is what pinhole connect pins for tls:// and wss://.
	tlsFile, tlsFingerprint string
	echo                    *echoChild
	udpEcho                 *udpEcho
}

// newLab writes the client key and a TLS certificate into dir and starts
// the echo servers the setups forward to; close ends them.
func newLab(dir, pinhole string) (*lab, error) {
	key, err := sshtest.WriteKey(dir, "client_key")
	if err != nil {
		return nil, err
	}
	l := &lab{pinhole: pinhole, key: key, tlsFile: filepath.Join(dir, "pinhole_tls.pem")}
	cert, _, err := transport.LoadOrCreateSelfSigned(l.tlsFile, []string{"127.0.0.1"})
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	l.tlsFingerprint = transport.Fingerprint(cert.Certificate[0])
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
		f.http = httpTarget{port: l.echo.HTTPPort(), url: fmt.Sprintf("http://127.0.0.1:%d/", l.echo.HTTPPort())}
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

// tunnelEnds is a setup made of an SSH client and server, each OpenSSH's
// or pinhole's. Only pinhole ends carry UDP.
type tunnelEnds struct {
	openSSHClient, openSSHServer bool
	// scheme is the transport pinhole connect reaches pinhole server
	// over: "" for raw SSH, transport.TLS or transport.WSS. It is for two
	// pinhole ends only: the rest of the setup is the same for every
	// scheme, so that rows differ by the transport alone.
	scheme transport.Scheme
	// name, "http" or "https", makes the server a name router (--domain
	// bench.test) and adds to the client a -R app:80 to the HTTP service,
	// reached as http(s)://app.bench.test on the server's port. For
	// pinhole server only.
	name string
	// scrape, if not 0, turns on --metrics at both ends (pinhole ends
	// only) and scrapes them this often while the setup runs: 15 s is
	// Prometheus's default scrape_interval, 1 s shows what a scrape
	// itself costs.
	scrape time.Duration
}

// nameServerFlags are the name router's flags of pinhole server: with
// the limits the names tests use, since until HTTP has limits of its
// own every HTTP connection counts toward SSH's pre-authentication ones
// until its first header (docs/names.md).
var nameServerFlags = []string{"--domain", benchDomain, "--max-startups", "200", "--per-source-max-startups", "none"}

// start is the setup's start.
func (t tunnelEnds) start(ctx context.Context, l *lab, dir string) (*forwarding, error) {
	return started(func(f *forwarding) error {
		iperf, err := l.startIperf(ctx, f)
		if err != nil {
			return err
		}
		var addr, user, knownHosts string
		var server *proc // pinhole server, nil for sshd
		var serverPids func() ([]int, error)
		if t.openSSHServer {
			sshd, err := l.startSSHD(dir, f)
			if err != nil {
				return err
			}
			addr, user, knownHosts = sshd.Addr, sshd.User, sshd.KnownHostsLine()
			// sshd with every process it forked for the connection
			serverPids = func() ([]int, error) { return withDescendants(sshd.Pid) }
		} else {
			var extra []string
			if t.name != "" {
				extra = nameServerFlags
			}
			if t.scrape > 0 {
				extra = append(extra, metricsFlags...)
			}
			p, a, kh, err := l.startPinholeServer(ctx, dir, f, extra...)
			if err != nil {
				return err
			}
			addr, user, knownHosts = a, "bench", kh
			serverPids = func() ([]int, error) { return []int{p.Pid()}, nil }
			server = p
		}
		var client *proc
		var remote []string // the -R of a name, the same for either client
		if t.name != "" {
			remote = []string{"-R", fmt.Sprintf("%s:80:127.0.0.1:%d", benchName, l.echo.HTTPPort())}
		}
		if t.openSSHClient {
			o := sshtest.SSHOptions{Addr: addr, User: user, Key: l.key, KnownHosts: knownHosts}
			client, err = l.startSSH(ctx, dir, f, o, iperf, remote...)
		} else {
			dest := pinholeDest{addr: addr, user: user, knownHosts: knownHosts, scheme: t.scheme}
			extra := remote
			if t.scrape > 0 {
				extra = append(extra, metricsFlags...)
			}
			client, err = l.startPinholeConnect(ctx, dir, f, dest, iperf, !t.openSSHServer, extra...)
		}
		if err != nil {
			return err
		}
		if t.scrape > 0 {
			var urls []string
			for _, p := range []*proc{server, client} {
				u, err := metricsURL(p)
				if err != nil {
					return err
				}
				urls = append(urls, u)
			}
			f.add(scrapeAll(urls, t.scrape))
		}
		if t.name != "" {
			if f.http, err = l.waitName(ctx, t.name, addr); err != nil {
				return err
			}
		}
		f.pids = func() ([]int, error) {
			pids, err := serverPids()
			return append([]int{client.Pid()}, pids...), err
		}
		return nil
	})
}

// waitName waits until the name router at addr answers GETs to the name
// with the HTTP service's answer, over scheme, and returns the target.
func (l *lab) waitName(ctx context.Context, scheme, addr string) (httpTarget, error) {
	_, p, err := splitHostPort(addr)
	if err != nil {
		return httpTarget{}, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return httpTarget{}, fmt.Errorf("bench: port of %s: %w", addr, err)
	}
	t := httpTarget{port: port, url: httpURL(scheme, port), fingerprint: l.tlsFingerprint}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for !httpServes(ctx, t) {
		select {
		case <-ctx.Done():
			return httpTarget{}, fmt.Errorf("bench: %s did not answer with the service's page in time", t.url)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return t, nil
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

// startPinholeServer starts pinhole server with a new host key and the
// lab's TLS certificate, letting the client's key in, and extra flags, and
// returns its address and known_hosts line. The one port serves raw SSH,
// TLS and WebSocket alike. The per-key limit on open streams is off: the
// bench's one key holds 2,000 idle connections (memory) and 10,000
// (conns10k), past the default 1,000, and with the limit on, half of
// memory's connections were refused and their cost counted against the
// others (BENCHMARKS.md, "Metrics: the cost").
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
			"--host-key", hostKey.PrivateFile, "--authorized-keys", authorized,
			"--tls-cert", l.tlsFile, "--tls-key", l.tlsFile,
			// sshd has no limit of streams per key, and memory and
			// conns10k hold 2,000 and 10,000 at once through one key.
			"--max-streams-per-key", "0"}
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
// echo server, and extra arguments.
func (l *lab) startSSH(ctx context.Context, dir string, f *forwarding, o sshtest.SSHOptions, iperf int, extra ...string) (*proc, error) {
	knownHosts := filepath.Join(dir, "ssh_known_hosts")
	if err := os.WriteFile(knownHosts, []byte(o.KnownHosts), 0o600); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	p, ports, err := startOnPorts(ctx, 2, func(ports []int) (*proc, error) {
		o := o
		o.Args = append(l.forwardSpecs(ports, iperf), extra...)
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

// pinholeDest is the server pinhole connect reaches, and how.
type pinholeDest struct {
	addr, user, knownHosts string
	// scheme: "" or transport.SSH for raw SSH to addr, transport.TLS or
	// transport.WSS for SSH inside TLS or WebSocket to the same port
	// (pinhole server's), the certificate pinned to the lab's.
	scheme transport.Scheme
}

// args are pinhole connect's arguments that name d: flags, then the
// destination last.
func (d pinholeDest) args(l *lab) ([]string, error) {
	host, port, err := splitHostPort(d.addr)
	if err != nil {
		return nil, err
	}
	switch d.scheme {
	case "", transport.SSH:
		return []string{"-p", port, host}, nil
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("bench: port of %s: %w", d.addr, err)
	}
	// The host key is checked under host:port as for raw SSH, so the
	// same known_hosts line serves.
	e := transport.Endpoint{Scheme: d.scheme, Host: host, Port: uint16(n), Path: transport.DefaultPath}
	return []string{"--tls-fingerprint", l.tlsFingerprint, "--proxy", "none", e.String()}, nil
}

// startPinholeConnect starts pinhole connect to d with extra flags and
// forwards to iperf3 (or whatever listens on port iperf) and the echo
// server, and with udp one to the UDP echo server.
func (l *lab) startPinholeConnect(ctx context.Context, dir string, f *forwarding, d pinholeDest, iperf int, udp bool, extra ...string) (*proc, error) {
	dest, err := d.args(l)
	if err != nil {
		return nil, err
	}
	knownHostsFile := filepath.Join(dir, "pinhole_known_hosts")
	if err := os.WriteFile(knownHostsFile, []byte(d.knownHosts), 0o600); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	n := 2
	if udp {
		n = 3
	}
	p, ports, err := startOnPorts(ctx, n, func(ports []int) (*proc, error) {
		args := []string{"connect", "-l", d.user, "-i", l.key.PrivateFile,
			"--known-hosts", knownHostsFile, "--host-key-check", "yes"}
		args = append(args, extra...)
		args = append(args, l.forwardSpecs(ports, iperf)...)
		return startProc(l.pinhole, append(args, dest...)...)
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
