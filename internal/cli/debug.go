package cli

import (
	"errors"
	"flag"
	"fmt"
	"github.com/pinhole-dev/pinhole/internal/spec"
	"net"
	"net/http"
	"net/http/pprof"
	"sync"
	"time"
)

// debugServer is the --debug-addr flag of connect and server: Go's
// net/http/pprof on a loopback address, for profiles and goroutine counts
// (pinhole-bench -soak reads /debug/pprof/goroutine?debug=1).
//
// It binds while the flags are parsed, as -D binds before connecting: a
// refused or taken address is a usage error before anything else starts.
type debugServer struct {
	e    *env
	name string // of the subcommand, for the line it prints

	mu  sync.Mutex
	srv *http.Server
}

// debugAddrFlag registers --debug-addr on fs and returns what stops the
// server it may start; connect and server defer it, in one line.
func debugAddrFlag(fs *flag.FlagSet, e *env) (stop func()) {
	d := &debugServer{e: e, name: fs.Name()}
	fs.Var(d, "debug-addr", "serve Go's net/http/pprof on this loopback `ADDR` (host:port, port 0 for any), for profiling")
	return d.stop
}

func (d *debugServer) String() string {
	if d == nil {
		return ""
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.srv == nil {
		return ""
	}
	return d.srv.Addr
}

func (d *debugServer) Set(v string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.srv != nil {
		return errors.New("given twice: one debug address is enough")
	}
	if err := checkDebugAddr(v); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", v)
	if err != nil {
		return fmt.Errorf("%w (pick another port, or port 0 for any)", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index) // and every named profile below it
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	d.srv = &http.Server{
		Addr:              ln.Addr().String(),
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
	}
	fmt.Fprintf(d.e.stdout, "%s: debug: net/http/pprof on http://%s/debug/pprof/\n", d.name, d.srv.Addr)
	go d.srv.Serve(ln) // returns http.ErrServerClosed once stop closes it
	return nil
}

// stop closes the debug server, if one was started. It is idempotent.
func (d *debugServer) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.srv != nil {
		d.srv.Close()
	}
}

// checkDebugAddr accepts host:port with a loopback host: an IP address
// such as 127.0.0.1 or ::1, or localhost. Profiles show what the process
// is doing and cost CPU to take, so they are never served to the network.
func checkDebugAddr(v string) error {
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return fmt.Errorf("%q: want host:port, such as 127.0.0.1:6060", v)
	}
	if _, err := net.LookupPort("tcp", port); err != nil || port == "" {
		return fmt.Errorf("%q: bad port %q", v, port)
	}
	if !spec.LoopbackHost(host) {
		return fmt.Errorf("%q: only a loopback address is allowed (127.0.0.1, ::1 or localhost): the debug server is not for the network", v)
	}
	return nil
}
