package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pinhole-dev/pinhole/internal/natlab"
)

// The -kernel mode: pinhole forward --kernel against routing with no
// forwarder, and pinhole forward in user space, across three network
// namespaces of the run's own, joined by veth pairs:
//
//	client 10.98.1.2 ── 10.98.1.1 relay 10.98.2.1 ── 10.98.2.2 target (iperf3 -s)
//
// direct: the client reaches the target through the relay namespace's
// routing; kernel: the client connects to the relay's 10.98.1.1 and the
// DNAT of pinhole forward --kernel sends it on; forward: pinhole forward
// in user space on the relay's 10.98.1.1. The three alternate in each
// round, so they share the same minutes.
const (
	kernelClientAddr = "10.98.1.2"
	kernelRelayIn    = "10.98.1.1"
	kernelRelayOut   = "10.98.2.1"
	kernelTargetAddr = "10.98.2.2"
	kernelIperf      = 5201 // target namespace
	kernelDNATPort   = 8201 // relay namespace, --kernel
	kernelUserPort   = 8301 // relay namespace, user space
	kernelPrefix     = "pinhole-bench-fwd-"
)

// kernelLab is the three namespaces of a -kernel run.
type kernelLab struct {
	ip                    string
	client, relay, target string
	procs                 []*exec.Cmd
}

func (l *kernelLab) run(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, l.ip, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("bench: ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// build makes the namespaces, links, addresses and routes.
func (l *kernelLab) build(ctx context.Context) error {
	steps := [][]string{
		{"netns", "add", l.client}, {"netns", "add", l.relay}, {"netns", "add", l.target},
		// made in the relay's namespace with their peers moved out at
		// once: no interface of the lab is ever in the machine's own.
		{"-n", l.relay, "link", "add", "in0", "type", "veth", "peer", "name", "eth0", "netns", l.client},
		{"-n", l.relay, "link", "add", "out0", "type", "veth", "peer", "name", "eth0", "netns", l.target},
		{"-n", l.client, "addr", "add", kernelClientAddr + "/24", "dev", "eth0"},
		{"-n", l.relay, "addr", "add", kernelRelayIn + "/24", "dev", "in0"},
		{"-n", l.relay, "addr", "add", kernelRelayOut + "/24", "dev", "out0"},
		{"-n", l.target, "addr", "add", kernelTargetAddr + "/24", "dev", "eth0"},
	}
	for _, ns := range []string{l.client, l.relay, l.target} {
		steps = append(steps, []string{"-n", ns, "link", "set", "lo", "up"})
	}
	steps = append(steps,
		[]string{"-n", l.client, "link", "set", "eth0", "up"},
		[]string{"-n", l.relay, "link", "set", "in0", "up"},
		[]string{"-n", l.relay, "link", "set", "out0", "up"},
		[]string{"-n", l.target, "link", "set", "eth0", "up"},
		[]string{"-n", l.client, "route", "add", "default", "via", kernelRelayIn},
		[]string{"-n", l.target, "route", "add", "default", "via", kernelRelayOut},
	)
	for _, s := range steps {
		if err := l.run(ctx, s...); err != nil {
			return err
		}
	}
	return natlab.InNamespace(l.relay, func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1\n"), 0o644)
	})
}

// start runs name in namespace ns until the lab closes.
func (l *kernelLab) start(ns, name string, args ...string) (*tail, error) {
	cmd := exec.Command(l.ip, append([]string{"netns", "exec", ns, name}, args...)...)
	dieWithParent(cmd)
	out := &tail{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: starting %s: %w", name, err)
	}
	l.procs = append(l.procs, cmd)
	return out, nil
}

// close ends what the lab started (SIGTERM first, so that pinhole forward
// --kernel removes its table) and deletes the namespaces.
func (l *kernelLab) close() {
	for i := len(l.procs) - 1; i >= 0; i-- {
		p := l.procs[i]
		p.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			p.Process.Kill()
			<-done
		}
	}
	for _, ns := range []string{l.client, l.relay, l.target} {
		exec.Command(l.ip, "netns", "delete", ns).Run()
	}
}

