package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/pinhole-dev/pinhole/internal/portmap"
)

// mapFlags are the flags of pinhole map that say how to reach the router;
// pinhole server --map has none of them and uses the defaults.
type mapFlags struct {
	prefix  string // of the flags' names
	gateway string
	ssdp    string
	via     string
}

// register adds the flags to fs, each name after prefix ("" for pinhole
// map, "map-" for pinhole server).
func (f *mapFlags) register(fs *flag.FlagSet, prefix string) {
	f.prefix = prefix
	fs.StringVar(&f.gateway, prefix+"gateway", "", "the router's `address` (default: the default gateway of the routing table); ADDR:PORT also sets the PCP / NAT-PMP port (5351)")
	fs.StringVar(&f.ssdp, prefix+"ssdp", "", "where to send the UPnP search (default 239.255.255.250:1900, from the interface towards the gateway); a unicast `ADDR:PORT` asks that one device")
	fs.StringVar(&f.via, prefix+"via", "auto", "the protocol: auto (all at once, the first that works), pcp, natpmp or upnp")
}

// config turns the flags into a portmap.Config.
func (f *mapFlags) config(e *env) (portmap.Config, error) {
	cfg := portmap.Config{Logger: e.log}
	if f.gateway != "" {
		if ap, err := netip.ParseAddrPort(f.gateway); err == nil {
			cfg.Gateway, cfg.PMPPort = ap.Addr(), ap.Port()
		} else if a, err := netip.ParseAddr(f.gateway); err == nil {
			cfg.Gateway = a
		} else {
			return cfg, fmt.Errorf("--%sgateway %q: want an IPv4 address such as 192.168.1.1 (or ADDR:PORT)", f.prefix, f.gateway)
		}
	}
	if f.ssdp != "" {
		ap, err := netip.ParseAddrPort(f.ssdp)
		if err != nil {
			return cfg, fmt.Errorf("--%sssdp %q: want ADDR:PORT such as 239.255.255.250:1900", f.prefix, f.ssdp)
		}
		cfg.SSDPAddr = ap
	}
	methods, err := portmap.ParseMethod(f.via)
	if err != nil {
		return cfg, fmt.Errorf("--%svia: %w", f.prefix, err)
	}
	cfg.Methods = methods
	return cfg, nil
}

// runMap is "pinhole map": open a port on the home router and hold it.
func runMap(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("pinhole map", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	logFlags(fs, e)
	var (
		mf       mapFlags
		proto    = fs.String("proto", "tcp", "tcp or udp")
		external = fs.Uint("external", 0, "the `port` wanted on the router's public address (default: the internal port if free, else any)")
		lifetime = fs.Duration("lifetime", portmap.DefaultLifetime, "the lease to ask for; renewed at half of what the router grants")
		probe    = fs.Bool("probe", false, "say which protocols the router answers and its public address, then exit")
		list     = fs.Bool("list", false, "list the router's mappings (UPnP only), then exit")
		del      = fs.Bool("delete", false, "remove a mapping left behind (by a killed process), then exit")
	)
	mf.register(fs, "")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `usage: pinhole map [flags] INTERNAL_PORT[/tcp|/udp]
       pinhole map --probe | --list [--gateway ADDR]
       pinhole map --delete [--proto tcp|udp] [--via ...] [--external PORT] INTERNAL_PORT

Opens INTERNAL_PORT of this machine on the home router (PCP, NAT-PMP or UPnP
IGD), prints the public ADDRESS:PORT on stdout, renews the lease until
stopped (SIGINT, SIGTERM), then removes the mapping.

`)
		fs.PrintDefaults()
	}
	pos, err := e.parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	modes := 0
	for _, b := range []bool{*probe, *list, *del} {
		if b {
			modes++
		}
	}
	if modes > 1 {
		fmt.Fprintf(e.stderr, "pinhole map: --probe, --list and --delete exclude each other\n")
		return errUsage
	}
	cfg, err := mf.config(e)
	if err != nil {
		return err
	}
	if *probe || *list {
		if len(pos) > 0 {
			fmt.Fprintf(e.stderr, "pinhole map: unexpected argument %q\n", pos[0])
			return errUsage
		}
		c := portmap.New(cfg)
		if *probe {
			return mapProbe(ctx, e, c)
		}
		return mapList(ctx, e, c)
	}
	if len(pos) != 1 {
		fmt.Fprintf(e.stderr, "pinhole map: give one INTERNAL_PORT (the port the service listens on here)\n")
		fs.Usage()
		return errUsage
	}
	protoSet := false
	fs.Visit(func(f *flag.Flag) { protoSet = protoSet || f.Name == "proto" })
	req, err := parseMapRequest(pos[0], *proto, protoSet, *external, *lifetime)
	if err != nil {
		return err
	}
	c := portmap.New(cfg)
	if *del {
		return mapDelete(ctx, e, c, req)
	}
	m, err := c.Map(ctx, req)
	if err != nil {
		return mapError(err, req)
	}
	fmt.Fprintln(e.stdout, m.External())
	// Another line only if the router's address or the port changes (a
	// new public address, a router that lost the mapping and gave
	// another port).
	changed := func(m portmap.Mapping) { fmt.Fprintln(e.stdout, m.External()) }
	if err := c.Keep(ctx, m, changed); err != nil {
		return fmt.Errorf("%w; if it stays, remove it with: pinhole map --delete --proto %s --external %d %d", err, req.Proto, m.External().Port(), req.InternalPort)
	}
	return nil
}

