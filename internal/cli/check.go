package cli

import (
	"context"
	"flag"
	"fmt"
	"strings"

	"github.com/pinhole-dev/pinhole/internal/transport"
)

// runCheck is pinhole check -c FILE: the config of pinhole up parsed and
// validated, nothing started. Each mistake is a line file:line:col: what
// is wrong and what to write instead.
func runCheck(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("pinhole check", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	file := fs.String("c", "", "config `FILE` of pinhole up to check")
	server := fs.Bool("server", false, "FILE is a file of pinhole server -c")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: pinhole check [-server] -c FILE\n\nChecks a config file of pinhole up (or, with -server, of pinhole server -c) without starting anything: each mistake is printed as\nFILE:LINE:COL: what is wrong and what to write instead. Exits 0 when the file is good.\n\n")
		fs.PrintDefaults()
	}
	if err := e.parseFlags(fs, args); err != nil {
		return err
	}
	if *file == "" || fs.NArg() > 0 {
		fmt.Fprintln(e.stderr, "pinhole check: want -c FILE and no other arguments")
		fs.Usage()
		return errUsage
	}
	if *server {
		_, cfg, err := loadServerConfig(e, *file)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%s: ok: pinhole server, %s\n", *file, cfg)
		return nil
	}
	_, cfg, err := loadConfig(e, *file)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s: ok: %d %s\n", *file, len(cfg.Tunnels), plural(len(cfg.Tunnels), "tunnel", "tunnels"))
	for _, t := range cfg.Tunnels {
		c := t.Conn
		dest := c.Host
		if c.User != "" {
			dest = c.User + "@" + dest
		}
		dest += fmt.Sprintf(" port %d", c.Port)
		if ep, err := transport.ParseURL(c.URL); c.URL != "" && err == nil {
			ep.User = c.User
			dest = ep.String()
		}
		fw := make([]string, len(t.Forwards))
		for i, f := range t.Forwards {
			fw[i] = f.Kind.String() + " " + f.String()
		}
		fmt.Fprintf(e.stdout, "  %s: %s: %s\n", t.Name, dest, strings.Join(fw, ", "))
	}
	return nil
}
