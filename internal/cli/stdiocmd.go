package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/pinhole-dev/pinhole/internal/transport"
)

// runStdio is pinhole stdio: it connects to a URL's transport and copies
// stdin to it and it to stdout, for OpenSSH's ProxyCommand:
//
//	ssh -o ProxyCommand='pinhole stdio wss://host/ssh' host
func runStdio(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("pinhole stdio", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	logFlags(fs, e)
	var tf transportFlags
	tf.register(fs)
	timeout := fs.Duration("timeout", 30*time.Second, "give up connecting after this long")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: pinhole stdio [flags] ssh://host[:port] | tls://host[:port] | ws[s]://host[:port][/path]\n\n"+
			"Connects to the URL, through a proxy if one applies, and copies stdin to it and it to stdout: the transport\n"+
			"for a stock OpenSSH client, as ssh -o ProxyCommand='pinhole stdio wss://host/ssh' host (docs/transports.md).\n"+
			"The flags come before the URL.\n\n")
		fs.PrintDefaults()
	}
	if err := e.parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fmt.Fprintf(e.stderr, "pinhole stdio: want one URL, got %d arguments\n", fs.NArg())
		fs.Usage()
		return errUsage
	}
	ep, err := transport.ParseURL(fs.Arg(0))
	if err != nil {
		return err
	}
	tlsCfg, err := tf.clientTLS()
	if err != nil {
		return err
	}
	if err := checkProxy(tf.proxy); err != nil {
		return err
	}
	proxy, err := proxyFor(tf.proxy, true, e.getenv, ep.Scheme, ep.Host, ep.Port)
	if err != nil {
		return err
	}
	d := &transport.Dialer{
		Proxy: func(transport.Endpoint) (*url.URL, error) { return proxy, nil },
		TLS:   tlsCfg,
	}
	dctx, cancel := context.WithTimeout(ctx, *timeout)
	conn, err := d.DialEndpoint(dctx, ep)
	cancel()
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	var closed atomic.Bool // by us, after EOF on stdin
	go func() {
		io.Copy(conn, e.stdin)
		// EOF on stdin: pass it on where the transport can half-close
		// (TCP, TLS); a WebSocket cannot, so it closes.
		cw, ok := conn.(interface{ CloseWrite() error })
		if !ok || cw.CloseWrite() != nil {
			closed.Store(true)
			conn.Close()
		}
	}()
	_, err = io.Copy(e.stdout, conn)
	if err == nil || ctx.Err() != nil || closed.Load() || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return fmt.Errorf("%s: %w", ep, err)
}
