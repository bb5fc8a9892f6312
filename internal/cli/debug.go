package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"time"
)

// debugFlag is --debug-addr: setting it serves net/http/pprof on that
// address, loopback only, until the subcommand's context ends. The fault lab
// reads the process's goroutine count there
// (/debug/pprof/goroutine?debug=1). Registered by one line in each
// subcommand that takes it:
//
//	fs.Var(&debugFlag{ctx: ctx, e: e}, "debug-addr", debugUsage)
type debugFlag struct {
	ctx  context.Context
	e    *env
	addr string
}

const debugUsage = "serve Go's profiles (net/http/pprof) on this loopback `address`, e.g. 127.0.0.1:6060, for debugging; off by default"

func (d *debugFlag) String() string { return d.addr }

// Set checks that addr is a loopback address and port, binds it at once (so
// a taken port fails the command), and serves the profiles until the
// context ends.
func (d *debugFlag) Set(addr string) error {
	if d.addr != "" {
		return errors.New("given twice")
	}
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return fmt.Errorf("want a loopback ADDRESS:PORT such as 127.0.0.1:6060: %w", err)
	}
	if !ap.Addr().Unmap().IsLoopback() {
		return fmt.Errorf("%s is not a loopback address: the profiles show the process's memory, so they are served on loopback only", ap.Addr())
	}
	ln, err := net.Listen("tcp", ap.String())
	if err != nil {
		return err
	}
	d.addr = ln.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	go func() {
		<-d.ctx.Done()
		srv.Close()
	}()
	fmt.Fprintf(d.e.stderr, "pinhole: debug profiles on http://%s/debug/pprof/\n", d.addr)
	return nil
}
