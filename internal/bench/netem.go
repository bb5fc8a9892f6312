package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pinhole-dev/pinhole/internal/faultlab"
	"github.com/pinhole-dev/pinhole/internal/natlab"
	"github.com/pinhole-dev/pinhole/internal/ssh/knownhosts"
	"github.com/pinhole-dev/pinhole/internal/sshtest"
)

// The -netem mode: OpenSSH (ssh -N -L → sshd) and pinhole (pinhole connect
// -L → pinhole server) side by side through faultlab's delay line, with
// netemDelay each way and netemLoss, in one run. The servers, iperf3 -s and
// a TCP echo server are in the lab's server namespace; the forwarders'
// client ends and the measuring clients in its client namespace. Each
// setup's processes live for the whole run; the rounds alternate between
// the setups, so that both see the same minutes.
const (
	netemDelay = 25 * time.Millisecond
	netemLoss  = 1.0 // percent
)

// netem ports, in the lab's own namespaces.
const (
	netemIperf    = 5201 // server namespace, 127.0.0.1
	netemEcho     = 7000 // server namespace, 127.0.0.1
	netemSSHD     = 22   // server namespace, faultlab.ServerAddr
	netemPinholeD = 2222 // server namespace, faultlab.ServerAddr
)

type netemSetup struct {
	name        string
	title       string
	iperf, echo int // in the client namespace, 127.0.0.1
}

