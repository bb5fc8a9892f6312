package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pinhole-dev/pinhole/internal/dnat"
	"github.com/pinhole-dev/pinhole/internal/proxyproto"
	"github.com/pinhole-dev/pinhole/internal/relay"
	"github.com/pinhole-dev/pinhole/internal/spec"
)

// forwardKernel reports whether pinhole forward's args ask for --kernel:
// then SIGHUP is caught (command.reloads) and stops it as SIGTERM does,
// so that its nftables rules never outlive it.
func forwardKernel(args []string) bool {
	for _, a := range args {
		if a == "-kernel" || a == "--kernel" || strings.HasPrefix(a, "-kernel=") || strings.HasPrefix(a, "--kernel=") {
			return true
		}
	}
	return false
}

// runForward is "pinhole forward": a relay on this machine, no tunnel,
// each LISTEN TARGET pair relayed in user space (splice for TCP) or, with
// --kernel, by nftables rules.
func runForward(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("pinhole forward", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	logFlags(fs, e)
	var (
		kernel  = fs.Bool("kernel", false, "install nftables DNAT and masquerade rules instead of copying in user space (needs root; the rules go when pinhole exits)")
		drainD  = fs.Duration("drain", 10*time.Second, "on the first SIGINT or SIGTERM, stop accepting and let open connections finish for this long (a second signal stops at once)")
		udpIdle = fs.Duration("udp-idle", 60*time.Second, "end a UDP flow with no datagram either way for this long")
		dialT   = fs.Duration("connect-timeout", 10*time.Second, "give up connecting to a TCP target after this long")
		ppV     = fs.String("proxy-protocol", "", "`v1 or v2`: start each TCP connection to its target with a PROXY protocol header (HAProxy's) naming the client, so the target sees its address")
	)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `usage: pinhole forward [flags] LISTEN TARGET [LISTEN TARGET ...]

Relays each LISTEN address to its TARGET on this machine, with no tunnel:
socat's job, or a router's DNAT with --kernel. LISTEN is tcp://[bind]:port
or udp://[bind]:port (no bind: every address; port 0: any free one), TARGET
tcp://host:port or udp://host:port of the same protocol.

  pinhole forward tcp://:8080 tcp://10.0.0.5:80 udp://:5353 udp://10.0.0.5:53

`)
		fs.PrintDefaults()
	}
	pos, err := e.parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	pairs, err := forwardPairs(pos)
	if err != nil {
		fmt.Fprintf(e.stderr, "pinhole forward: %v\nrun 'pinhole forward -h' for the usage\n", err)
		return errUsage
	}
	var header func(net.Conn) ([]byte, error)
	if *ppV != "" {
		v, err := proxyproto.ParseVersion(*ppV)
		if err != nil {
			fmt.Fprintf(e.stderr, "pinhole forward: --proxy-protocol: %v\n", err)
			return errUsage
		}
		if *kernel {
			fmt.Fprintln(e.stderr, "pinhole forward: --proxy-protocol needs the user-space relay: with --kernel, pinhole never sees the streams (leave out one of them)")
			return errUsage
		}
		header = func(c net.Conn) ([]byte, error) {
			return proxyproto.Header(v, proxyproto.AddrPort(c.RemoteAddr()), proxyproto.AddrPort(c.LocalAddr())), nil
		}
	}
	if *kernel {
		return forwardInKernel(ctx, e, pairs)
	}
	return forwardInUserSpace(ctx, e, pairs, *drainD, *udpIdle, *dialT, header)
}