// RunKernel measures single-stream throughput through the -kernel lab for
// direct, pinhole forward --kernel and pinhole forward, and returns the
// table in markdown.
func RunKernel(ctx context.Context, cfg Config) (string, error) {
	cfg = cfg.withDefaults()
	if os.Geteuid() != 0 {
		return "", errors.New("bench: -kernel needs root (network namespaces, nftables); the loopback table's forward row is pinhole forward without root")
	}
	ip, err := natlab.LookPath("ip")
	if err != nil {
		return "", errors.New("bench: -kernel needs ip (Debian: apt-get install iproute2)")
	}
	for _, p := range []string{"iperf3", "nft"} {
		if _, err := natlab.LookPath(p); err != nil {
			return "", fmt.Errorf("bench: %s is not installed (Debian: apt-get install iperf3 nftables)", p)
		}
	}
	pinhole, _, remove, err := tempPinhole(ctx, cfg, "pinhole-bench-kernel-")
	if err != nil {
		return "", err
	}
	defer remove()
	natlab.DeleteStale(ip, kernelPrefix)
	base := fmt.Sprintf("%s%d-", kernelPrefix, os.Getpid())
	l := &kernelLab{ip: ip, client: base + "cli", relay: base + "rly", target: base + "tgt"}
	defer l.close()
	if err := l.build(ctx); err != nil {
		return "", err
	}
	iperfLog, err := l.start(l.target, "iperf3", "-s", "-p", strconv.Itoa(kernelIperf), "--forceflush")
	if err != nil {
		return "", err
	}
	target := fmt.Sprintf("tcp://%s:%d", kernelTargetAddr, kernelIperf)
	kernLog, err := l.start(l.relay, pinhole, "forward", "--kernel", fmt.Sprintf("tcp://%s:%d", kernelRelayIn, kernelDNATPort), target)
	if err != nil {
		return "", err
	}
	userLog, err := l.start(l.relay, pinhole, "forward", fmt.Sprintf("tcp://%s:%d", kernelRelayIn, kernelUserPort), target)
	if err != nil {
		return "", err
	}
	for _, w := range []struct {
		log  *tail
		line string
	}{{iperfLog, "Server listening on"}, {kernLog, "removed on exit"}, {userLog, "pinhole forward: tcp://"}} {
		if err := waitOutput(ctx, w.log, w.line); err != nil {
			return "", err
		}
	}

	setups := []struct {
		name, title, addr string
		port              int
	}{
		{"direct", "direct (routed, no forwarder)", kernelTargetAddr, kernelIperf},
		{"kernel", "pinhole forward --kernel (nftables DNAT)", kernelRelayIn, kernelDNATPort},
		{"forward", "pinhole forward (user space, splice)", kernelRelayIn, kernelUserPort},
	}
	got := map[string][]float64{}
	var errs []string
	for round := range cfg.Rounds {
		for _, s := range setups {
			gbps, err := kernelIperf3(ctx, l, s.addr, s.port, cfg.Duration)
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s round %d: %v", s.name, round+1, err))
				continue
			}
			got[s.name] = append(got[s.name], gbps)
			fmt.Fprintf(cfg.Progress, "kernel round %d: %s: tput1 %.2f Gbit/s\n", round+1, s.name, gbps)
		}
	}

	var b strings.Builder
	fmt.Fprintf(&b, "pinhole-bench -kernel: client → relay → target in three network namespaces joined by veth pairs; iperf3, one TCP stream, %d rounds of %v, medians.\n\n", cfg.Rounds, cfg.Duration)
	fmt.Fprintf(&b, "Command: `%s`\n\n", cfg.Command)
	b.WriteString("| setup | single-stream throughput, Gbit/s | to direct | each round |\n| --- | --- | --- | --- |\n")
	direct := got["direct"]
	for _, s := range setups {
		xs := got[s.name]
		if len(xs) == 0 {
			fmt.Fprintf(&b, "| %s | failed | | |\n", s.title)
			continue
		}
		r := ""
		if len(direct) > 0 {
			if v, ok := ratio(median(xs), median(direct)); ok {
				r = fmt.Sprintf("%.2f×", v)
			}
		}
		fmt.Fprintf(&b, "| %s | %.2f | %s | %v |\n", s.title, median(xs), r, roundAll(xs))
	}
	for _, e := range errs {
		fmt.Fprintf(&b, "\n- %s", oneLine(e))
	}
	b.WriteString("\n")
	return b.String(), nil
}

// kernelIperf3 runs iperf3 -c in the client namespace to addr:port, one
// stream, for d, and returns Gbit/s.
func kernelIperf3(ctx context.Context, l *kernelLab, addr string, port int, d time.Duration) (float64, error) {
	bps, err := iperf3Client(ctx, addr, port, d, func(ctx context.Context, args ...string) *exec.Cmd {
		return exec.CommandContext(ctx, l.ip, append([]string{"netns", "exec", l.client, "iperf3"}, args...)...)
	})
	return bps / 1e9, err
}

// tempPinhole makes a temporary folder whose name starts with prefix, and
// returns it with the pinhole binary to run: cfg.Pinhole, or one built
// there. remove deletes the folder.
func tempPinhole(ctx context.Context, cfg Config, prefix string) (pinhole, dir string, remove func(), err error) {
	dir, err = os.MkdirTemp("", prefix)
	if err != nil {
		return "", "", nil, fmt.Errorf("bench: %w", err)
	}
	remove = func() { os.RemoveAll(dir) }
	pinhole = cfg.Pinhole
	if pinhole == "" {
		if pinhole, err = buildPinhole(ctx, dir); err != nil {
			remove()
			return "", "", nil, err
		}
	}
	return pinhole, dir, remove, nil
}