// RunNetem measures single-stream throughput and 64-byte request/response
// through the lab for each setup, and returns the table in markdown.
func RunNetem(ctx context.Context, cfg Config) (string, error) {
	cfg = cfg.withDefaults()
	if os.Geteuid() != 0 {
		return "", errors.New("bench: -netem needs root (network namespaces, TUN devices)")
	}
	for _, p := range []string{"iperf3", sshtest.SSHPath, sshtest.SSHDPath} {
		if _, err := exec.LookPath(p); err != nil {
			return "", fmt.Errorf("bench: %s is not installed (Debian: apt-get install iperf3 openssh-client openssh-server nftables)", p)
		}
	}
	pinhole, dir, remove, err := tempPinhole(ctx, cfg, "pinhole-bench-netem-")
	if err != nil {
		return "", err
	}
	defer remove()
	lab, err := faultlab.Build(ctx)
	if lab != nil {
		defer lab.Close()
	}
	if err != nil {
		return "", err
	}
	var procs []*exec.Cmd // stopped last first: clients before servers
	defer func() {
		for i := len(procs) - 1; i >= 0; i-- {
			procs[i].Process.Kill()
			procs[i].Wait()
		}
	}()
	start := func(ns, name string, args ...string) (*tail, error) {
		cmd := lab.Command(context.Background(), ns, name, args...)
		out := &tail{}
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			return nil, fmt.Errorf("bench: starting %s: %w", name, err)
		}
		procs = append(procs, cmd)
		return out, nil
	}

	// The server side.
	if _, err := start(lab.Server, "iperf3", "-s", "-B", "127.0.0.1", "-p", strconv.Itoa(netemIperf)); err != nil {
		return "", err
	}
	ln, err := natlab.Listen(lab.Server, "tcp4", loopback(netemEcho))
	if err != nil {
		return "", fmt.Errorf("bench: %w", err)
	}
	echo := newTCPEcho(ln)
	defer echo.Close()
	key, err := sshtest.WriteKey(dir, "client")
	if err != nil {
		return "", err
	}
	// sshtest writes and checks the throwaway sshd's config on loopback;
	// it runs again from that config in the server namespace.
	sshdDir := filepath.Join(dir, "sshd")
	if err := os.Mkdir(sshdDir, 0o700); err != nil {
		return "", fmt.Errorf("bench: %w", err)
	}
	sshd, err := sshtest.LaunchSSHD(sshdDir, sshtest.SSHDConfig{AuthorizedKeys: key.AuthorizedLine, Extra: []string{"LogLevel INFO"}, RandomPort: lowPort})
	if err != nil {
		return "", err
	}
	sshd.Stop()
	sshdAddr := netip.AddrPortFrom(faultlab.ServerAddr, netemSSHD).String()
	sshdLog, err := start(lab.Server, sshtest.SSHDPath, "-D", "-e", "-f", sshd.ConfigFile, "-o", "ListenAddress="+sshdAddr)
	if err != nil {
		return "", err
	}
	hostKey, err := sshtest.WriteKey(dir, "pinhole_host_key")
	if err != nil {
		return "", err
	}
	authorized := filepath.Join(dir, "pinhole_authorized_keys")
	if err := os.WriteFile(authorized, []byte(key.AuthorizedLine), 0o600); err != nil {
		return "", fmt.Errorf("bench: %w", err)
	}
	pinholeAddr := netip.AddrPortFrom(faultlab.ServerAddr, netemPinholeD).String()
	pinholeLog, err := start(lab.Server, pinhole, "server", "--listen", pinholeAddr,
		"--host-key", hostKey.PrivateFile, "--authorized-keys", authorized)
	if err != nil {
		return "", err
	}

	for _, w := range []struct {
		log  *tail
		line string
	}{{sshdLog, "Server listening on"}, {pinholeLog, "pinhole server: listening on"}} {
		if err := waitOutput(ctx, w.log, w.line); err != nil {
			return "", err
		}
	}

	// The client side.
	forwards := func(iperf, echo int) []string {
		return []string{"-L", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:%d", iperf, netemIperf),
			"-L", fmt.Sprintf("127.0.0.1:%d:127.0.0.1:%d", echo, netemEcho)}
	}
	setups := []netemSetup{
		{name: baseline, title: "OpenSSH ssh → OpenSSH sshd", iperf: 8101, echo: 8102},
		{name: "pinhole", title: "pinhole connect → pinhole server", iperf: 8201, echo: 8202},
	}
	sshKnown := filepath.Join(dir, "ssh_known_hosts")
	if err := os.WriteFile(sshKnown, []byte(knownhosts.Line([]string{sshdAddr}, sshd.HostKey.Public)+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("bench: %w", err)
	}
	sshArgs, err := sshtest.SSHOptions{Addr: sshdAddr, User: sshd.User, Key: key, Args: forwards(setups[0].iperf, setups[0].echo)}.CommandArgs(sshKnown)
	if err != nil {
		return "", err
	}
	sshLog, err := start(lab.Client, sshtest.SSHPath, sshArgs...)
	if err != nil {
		return "", err
	}
	pinholeKnown := filepath.Join(dir, "pinhole_known_hosts")
	if err := os.WriteFile(pinholeKnown, []byte(knownhosts.Line([]string{pinholeAddr}, hostKey.Public)+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("bench: %w", err)
	}
	connectLog, err := start(lab.Client, pinhole, append([]string{"connect", "-p", strconv.Itoa(netemPinholeD), "-l", "bench",
		"-i", key.PrivateFile, "--known-hosts", pinholeKnown, "--host-key-check", "yes"},
		append(forwards(setups[1].iperf, setups[1].echo), faultlab.ServerAddr.String())...)...)
	if err != nil {
		return "", err
	}
	logs := map[string][]*tail{baseline: {sshLog, sshdLog}, "pinhole": {connectLog, pinholeLog}}
	for _, s := range setups {
		if err := netemReady(ctx, lab, s.echo); err != nil {
			var b strings.Builder
			for _, l := range logs[s.name] {
				b.WriteString(l.String())
			}
			return "", fmt.Errorf("bench: %s did not start forwarding: %w\n%s", s.name, err, b.String())
		}
	}

	// Only now the path gets its delay and loss: setting up was not
	// what is measured.
	lab.Impair(faultlab.Impairment{Delay: netemDelay, Loss: netemLoss})
	type figures struct{ tput, p50, p99 []float64 }
	got := map[string]*figures{}
	var errs []string
	for round := range cfg.Rounds {
		for _, s := range setups {
			f := got[s.name]
			if f == nil {
				f = &figures{}
				got[s.name] = f
			}
			mbps, err := netemIperf3(ctx, lab, s.iperf, cfg.Duration)
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s tput1 round %d: %v", s.name, round+1, err))
			} else {
				f.tput = append(f.tput, mbps)
			}
			fmt.Fprintf(cfg.Progress, "netem round %d: %s: tput1 %.1f Mbit/s\n", round+1, s.name, mbps)
			p50, p99, err := netemRR(ctx, lab, s.echo, cfg.Duration)
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s rr round %d: %v", s.name, round+1, err))
			} else {
				f.p50, f.p99 = append(f.p50, p50), append(f.p99, p99)
			}
			fmt.Fprintf(cfg.Progress, "netem round %d: %s: rr p50 %.2f ms, p99 %.2f ms\n", round+1, s.name, p50, p99)
		}
	}
	passed, dropped := lab.Counts()

	var b strings.Builder
	fmt.Fprintf(&b, "pinhole-bench -netem: %v each way and %g %% loss (faultlab's delay line), %d rounds of %v, medians; the delay line passed %d packets and dropped %d.\n\n",
		netemDelay, netemLoss, cfg.Rounds, cfg.Duration, passed, dropped)
	fmt.Fprintf(&b, "Command: `%s`\n\n", cfg.Command)
	b.WriteString("| setup | single-stream throughput, Mbit/s | 64-byte request/response p50, ms | p99, ms |\n| --- | --- | --- | --- |\n")
	base := got[baseline]
	for _, s := range setups {
		f := got[s.name]
		cell := func(xs, bases []float64) string {
			if len(xs) == 0 {
				return "failed"
			}
			v := median(xs)
			out := fmt.Sprintf("%.2f", v)
			if s.name != baseline && len(bases) > 0 {
				if r, ok := ratio(v, median(bases)); ok {
					out += fmt.Sprintf(" (%.2f×)", r)
				}
			}
			return out
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", s.title, cell(f.tput, base.tput), cell(f.p50, base.p50), cell(f.p99, base.p99))
	}
	fmt.Fprintf(&b, "\nEach round's figures: %s\n", netemRounds(setups, func(n string) ([]float64, []float64) { return got[n].tput, got[n].p99 }))
	for _, e := range errs {
		fmt.Fprintf(&b, "\n- %s", oneLine(e))
	}
	b.WriteString("\n")
	return b.String(), nil
}

