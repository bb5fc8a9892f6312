package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/pinhole-dev/pinhole/internal/ssh"

	"github.com/pinhole-dev/pinhole/internal/auth"
	"github.com/pinhole-dev/pinhole/internal/socks"
	"github.com/pinhole-dev/pinhole/internal/spec"
	"github.com/pinhole-dev/pinhole/internal/tunnel"
)

// forwardList is a repeatable -L, -R or -D flag.
type forwardList struct {
	kind spec.Kind
	list []spec.Forward
}

func (l *forwardList) String() string {
	s := make([]string, len(l.list))
	for i, f := range l.list {
		s[i] = f.String()
	}
	return strings.Join(s, ",")
}

func (l *forwardList) Set(v string) error {
	f, err := spec.Parse(l.kind, v)
	if err != nil {
		return err
	}
	l.list = append(l.list, f)
	return nil
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

func runConnect(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("pinhole connect", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	defer debugAddrFlag(fs, e)()
	var (
		local    = &forwardList{kind: spec.Local}
		remote   = &forwardList{kind: spec.Remote}
		dynamic  = &forwardList{kind: spec.Dynamic}
		idents   stringList
		port     = fs.Int("p", 22, "server port")
		login    = fs.String("l", "", "user to log in as (default: the user part of [user@]host, else your user name)")
		known    = fs.String("known-hosts", "", "known_hosts file (default ~/.ssh/known_hosts)")
		check    = fs.String("host-key-check", "accept-new", "yes: only known host keys; accept-new: remember a new host's key, refuse a changed one; no: accept any key (insecure)")
		_        = fs.Bool("N", false, "accepted for ssh compatibility: pinhole never runs a remote command")
		alive    = fs.Duration("keepalive", tunnel.DefaultKeepaliveInterval, "ask the server whether it is alive this often (ssh's ServerAliveInterval)")
		drainFor = fs.Duration("drain", 10*time.Second, "on the first SIGINT or SIGTERM, stop taking new connections and let open streams finish for this long (a second signal stops at once)")
		aliveMax = fs.Int("keepalive-count", 3, "reconnect after this many unanswered keepalives (ssh's ServerAliveCountMax)")
		pauth    = fs.String("proxy-auth", "", "user:pass that -D proxy clients must give (SOCKS5 and HTTP Basic)")
		pauthF   = fs.String("proxy-auth-file", "", "file of user:pass lines that -D proxy clients may give")
		open     = fs.Bool("allow-open-proxy", false, "allow a -D proxy on a non-loopback address without --proxy-auth")
		udpIdle  = fs.Duration("udp-idle", 60*time.Second, "end a UDP flow after this long without a datagram")
		udpFlows = fs.Int("udp-max-flows", 1024, "most UDP flows (source addresses) at once per /udp forward")
	)
	fs.Var(local, "L", "`[bind:]port:host:hostport` listen here, connect to host:hostport from the server (repeatable)")
	fs.Var(remote, "R", "`[bind:]port:host:hostport` listen on the server, connect to host:hostport from here (repeatable)")
	fs.Var(dynamic, "D", "`[bind:]port` SOCKS4/4a/5 and HTTP proxy here, connecting from the server (repeatable)")
	fs.Var(&idents, "i", "identity (private key) `file` (repeatable; default ~/.ssh/id_ed25519, id_ecdsa, id_rsa; ssh-agent is used when SSH_AUTH_SOCK is set)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: pinhole connect [flags] [user@]host\n\nForwards ports through an SSH server (pinhole server or any OpenSSH sshd), reconnecting when the connection drops.\n\n")
		fs.PrintDefaults()
	}
	pos, err := e.parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fmt.Fprintf(e.stderr, "pinhole connect: want one destination [user@]host, got %d arguments\n", len(pos))
		fs.Usage()
		return errUsage
	}
	userName, host := splitDestination(pos[0])
	if *login != "" {
		userName = *login
	}
	if userName == "" {
		u, err := user.Current()
		if err != nil {
			return fmt.Errorf("cannot tell your user name (%v): pass -l USER", err)
		}
		userName = u.Username
	}
	if *port < 1 || *port > 65535 {
		return fmt.Errorf("-p %d: want a port from 1 to 65535", *port)
	}
	if len(local.list)+len(remote.list)+len(dynamic.list) == 0 {
		return errors.New("nothing to forward: give at least one -L, -R or -D (see pinhole connect -h)")
	}
	// Against a stock sshd /udp forwards cannot work: that is an error when
	// they are all that was asked for, a warning beside other forwards.
	onlyUDP := len(dynamic.list) == 0
	for _, f := range append(local.list, remote.list...) {
		if f.Proto == spec.TCP {
			onlyUDP = false
		}
	}
	creds, err := proxyCredentials(*pauth, *pauthF)
	if err != nil {
		return err
	}
	mode, err := auth.ParseHostKeyMode(*check)
	if err != nil {
		return err
	}
	if mode == auth.HostKeyNo {
		fmt.Fprintln(e.stderr, "WARNING: --host-key-check no: the server's identity is NOT checked; anyone on the path can read and change this tunnel's traffic.")
	}
	if *known == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return fmt.Errorf("no home directory for the default known_hosts (%v); pass --known-hosts FILE", err)
		}
		*known = filepath.Join(home, ".ssh", "known_hosts")
	}
	kh, err := auth.OpenKnownHosts(*known, mode, e.log)
	if err != nil {
		return err
	}
	signers, closeAgent, err := auth.ClientSigners(idents, os.Getenv("SSH_AUTH_SOCK"), func(err error) {
		fmt.Fprintf(e.stderr, "warning: %v; going on with the other keys\n", err)
	})
	if err != nil {
		return err
	}
	defer closeAgent()
	if len(signers) == 0 {
		return errors.New("no keys to log in with: create one with 'ssh-keygen -t ed25519', pass -i FILE, or start ssh-agent")
	}

	addr := net.JoinHostPort(host, strconv.Itoa(*port))
	interval := *alive
	if interval == 0 {
		interval = -1
	}
	cfg := tunnel.ClientConfig{
		Addr:              addr,
		User:              userName,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(signers...)},
		HostKeyCallback:   kh.Callback(),
		HostKeyAlgorithms: kh.Algorithms(addr),
		Local:             local.list,
		Remote:            remote.list,
		Dynamic:           dynamic.list,
		AllowOpenProxy:    *open,
		KeepaliveInterval: interval,
		KeepaliveCountMax: *aliveMax,
		UDPIdleTimeout:    *udpIdle,
		UDPMaxFlows:       *udpFlows,
		UDPOptional:       !onlyUDP,
		Cores:             e.cores,
		Logger:            e.log,
	}
	if creds != nil {
		cfg.ProxyCredentials = creds
	}
	client, err := tunnel.Dial(ctx, cfg)
	if err != nil {
		return err
	}
	defer client.Close()
	fmt.Fprintf(e.stdout, "pinhole connect: connected to %s as %s\n", addr, userName)
	for _, f := range client.Forwardings() {
		printForward(e, addr, f)
	}

	select {
	case <-ctx.Done():
		return drainClient(e, client, *drainFor)
	case <-client.Done():
		return client.Wait()
	}
}