// parseMapRequest reads INTERNAL_PORT[/tcp|/udp] and the flags about it.
func parseMapRequest(arg, proto string, protoSet bool, external uint, lifetime time.Duration) (portmap.Request, error) {
	var req portmap.Request
	port, suffix, hasSuffix := strings.Cut(arg, "/")
	p, err := portmap.ParseProto(proto)
	if err != nil {
		return req, fmt.Errorf("--proto %q: use tcp or udp", proto)
	}
	if hasSuffix {
		sp, err := portmap.ParseProto(suffix)
		if err != nil {
			return req, fmt.Errorf("%q: the protocol after / must be tcp or udp", arg)
		}
		if protoSet && sp != p {
			return req, fmt.Errorf("%q and --proto %s disagree: give the protocol once", arg, proto)
		}
		p = sp
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return req, fmt.Errorf("internal port %q: want a number from 1 to 65535", port)
	}
	if external > 65535 {
		return req, fmt.Errorf("--external %d: want a port from 1 to 65535", external)
	}
	if lifetime <= 0 {
		return req, fmt.Errorf("--lifetime %v: want a positive duration such as 2h", lifetime)
	}
	return portmap.Request{Proto: p, InternalPort: uint16(n), ExternalPort: uint16(external), Lifetime: lifetime}, nil
}

// mapError adds what to do on the command line to the library's error.
func mapError(err error, req portmap.Request) error {
	switch {
	case errors.Is(err, portmap.ErrConflict) && req.ExternalPort != 0:
		return fmt.Errorf("%w (pick another --external port, or leave --external out to take any)", err)
	case errors.Is(err, portmap.ErrNoResources):
		return fmt.Errorf("%w (see them with pinhole map --list)", err)
	}
	return err
}

// mapProbe prints one line per protocol; it fails if none answered.
func mapProbe(ctx context.Context, e *env, c *portmap.Client) error {
	res, err := c.Probe(ctx)
	if err != nil {
		return err
	}
	ok := false
	for _, r := range res {
		switch {
		case r.Err == nil && r.External.IsValid():
			ok = true
			fmt.Fprintf(e.stdout, "%s: ok, external %s\n", r.Method, r.External)
		case r.Err == nil:
			ok = true
			fmt.Fprintf(e.stdout, "%s: ok\n", r.Method)
		default:
			fmt.Fprintf(e.stdout, "%s: %s\n", r.Method, strings.TrimPrefix(r.Err.Error(), "portmap: "))
		}
	}
	if !ok {
		return errors.New("the router answered no port mapping protocol; turn on UPnP or NAT-PMP in its settings, or give its address with --gateway")
	}
	return nil
}

// mapList prints the router's mappings as a table.
func mapList(ctx context.Context, e *env, c *portmap.Client) error {
	entries, err := c.List(ctx)
	if err != nil {
		return err
	}
	if len(entries) == 0 {
		fmt.Fprintln(e.stdout, "the router lists no mappings")
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PROTO\tEXTERNAL\tINTERNAL\tLEASE\tENABLED\tDESCRIPTION")
	for _, en := range entries {
		lease := "permanent"
		if en.Lease > 0 {
			lease = en.Lease.String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%v\t%s\n", en.Proto, en.External, en.Internal, lease, en.Enabled, en.Description)
	}
	return tw.Flush()
}

// mapDelete removes a mapping left behind.
func mapDelete(ctx context.Context, e *env, c *portmap.Client, req portmap.Request) error {
	method, err := c.Delete(ctx, req)
	if err != nil {
		return err
	}
	ext := req.ExternalPort
	if ext == 0 {
		ext = req.InternalPort
	}
	fmt.Fprintf(e.stdout, "removed %s external port %d (to internal port %d) with %s\n", req.Proto, ext, req.InternalPort, method)
	return nil
}

// serverMap opens a pinhole server's listening port on the router in the
// background, prints where the server is reachable, and holds the
// mapping. A failure is a warning: the server runs on without it. The
// returned stop removes the mapping and waits for that.
func serverMap(ctx context.Context, e *env, addr net.Addr, cfg portmap.Config) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		ta, ok := addr.(*net.TCPAddr)
		if !ok {
			return
		}
		if ta.IP.IsLoopback() && !cfg.Gateway.IsLoopback() { // a router on loopback is a test's
			fmt.Fprintf(e.stderr, "warning: --map: the server listens on %s only, which the router cannot reach; listen on all addresses (--listen :%d) to map it\n", ta.IP, ta.Port)
			return
		}
		c := portmap.New(cfg)
		m, err := c.Map(ctx, portmap.Request{Proto: portmap.TCP, InternalPort: uint16(ta.Port)})
		if err != nil {
			if ctx.Err() == nil {
				fmt.Fprintf(e.stderr, "warning: --map: %v\nwarning: the server runs on, reachable only where it was before\n", err)
			}
			return
		}
		reachable := func(m portmap.Mapping) {
			ext := m.External()
			fmt.Fprintf(e.stdout, "pinhole server: reachable from the internet at %s\n", ext)
			fmt.Fprintf(e.stdout, "pinhole server: from anywhere, expose a local port 3000 here as port 8080 with:\n")
			fmt.Fprintf(e.stdout, "  %s\n", sshExample(int(ext.Port()), ext.Addr().String()))
		}
		reachable(m)
		if err := c.Keep(ctx, m, reachable); err != nil {
			fmt.Fprintf(e.stderr, "warning: --map: %v\n", err)
		}
	}()
	return func() {
		cancel()
		<-done
	}
}
