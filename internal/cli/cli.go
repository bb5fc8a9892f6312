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
}

// env is what every subcommand gets from Main.
type env struct {
	stdout io.Writer
	stderr io.Writer
	log    *slog.Logger
	// force ends when a graceful stop (the run's ctx ending) must hurry:
	// a second signal. Never, under Main.
	force context.Context
	// cores sizes GOMAXPROCS by the SSH connections held; nil (under Main,
	// or GOMAXPROCS set in the environment) leaves it alone.
	cores *tunnel.CoreBudget
	// describing makes the parse return errDescribed after keeping the
	// FlagSet in described, the subcommand doing nothing (flagSet).
	describing bool
	described  *flag.FlagSet
}

func commands() []command {
	return []command{
		{"server", "run an SSH-protocol server that only forwards ports", runServer},
		{"connect", "connect to a server and forward ports (-L, -R, -D)", runConnect},
		{"proxy", "run a SOCKS4/4a/5 and HTTP proxy without a tunnel", runProxy},
		{"map", "open a port on the home router (PCP, NAT-PMP, UPnP IGD)", runMap},
		{"version", "print pinhole's version, commit and Go version", runVersion},
		{"help", "print the help of pinhole or of one command", runHelp},
		{"completion", "print the shell completion script for bash, zsh or fish", runCompletion},
		{"man", "print a manual page in roff, or write them all", runMan},
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
//     drains its streams for --drain), a second forces it.
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
	return runMain(ctx, force, cores, args, stdout, stderr)
}

// Main runs pinhole with args (without the program name) until ctx ends,
// and returns the process exit code: 0 on success, 1 on failure, 2 on bad
// usage. ctx ending is a graceful stop, as a first signal is under Run.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runMain(ctx, context.Background(), nil, args, stdout, stderr)
}

func runMain(ctx, force context.Context, cores *tunnel.CoreBudget, args []string, stdout, stderr io.Writer) int {
	e := &env{
		stdout: stdout,
		stderr: stderr,
		log:    slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
		force:  force,
		cores:  cores,
	}
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