// printForward says where a forward listens, or why it does not.
func printForward(e *env, server string, f *tunnel.Forwarding) {
	s := f.Spec()
	if f.State() == tunnel.StateClosed {
		if errors.Is(f.Err(), tunnel.ErrNoUDP) {
			fmt.Fprintf(e.stderr, "pinhole connect: %s %s: skipped: %s is not a pinhole server, so it cannot carry UDP\n", s.Kind, s, server)
			return
		}
		fmt.Fprintf(e.stderr, "pinhole connect: %s %s: skipped: %v\n", s.Kind, s, f.Err())
		return
	}
	switch s.Kind {
	case spec.Local:
		fmt.Fprintf(e.stdout, "pinhole connect: -L %s: listening on %s, connecting to %s from the server\n", s, f.Addr(), s.Target())
	case spec.Dynamic:
		fmt.Fprintf(e.stdout, "pinhole connect: -D %s: SOCKS4/4a/5 and HTTP proxy on %s, connecting from the server\n", s, f.Addr())
	case spec.Remote:
		if f.State() != tunnel.StateUp {
			why := "see the log"
			if err := f.Err(); err != nil {
				why = err.Error()
			}
			fmt.Fprintf(e.stdout, "pinhole connect: -R %s: refused by the server for now (%s); retrying\n", s, why)
			return
		}
		fmt.Fprintf(e.stdout, "pinhole connect: -R %s: the server listens on %s, connecting to %s from here\n", s, remoteWhere(s, f), s.Target())
	}
}

// remoteWhere is where the server listens for a -R, as asked: the bind
// host given (localhost by default) with the port it bound.
func remoteWhere(s spec.Forward, f *tunnel.Forwarding) string {
	host := s.BindHost
	switch host {
	case "":
		host = "localhost"
	case "*":
		host = ""
	}
	return net.JoinHostPort(host, strconv.Itoa(int(f.Addr().Port())))
}

// drainClient stops the client gracefully: no new connections, open
// streams get up to d (or until a second signal) to finish.
func drainClient(e *env, c *tunnel.Client, d time.Duration) error {
	if open := c.Stats().StreamsOpen; open > 0 {
		e.log.Info("stopping: no new connections; waiting for open streams (a second signal stops at once)", "streams", open, "drain", d)
	}
	ctx, cancel := context.WithTimeout(e.force, d)
	defer cancel()
	if err := c.Shutdown(ctx); err != nil {
		return fmt.Errorf("stopped before open streams finished, they were cut: %w", err)
	}
	return nil
}

// splitDestination splits [user@]host; the host may be an IPv6 literal,
// with or without brackets.
func splitDestination(dest string) (userName, host string) {
	if i := strings.LastIndex(dest, "@"); i >= 0 {
		userName, dest = dest[:i], dest[i+1:]
	}
	return userName, strings.TrimSuffix(strings.TrimPrefix(dest, "["), "]")
}

// proxyCredentials reads --proxy-auth and --proxy-auth-file; nil means no
// proxy auth.
func proxyCredentials(pair, file string) (socks.StaticCredentials, error) {
	var creds socks.StaticCredentials
	if pair != "" {
		c, err := socks.ParseCredentials(pair)
		if err != nil {
			return nil, err
		}
		creds = c
	}
	if file != "" {
		c, err := socks.LoadCredentialsFile(file)
		if err != nil {
			return nil, err
		}
		if creds == nil {
			creds = c
		} else {
			for u, p := range c {
				creds[u] = p
			}
		}
	}
	return creds, nil
}
