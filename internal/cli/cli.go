// Package cli is pinhole's command line: one file per subcommand, each with
// its own flag.FlagSet. Main is the whole program; cmd/pinhole only wires
// signals and the exit code to it.
//
// A subcommand defines its flags, sets fs.Usage and then parses with
// e.parseFlags or e.parseInterspersed, doing nothing before that parse.
// flagSet relies on it: it runs the subcommand in a mode where that parse
// hands the FlagSet back instead, so help, the man pages and the shell
// completions are made from the very flags the subcommand parses.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/pinhole-dev/pinhole/internal/tunnel"
)

// command is one subcommand: run parses args and does the work until ctx ends.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, env *env, args []string) error
	// reloads, given the command's arguments, reports whether SIGHUP
	// reloads its config (env.reload). nil: never. Where it does not,
	// SIGHUP keeps its default, ending the process, as it ends ssh.
	reloads func(args []string) bool
}

func always([]string) bool { return true }

// withConfig reports whether args give a config file (-c FILE).
func withConfig(args []string) bool {
	for _, a := range args {
		if a == "-c" || a == "--c" || strings.HasPrefix(a, "-c=") || strings.HasPrefix(a, "--c=") {
			return true
		}
	}
	return false
}

// env is what every subcommand gets from Main.
type env struct {
	stdin  io.Reader // os.Stdin: what connect -W forwards
	stdout io.Writer
	stderr io.Writer
	log    *slog.Logger
	// logJSON is --log-format json: what a logger made apart from log
	// (quietLogger) follows too.
	logJSON bool
	// force ends when a graceful stop (the run's ctx ending) must hurry:
	// a second signal. Never, under Main.
	force context.Context
	// cores sizes GOMAXPROCS by the SSH connections held; nil (under Main,
	// or GOMAXPROCS set in the environment) leaves it alone.
	cores *tunnel.CoreBudget
	// reload receives a value for each SIGHUP, for the commands that
	// reload their config (command.reloads); nil under Main, where a test
	// may pass its own (mainReload).
	reload <-chan struct{}
	// getenv reads the environment: the process's under Run and Main,
	// the one given under MainEnv.
	getenv func(string) string
	// svc is what a long-running subcommand tells systemd (daemon.go).
	svc *daemon
	// describing makes the parse return errDescribed after keeping the
	// FlagSet in described, the subcommand doing nothing (flagSet).
	describing bool
	described  *flag.FlagSet
}

func commands() []command {
	return []command{
		{"server", "run an SSH-protocol server that only forwards ports", runServer, always},
		{"connect", "connect to a server and forward ports (-L, -R, -D)", runConnect, nil},
		{"up", "run the named tunnels of a config file, reloading it live", runUp, always},
		{"check", "check a config file of pinhole up or server -c, starting nothing", runCheck, nil},
		{"status", "show what the running pinhole server, connect and up processes do", runStatus, nil},
		{"reload", "make a running pinhole up or server read its config again, as SIGHUP does", runReload, nil},
		{"stop", "drain and stop one tunnel of a running pinhole up", runStop, nil},
		{"stdio", "copy stdin and stdout to a tls://, wss:// or ssh:// URL (OpenSSH's ProxyCommand)", runStdio, nil},
		{"proxy", "run a SOCKS4/4a/5 and HTTP proxy without a tunnel", runProxy, nil},
		{"forward", "relay ports on this machine, no tunnel (tcp:// and udp:// pairs; --kernel: nftables DNAT)", runForward, forwardKernel},
		{"map", "open a port on the home router (PCP, NAT-PMP, UPnP IGD)", runMap, nil},
		{"version", "print pinhole's version, commit and Go version", runVersion, nil},
		{"help", "print the help of pinhole or of one command", runHelp, nil},
		{"completion", "print the shell completion script for bash, zsh or fish", runCompletion, nil},
		{"man", "print a manual page in roff, or write them all", runMan, nil},
	}
}