func netemRounds(setups []netemSetup, f func(string) (tput, p99 []float64)) string {
	var parts []string
	for _, s := range setups {
		t, p := f(s.name)
		parts = append(parts, fmt.Sprintf("%s tput1 %v Mbit/s, p99 %v ms", s.name, roundAll(t), roundAll(p)))
	}
	return strings.Join(parts, "; ")
}

func roundAll(xs []float64) []float64 {
	out := make([]float64, len(xs))
	for i, x := range xs {
		out[i] = float64(int(x*100+0.5)) / 100
	}
	return out
}

// netemReady waits until 127.0.0.1:port in the client namespace carries a
// round trip, for at most 30 s.
func netemReady(ctx context.Context, lab *faultlab.Lab, port int) error {
	var last error
	for range 150 {
		last = func() error {
			ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			c, err := natlab.Dial(ctx, lab.Client, "tcp4", loopback(port))
			if err != nil {
				return err
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(2 * time.Second))
			return echoOne(c, []byte{1})
		}()
		if last == nil || ctx.Err() != nil {
			return last
		}
		time.Sleep(200 * time.Millisecond)
	}
	return last
}

// netemIperf3 runs iperf3 -c in the client namespace through port, one
// stream, for d, and returns Mbit/s.
func netemIperf3(ctx context.Context, lab *faultlab.Lab, port int, d time.Duration) (float64, error) {
	bps, err := iperf3Client(ctx, "127.0.0.1", port, d, func(ctx context.Context, args ...string) *exec.Cmd {
		return lab.Command(ctx, lab.Client, "iperf3", args...)
	})
	return bps / 1e6, err
}

// iperf3Client runs iperf3 -c addr -p port, one stream, for d, through
// command (which makes the Cmd of iperf3 with those arguments, in some
// namespace), and returns bit/s.
func iperf3Client(ctx context.Context, addr string, port int, d time.Duration, command func(ctx context.Context, args ...string) *exec.Cmd) (float64, error) {
	secs := iperfSeconds(d)
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+30*time.Second)
	defer cancel()
	cmd := command(ctx, "-c", addr, "-p", strconv.Itoa(port), "-t", strconv.Itoa(secs), "-J", "--connect-timeout", "5000")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, runErr := cmd.Output()
	bps, err := parseIperf(out)
	if err != nil {
		if runErr != nil && len(out) == 0 {
			return 0, fmt.Errorf("iperf3: %v: %s", runErr, strings.TrimSpace(stderr.String()))
		}
		return 0, err
	}
	return bps, nil
}

// netemRR sends a 64-byte request through port in the client namespace
// and waits for its echo, one after the other, for d, and returns p50 and
// p99 in ms.
func netemRR(ctx context.Context, lab *faultlab.Lab, port int, d time.Duration) (p50, p99 float64, err error) {
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	c, err := natlab.Dial(ctx, lab.Client, "tcp4", loopback(port))
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	defer closeOnDone(ctx, c)()
	req, resp := make([]byte, requestSize), make([]byte, requestSize)
	roundTrip := func() (bool, error) {
		if _, err := c.Write(req); err != nil {
			return false, err
		}
		_, err := io.ReadFull(c, resp)
		return false, err
	}
	for range 5 {
		if _, err := roundTrip(); err != nil {
			return 0, 0, err
		}
	}
	rtts, _, _, err := timeRoundTrips(ctx, d, roundTrip)
	if err != nil {
		return 0, 0, err
	}
	if !slices.IsSorted(rtts) || len(rtts) == 0 {
		return 0, 0, errors.New("no round trips")
	}
	ms := func(x time.Duration) float64 { return float64(x) / float64(time.Millisecond) }
	return ms(percentile(rtts, 50)), ms(percentile(rtts, 99)), nil
}

// waitOutput waits up to 15 s for line to appear in what a server wrote.
func waitOutput(ctx context.Context, t *tail, line string) error {
	for range 150 {
		if strings.Contains(t.String(), line) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("bench: no %q from the server within 15 s; it wrote:\n%s", line, t.String())
}
