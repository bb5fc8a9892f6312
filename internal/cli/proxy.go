package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"time"

	"github.com/pinhole-dev/pinhole/internal/socks"
)

// runProxy is "pinhole proxy": a SOCKS4/4a/5 and HTTP proxy on one port
// that connects from this machine, with no tunnel.
func runProxy(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("pinhole proxy", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	logFlags(fs, e)
	var (
		listen = fs.String("listen", "127.0.0.1:1080", "`address` to listen on")
		pauth  = fs.String("proxy-auth", "", "`user:pass` that clients must give (SOCKS5 and HTTP Basic; SOCKS4 is then refused)")
		pauthF = fs.String("proxy-auth-file", "", "`file` of user:pass lines that clients may give")
		open   = fs.Bool("allow-open-proxy", false, "allow a non-loopback --listen address without --proxy-auth")
		drainD = fs.Duration("drain", 10*time.Second, "on the first SIGINT or SIGTERM, stop accepting and let open connections finish for this long (a second signal stops at once)")
	)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: pinhole proxy [flags]\n\nRuns a SOCKS4/4a/5 and HTTP proxy on one port, connecting from this machine.\n\n")
		fs.PrintDefaults()
	}
	if err := e.parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "pinhole proxy: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return errUsage
	}
	creds, err := proxyCredentials(*pauth, *pauthF)
	if err != nil {
		return err
	}
	if err := socks.CheckOpen(*listen, creds != nil); err != nil && !*open {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("%w (is another program using that port? pick another one with --listen)", err)
	}
	s := &socks.Server{Logger: e.log}
	if creds != nil {
		s.Credentials = creds
	}
	fmt.Fprintf(e.stdout, "pinhole proxy: listening on %s (SOCKS4/4a/5 and HTTP)\n", ln.Addr())

	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ln) }()
	select {
	case <-ctx.Done():
		dctx, cancel := context.WithTimeout(e.force, *drainD)
		defer cancel()
		err := s.Shutdown(dctx)
		<-errc
		if err != nil {
			return fmt.Errorf("stopped before open connections finished, they were cut: %w", err)
		}
		return nil
	case err := <-errc:
		s.Close()
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		return err
	}
}