// forwardPairs parses the positional arguments as LISTEN TARGET pairs.
func forwardPairs(pos []string) ([]spec.Pair, error) {
	if len(pos) == 0 {
		return nil, errors.New("give at least one LISTEN TARGET pair, e.g. tcp://:8080 tcp://10.0.0.5:80")
	}
	if len(pos)%2 != 0 {
		return nil, fmt.Errorf("%q has no TARGET: give LISTEN TARGET pairs, e.g. tcp://:8080 tcp://10.0.0.5:80", pos[len(pos)-1])
	}
	var pairs []spec.Pair
	for i := 0; i < len(pos); i += 2 {
		p, err := spec.ParsePair(pos[i], pos[i+1])
		if err != nil {
			return nil, err
		}
		pairs = append(pairs, p)
	}
	return pairs, nil
}

// forwardInUserSpace opens every listener first, so that a port already
// taken stops the start before anything is relayed, then serves them all
// until ctx ends, and drains.
func forwardInUserSpace(ctx context.Context, e *env, pairs []spec.Pair, drain, udpIdle, dialTimeout time.Duration, header func(net.Conn) ([]byte, error)) error {
	type served struct {
		pair spec.Pair
		tcp  *relay.TCPForwarder
		ln   net.Listener
		udp  *net.UDPConn
	}
	var all []served
	closeAll := func() {
		for _, s := range all {
			if s.ln != nil {
				s.ln.Close()
			}
			if s.udp != nil {
				s.udp.Close()
			}
		}
	}
	for _, p := range pairs {
		s := served{pair: p}
		var err error
		if p.Listen.Proto == spec.UDP {
			var addr *net.UDPAddr
			if addr, err = net.ResolveUDPAddr("udp", p.Listen.Addr()); err == nil {
				s.udp, err = net.ListenUDP("udp", addr)
			}
		} else {
			s.ln, err = net.Listen("tcp", p.Listen.Addr())
		}
		if err != nil {
			closeAll()
			return fmt.Errorf("%s: %w (is another program using that port? pick another LISTEN address)", p.Listen, err)
		}
		all = append(all, s)
	}

	uctx, stopUDP := context.WithCancel(context.Background())
	defer stopUDP()
	var wg sync.WaitGroup
	errc := make(chan error, len(all))
	for i := range all {
		s := &all[i]
		target := s.pair.Target.Addr()
		if s.udp != nil {
			fmt.Fprintf(e.stdout, "pinhole forward: %s → %s\n", "udp://"+s.udp.LocalAddr().String(), s.pair.Target)
			f := &relay.UDPForwarder{
				IdleTimeout: udpIdle,
				Logger:      e.log,
				Dial: func(ctx context.Context, _ netip.AddrPort) (net.Conn, error) {
					var d net.Dialer
					return d.DialContext(ctx, "udp", target)
				},
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := f.Serve(uctx, s.udp); err != nil {
					errc <- fmt.Errorf("%s: %w", s.pair.Listen, err)
				}
			}()
			continue
		}
		fmt.Fprintf(e.stdout, "pinhole forward: %s → %s\n", "tcp://"+s.ln.Addr().String(), s.pair.Target)
		s.tcp = &relay.TCPForwarder{Target: target, DialTimeout: dialTimeout, Header: header, Logger: e.log}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.tcp.Serve(s.ln); err != nil && !errors.Is(err, net.ErrClosed) {
				errc <- fmt.Errorf("%s: %w", s.pair.Listen, err)
			}
		}()
	}

	var failed error
	select {
	case <-ctx.Done():
	case <-e.reload: // SIGHUP, caught only with --kernel; nil here
	case failed = <-errc:
	}
	stopUDP() // a datagram relay has nothing to drain
	dctx, cancel := context.WithTimeout(e.force, drain)
	defer cancel()
	var cut bool
	for _, s := range all {
		if s.tcp != nil && s.tcp.Shutdown(dctx) != nil {
			cut = true
		}
	}
	wg.Wait()
	switch {
	case failed != nil:
		return failed
	case cut:
		return errors.New("stopped before open connections finished, they were cut")
	}
	return nil
}