// lookup returns the subcommand called name.
func lookup(name string) (command, bool) {
	for _, c := range commands() {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// errDescribed is what a subcommand's parse returns under flagSet.
var errDescribed = errors.New("flags described")

// flagSet returns c's FlagSet, flags defined and Usage set, without
// running c: see the package comment. Its output is io.Discard.
func flagSet(c command) *flag.FlagSet {
	e := &env{
		stdout:     io.Discard,
		stderr:     io.Discard,
		log:        slog.New(slog.DiscardHandler),
		force:      context.Background(),
		describing: true,
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.run(ctx, e, nil); !errors.Is(err, errDescribed) || e.described == nil {
		panic(fmt.Sprintf("cli: pinhole %s did not hand back its flags (%v): it must parse with e.parseFlags or e.parseInterspersed before anything else", c.name, err))
	}
	return e.described
}

// errUsage marks an error that already printed its usage text.
var errUsage = errors.New("usage")

// Run is the program as cmd/pinhole runs it. It makes the process-wide
// settings that no library package makes for itself, then runs Main:
//   - GOGC 400 unless GOGC is set: x/crypto allocates a fresh buffer for
//     every SSH packet it reads, and at the default GOGC the collector and
//     the scavenger take a large share of a transfer's CPU (BENCHMARKS.md);
//     the live heap is small, so this costs little memory;
//   - GOMAXPROCS follows the number of SSH connections held
//     (tunnel.CoreBudget) unless GOMAXPROCS is set;
//   - the first SIGINT or SIGTERM asks for a graceful stop (a server
//     drains its streams for --drain), a second forces it;
//   - SIGHUP reloads the config of the commands that have one (pinhole
//     up); the others keep its default action.
func Run(args []string, stdout, stderr io.Writer) int {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	var cores *tunnel.CoreBudget
	if os.Getenv("GOMAXPROCS") == "" {
		cores = tunnel.NewCoreBudget(runtime.GOMAXPROCS(0), runtime.GOMAXPROCS)
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	force, forceNow := context.WithCancel(context.Background())
	defer forceNow()
	var reload chan struct{}
	if reloads(args) {
		hups := make(chan os.Signal, 1)
		signal.Notify(hups, syscall.SIGHUP)
		defer signal.Stop(hups)
		reload = make(chan struct{}, 1)
		go func() {
			for {
				select {
				case <-hups:
				case <-force.Done():
					return
				}
				select { // several SIGHUPs before a reload are one
				case reload <- struct{}{}:
				default:
				}
			}
		}()
	}
	go func() {
		select {
		case <-sigs:
			stop()
		case <-force.Done():
			return
		}
		select {
		case <-sigs:
			forceNow()
		case <-force.Done():
		}
	}()
	return runMain(ctx, force, cores, reload, os.Getenv, args, stdout, stderr)
}

// reloads reports whether the command args name reloads on SIGHUP.
func reloads(args []string) bool {
	for _, c := range commands() {
		if len(args) > 0 && c.name == args[0] {
			return c.reloads != nil && c.reloads(args[1:])
		}
	}
	return false
}

// Main runs pinhole with args (without the program name) until ctx ends,
// and returns the process exit code: 0 on success, 1 on failure, 2 on bad
// usage. ctx ending is a graceful stop, as a first signal is under Run.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runMain(ctx, context.Background(), nil, nil, os.Getenv, args, stdout, stderr)
}

// MainEnv is Main with the environment environ ("KEY=value" entries, as
// os.Environ gives) instead of the process's: what a test of the
// variables systemd sets (NOTIFY_SOCKET, WATCHDOG_USEC, STATE_DIRECTORY)
// passes in.
func MainEnv(ctx context.Context, args, environ []string, stdout, stderr io.Writer) int {
	vars := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			vars[k] = v
		}
	}
	getenv := func(k string) string { return vars[k] }
	return runMain(ctx, context.Background(), nil, nil, getenv, args, stdout, stderr)
}

// mainReload is Main with a reload channel, which a SIGHUP feeds under
// Run: for tests.
func mainReload(ctx context.Context, reload <-chan struct{}, args []string, stdout, stderr io.Writer) int {
	return runMain(ctx, context.Background(), nil, reload, os.Getenv, args, stdout, stderr)
}

func runMain(ctx, force context.Context, cores *tunnel.CoreBudget, reload <-chan struct{}, getenv func(string) string, args []string, stdout, stderr io.Writer) int {
	e := &env{
		stdin:  os.Stdin,
		stdout: stdout,
		stderr: stderr,
		log:    newLogger(stderr, false, slog.LevelInfo),
		force:  force,
		cores:  cores,
		reload: reload,
		getenv: getenv,
	}
	svc, err := newDaemon(e, getenv)
	if err != nil {
		fmt.Fprintf(stderr, "pinhole: %v\n", err)
		return 1
	}
	svcCtx, svcDone := context.WithCancel(context.Background())
	svc.ctx = svcCtx
	e.svc = svc
	defer svc.wg.Wait()
	defer svcDone()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	if args[0] == "--version" || args[0] == "-version" {
		args = []string{"version"}
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, e, args[1:])
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			return 2
		default:
			fmt.Fprintf(stderr, "pinhole %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "pinhole: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	var b strings.Builder
	b.WriteString("usage: pinhole <command> [flags]\n       pinhole --version\n\ncommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(&b, "  %-10s %s\n", c.name, c.summary)
	}
	b.WriteString("\nRun 'pinhole help <command>' or 'pinhole <command> -h' for a command's flags.\n")
	io.WriteString(w, b.String())
}

// parseFlags is how a subcommand parses its flags: parseFlagSet, except
// under flagSet. (Subcommands never call parseFlagSet themselves, or
// flagSet would run them.)
func (e *env) parseFlags(fs *flag.FlagSet, args []string) error {
	if e.describing {
		e.described = fs
		return errDescribed
	}
	return parseFlagSet(fs, args)
}

// parseInterspersed is parseFlagSetInterspersed, except under flagSet.
func (e *env) parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	if e.describing {
		e.described = fs
		return nil, errDescribed
	}
	return parseFlagSetInterspersed(fs, args)
}

// parseFlagSet is fs.Parse, except that a bad flag gets its one-line error
// and a pointer to -h instead of the whole usage text, and is returned as
// errUsage (exit status 2). -h prints the usage and returns flag.ErrHelp.
func parseFlagSet(fs *flag.FlagSet, args []string) error {
	usage := fs.Usage
	fs.Usage = func() {}
	err := fs.Parse(args)
	fs.Usage = usage
	switch {
	case errors.Is(err, flag.ErrHelp):
		usage()
		return err
	case err != nil:
		fmt.Fprintf(fs.Output(), "run '%s -h' for the flags\n", fs.Name())
		return errUsage
	}
	return nil
}

// parseFlagSetInterspersed parses flags that may come before and after positional
// arguments, as OpenSSH allows ("pinhole connect host -L 8080:db:5432").
func parseFlagSetInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parseFlagSet(fs, args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}
