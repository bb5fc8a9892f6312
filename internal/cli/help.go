package cli

import (
	"context"
	"flag"
	"fmt"
	"strings"
)

// runHelp is "pinhole help [CMD]": the general help, or CMD's, on stdout.
func runHelp(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("pinhole help", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: pinhole help [command]\n\nPrints the list of commands, or the usage and flags of one command (the same text as 'pinhole command -h').\n\n")
		fs.PrintDefaults()
	}
	if err := e.parseFlags(fs, args); err != nil {
		return err
	}
	switch fs.NArg() {
	case 0:
		usage(e.stdout)
		return nil
	case 1:
	default:
		fmt.Fprintf(e.stderr, "pinhole help: want one command, got %d arguments\n", fs.NArg())
		return errUsage
	}
	c, ok := lookup(fs.Arg(0))
	if !ok {
		return fmt.Errorf("unknown command %q; the commands are %s", fs.Arg(0), commandNames())
	}
	cfs := flagSet(c)
	cfs.SetOutput(e.stdout)
	cfs.Usage()
	return nil
}

// commandNames lists the subcommands, for errors.
func commandNames() string {
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	return strings.Join(names, ", ")
}