// forwardInKernel installs the pairs as nftables rules in a table of this
// process's own, waits until ctx ends (or SIGHUP), and removes the table.
func forwardInKernel(ctx context.Context, e *env, pairs []spec.Pair) error {
	if os.Geteuid() != 0 {
		return errors.New("--kernel installs nftables rules, which needs root: run it as root (sudo), or leave out --kernel to relay in user space")
	}
	nft, err := exec.LookPath("nft")
	if err != nil {
		return errors.New("--kernel needs the nft program: install nftables (Debian: apt-get install nftables), or leave out --kernel")
	}
	var rules []dnat.Rule
	for _, p := range pairs {
		r, err := kernelRule(ctx, p)
		if err != nil {
			return err
		}
		rules = append(rules, r)
	}
	name := fmt.Sprintf("pinhole-forward-%d", os.Getpid())
	ictx, cancel := context.WithTimeout(ctx, 15*time.Second)
	table, err := dnat.Install(ictx, nft, name, rules)
	cancel()
	if err != nil {
		return err
	}
	for i, r := range rules {
		fmt.Fprintf(e.stdout, "pinhole forward: %s → %s in the kernel\n", pairs[i].Listen, r.Target)
	}
	fmt.Fprintf(e.stdout, "pinhole forward: nftables table inet %s; removed on exit\n", name)
	warnStaleTables(ctx, e, nft)
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_forward"); err == nil && strings.TrimSpace(string(b)) == "0" {
		e.log.Warn("net.ipv4.ip_forward is 0: connections from other hosts are not passed on to the targets; turn it on with sysctl -w net.ipv4.ip_forward=1")
	}
	select {
	case <-ctx.Done():
	case <-e.reload:
	}
	rctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := table.Remove(rctx); err != nil {
		return fmt.Errorf("%w; remove the rules by hand: nft delete table inet %s", err, name)
	}
	return nil
}

// kernelRule turns p into a rule: the listening host must be an IP
// address (or none), the target's name is looked up once, now.
func kernelRule(ctx context.Context, p spec.Pair) (dnat.Rule, error) {
	r := dnat.Rule{Proto: p.Listen.Proto}
	var bind netip.Addr
	if p.Listen.Host != "" {
		a, err := netip.ParseAddr(p.Listen.Host)
		if err != nil {
			return r, fmt.Errorf("%s: --kernel matches an IP address, not a name; give the address, or none for every address", p.Listen)
		}
		bind = a
	}
	r.Listen = netip.AddrPortFrom(bind, p.Listen.Port)
	ip, err := netip.ParseAddr(p.Target.Host)
	if err != nil {
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		ips, lerr := net.DefaultResolver.LookupNetIP(lctx, "ip", p.Target.Host)
		cancel()
		if lerr != nil || len(ips) == 0 {
			return r, fmt.Errorf("%s: looking up %s: %v; give an IP address", p.Target, p.Target.Host, lerr)
		}
		ip = ips[0]
		for _, a := range ips { // the listening address's family, else IPv4
			if a.Unmap().Is4() == (!bind.IsValid() || bind.Unmap().Is4()) {
				ip = a
				break
			}
		}
	}
	r.Target = netip.AddrPortFrom(ip.Unmap(), p.Target.Port)
	return r, nil
}

// warnStaleTables names the tables that pinhole forward --kernel processes
// no longer running left behind (killed with SIGKILL, or the machine's
// power cut), with the command that removes each. It removes none itself:
// a process of another PID namespace sharing this network namespace could
// still own one.
func warnStaleTables(ctx context.Context, e *env, nft string) {
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	names, err := dnat.Tables(lctx, nft, "pinhole-forward-")
	if err != nil {
		return
	}
	for _, n := range names {
		pid, err := strconv.Atoi(strings.TrimPrefix(n, "pinhole-forward-"))
		if err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); errors.Is(err, os.ErrNotExist) {
			e.log.Warn("an nftables table of a pinhole forward --kernel that is no longer running is still installed; remove it with nft delete table inet "+n, "table", n)
		}
	}
}
