package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/user"
	"path/filepath"
	"time"

	"github.com/pinhole-dev/pinhole/internal/ssh"

	"github.com/pinhole-dev/pinhole/internal/auth"
	"github.com/pinhole-dev/pinhole/internal/tunnel"
)

func runServer(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("pinhole server", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	listen := fs.String("listen", ":2222", "address to accept SSH connections on")
	hostKey := fs.String("host-key", "", "host key file; generated (ed25519, mode 0600) if missing (default in the user's state directory)")
	authKeys := fs.String("authorized-keys", "", "authorized_keys file of the keys allowed in, with sshd's options (default ~/.ssh/authorized_keys)")
	gateway := fs.String("gateway-ports", "no", "where remote forwards listen, as sshd's GatewayPorts: no (loopback), yes (all addresses) or clientspecified")
	keepalive := fs.Duration("keepalive", 15*time.Second, "ask idle clients whether they are alive this often (0 turns it off)")
	udpIdle := fs.Duration("udp-idle", 60*time.Second, "end a remote UDP forward's flow after this long without a datagram")
	udpFlows := fs.Int("udp-max-flows", 1024, "most UDP flows (source addresses) at once per remote /udp forward")
	ciphers := fs.String("ciphers", "", "comma-separated ciphers to offer, as sshd's Ciphers (default: all of aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr)")
	mapPort := fs.Bool("map", false, "open the listening port on the home router (PCP, NAT-PMP or UPnP) while the server runs, and print the public address")
	fs.Var(&debugFlag{ctx: ctx, e: e}, "debug-addr", debugUsage)
	var mf mapFlags
	mf.register(fs, "map-")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: pinhole server [flags]\n\nAn SSH-protocol server that only forwards ports: any ssh client can use -L, -R and -D through it.\n\n")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "pinhole server: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return errUsage
	}
	gp, err := tunnel.ParseGatewayPorts(*gateway)
	if err != nil {
		return err
	}
	var cipherList []string
	if *ciphers != "" {
		if cipherList, err = tunnel.ParseCiphers(*ciphers); err != nil {
			return err
		}
	}
	mapCfg, err := mf.config(e)
	if err != nil {
		return err
	}
	if *hostKey == "" {
		if *hostKey, err = auth.DefaultHostKeyPath(); err != nil {
			return err
		}
	}
	if *authKeys == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return fmt.Errorf("no home directory for the default authorized_keys (%v); pass --authorized-keys FILE", err)
		}
		*authKeys = filepath.Join(home, ".ssh", "authorized_keys")
	}
	signer, created, err := auth.LoadOrCreateHostKey(*hostKey)
	if err != nil {
		return err
	}
	keys := auth.NewKeyFile(*authKeys, e.log)
	problems, err := keys.Load()
	if errors.Is(err, os.ErrNotExist) {
		// Start anyway, as sshd does: the file is read again at each
		// login, so adding a key later needs no restart.
		fmt.Fprintf(e.stderr, "warning: %v\nwarning: every key is refused until that file exists\n", err)
	} else if err != nil {
		return err
	}
	for _, p := range problems {
		fmt.Fprintf(e.stderr, "warning: %v (that line's key is refused)\n", p)
	}
	interval := *keepalive
	if interval == 0 {
		interval = -1
	}
	srv, err := tunnel.NewServer(tunnel.ServerConfig{
		HostKeys:          []ssh.Signer{signer},
		Authorize:         authorizer(keys),
		GatewayPorts:      gp,
		KeepaliveInterval: interval,
		UDPIdleTimeout:    *udpIdle,
		UDPMaxFlows:       *udpFlows,
		Ciphers:           cipherList,
		Logger:            e.log,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w (is another server on that port? pick another with --listen)", *listen, err)
	}
	if created {
		fmt.Fprintf(e.stdout, "pinhole server: generated a new host key in %s\n", *hostKey)
	}
	printServerBanner(e, ln.Addr(), signer.PublicKey(), *authKeys)
	unmap := func() {}
	if *mapPort {
		unmap = serverMap(ctx, e, ln.Addr(), mapCfg)
	}
	defer unmap()

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		srv.Close()
		<-errc
		return nil
	case err := <-errc:
		srv.Close()
		return err
	}
}

// authorizer looks each offered key up in the authorized_keys file (re-read
// when it changes) and applies its from= and expiry-time=.
func authorizer(keys *auth.KeyFile) func(ssh.ConnMetadata, ssh.PublicKey) (*auth.Options, error) {
	return func(meta ssh.ConnMetadata, key ssh.PublicKey) (*auth.Options, error) {
		k, err := keys.Lookup(key)
		if err != nil {
			return nil, err
		}
		if k == nil {
			return nil, nil
		}
		ap, err := netip.ParseAddrPort(meta.RemoteAddr().String())
		if err != nil || !k.Options.AllowFrom(ap.Addr().Unmap()) {
			return nil, fmt.Errorf("key %s is not allowed from %s (from= in authorized_keys line %d)", ssh.FingerprintSHA256(key), meta.RemoteAddr(), k.Line)
		}
		if k.Options.Expired(time.Now()) {
			return nil, fmt.Errorf("key %s expired (expiry-time= in authorized_keys line %d)", ssh.FingerprintSHA256(key), k.Line)
		}
		return &k.Options, nil
	}
}

func printServerBanner(e *env, addr net.Addr, key ssh.PublicKey, authKeys string) {
	host, port := "THIS-HOST", 2222
	if ta, ok := addr.(*net.TCPAddr); ok {
		port = ta.Port
		if !ta.IP.IsUnspecified() {
			host = ta.IP.String()
		} else if h, err := os.Hostname(); err == nil {
			host = h
		}
	}
	fmt.Fprintf(e.stdout, "pinhole server: listening on %s\n", addr)
	fmt.Fprintf(e.stdout, "pinhole server: host key %s %s\n", key.Type(), ssh.FingerprintSHA256(key))
	fmt.Fprintf(e.stdout, "pinhole server: keys allowed in: %s\n", authKeys)
	fmt.Fprintf(e.stdout, "pinhole server: from another machine, expose its local port 3000 here as port 8080 with:\n")
	fmt.Fprintf(e.stdout, "  %s\n", sshExample(port, host))
	fmt.Fprintf(e.stdout, "pinhole server: check that the fingerprint ssh shows on first connect is the one above\n")
}

// sshExample is the ssh command line that exposes a local port 3000 as
// port 8080 of the server at host:port.
func sshExample(port int, host string) string {
	name := "USER"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	return fmt.Sprintf("ssh -N -p %d -R 8080:localhost:3000 %s@%s", port, name, host)
}
