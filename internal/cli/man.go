package cli

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/pinhole-dev/pinhole/internal/tunnel"
)

// runMan is "pinhole man [-dir DIR] [CMD]".
func runMan(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("pinhole man", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	dir := fs.String("dir", "", "write every page into `DIR` (pinhole.1, pinhole-connect.1, ...) instead of printing one")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `usage: pinhole man [command]
       pinhole man --dir DIR

Prints the manual page of pinhole, or of one command, in roff (read it with: pinhole man connect | man -l -). The pages are made from the flags each command parses, so they cannot drift from them. docs/man holds them, made with: go run ./cmd/pinhole man --dir docs/man

`)
		fs.PrintDefaults()
	}
	pos, err := e.parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if *dir != "" {
		if len(pos) > 0 {
			fmt.Fprintf(e.stderr, "pinhole man: --dir writes every page; give no command with it\n")
			return errUsage
		}
		for name, page := range manPages() {
			if err := os.WriteFile(filepath.Join(*dir, name), []byte(page), 0o644); err != nil {
				return fmt.Errorf("%w (does the directory exist?)", err)
			}
		}
		return nil
	}
	switch len(pos) {
	case 0:
		fmt.Fprint(e.stdout, mainManPage())
		return nil
	case 1:
	default:
		fmt.Fprintf(e.stderr, "pinhole man: want one command, got %d arguments\n", len(pos))
		return errUsage
	}
	if pos[0] == "pinhole" {
		fmt.Fprint(e.stdout, mainManPage())
		return nil
	}
	c, ok := lookup(pos[0])
	if !ok {
		return fmt.Errorf("unknown command %q; the commands are %s", pos[0], commandNames())
	}
	fmt.Fprint(e.stdout, commandManPage(c))
	return nil
}

// manPages are every page by file name.
func manPages() map[string]string {
	pages := map[string]string{"pinhole.1": mainManPage()}
	for _, c := range commands() {
		pages["pinhole-"+c.name+".1"] = commandManPage(c)
	}
	return pages
}

// roff escapes text for a roff text line: backslashes, hyphens (so that
// flags copy and paste as typed), and a leading dot or quote; a long list
// may break after its commas.
func roff(s string) string {
	s = strings.NewReplacer(`\`, `\e`, `-`, `\-`, `,`, `,\:`).Replace(s)
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimRight(l, " \t")
		if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
			l = `\&` + l
		}
		lines = append(lines, l)
	}
	return strings.Join(lines, "\n")
}

// paragraphs writes text's blank-line-separated paragraphs.
func paragraphs(b *strings.Builder, text string) {
	for i, p := range strings.Split(text, "\n\n") {
		if i > 0 {
			b.WriteString(".PP\n")
		}
		b.WriteString(roff(strings.TrimSpace(p)) + "\n")
	}
}

func manHeader(b *strings.Builder, name, summary string) {
	fmt.Fprintf(b, ".\\\" Made by \"pinhole man\" from pinhole's flags: do not edit; regenerate with\n.\\\" go run ./cmd/pinhole man \\-\\-dir docs/man\n")
	fmt.Fprintf(b, ".TH %s 1 \"\" \"pinhole %s\" \"pinhole manual\"\n", strings.ToUpper(roff(name)), tunnel.Version)
	fmt.Fprintf(b, ".SH NAME\n%s \\- %s\n", roff(name), roff(summary))
}

const manExitStatus = `.SH EXIT STATUS
0 on success (and after a graceful stop), 1 on failure, 2 on bad usage.
`

func commandManPage(c command) string {
	fs := flagSet(c)
	synopsis, description := usageText(fs)
	var b strings.Builder
	manHeader(&b, "pinhole-"+c.name, c.summary)
	b.WriteString(".SH SYNOPSIS\n.nf\n")
	for _, s := range synopsis {
		b.WriteString(roff(s) + "\n")
	}
	b.WriteString(".fi\n.SH DESCRIPTION\n")
	paragraphs(&b, description)
	if flags := flagsOf(fs); len(flags) > 0 {
		b.WriteString(".SH OPTIONS\n")
		for _, f := range flags {
			if f.takesValue {
				b.WriteString(".TP\n.BI \"" + roff(f.dashed()) + " \" \"" + roff(f.placeholder) + "\"")
			} else {
				b.WriteString(".TP\n.B " + roff(f.dashed()))
			}
			b.WriteString("\n" + roff(f.usage))
			if f.def != "" {
				b.WriteString(" (default: " + roff(f.def) + ")")
			}
			b.WriteString("\n")
		}
		b.WriteString(".PP\nFlags take one dash or two: \\fB\\-" + roff(flags[len(flags)-1].name) + "\\fR is \\fB\\-\\-" + roff(flags[len(flags)-1].name) + "\\fR.\n")
	}
	b.WriteString(manExitStatus)
	b.WriteString(".SH SEE ALSO\n.BR pinhole (1)\n")
	return b.String()
}

func mainManPage() string {
	var b strings.Builder
	manHeader(&b, "pinhole", "forward ports: through an SSH tunnel, as an SSH forwarding server, as a proxy, on the home router")
	b.WriteString(`.SH SYNOPSIS
.nf
pinhole \fIcommand\fR [flags] [arguments]
pinhole \-\-version
pinhole help [\fIcommand\fR]
.fi
.SH DESCRIPTION
pinhole is one program for every kind of port forwarding.
Its tunnel is SSH: a stock OpenSSH ssh works against
.BR "pinhole server" ,
and
.B pinhole connect
works against any sshd.
Run
.B pinhole help
.I command
or
.B pinhole
.I command
.B \-h
for a command's flags.
.SH COMMANDS
`)
	for _, c := range commands() {
		fmt.Fprintf(&b, ".TP\n.B %s\n%s; see\n.BR pinhole\\-%s (1).\n", roff(c.name), roff(c.summary), roff(c.name))
	}
	b.WriteString(`.SH OPTIONS
.TP
.B \-\-version
the same as
.BR "pinhole version" .
.TP
.BR \-h ", " \-\-help
the list of commands.
.SH ENVIRONMENT
.TP
.B SSH_AUTH_SOCK
the ssh\-agent that
.B pinhole connect
asks for keys.
.TP
.B GOGC
unset, pinhole sets 400: the collector runs less often during transfers.
.TP
.B GOMAXPROCS
unset, pinhole sizes it by the SSH connections it holds.
.SH SIGNALS
The first SIGINT or SIGTERM stops gracefully: no new connections, open
streams get the time of \-\-drain to finish. A second one stops at once.
`)
	b.WriteString(manExitStatus)
	b.WriteString(".SH SEE ALSO\n")
	for i, c := range commands() {
		sep := ","
		if i == len(commands())-1 {
			sep = ""
		}
		fmt.Fprintf(&b, ".BR pinhole\\-%s (1)%s\n", roff(c.name), sep)
	}
	b.WriteString(".BR ssh (1),\n.BR sshd (8)\n")
	return b.String()
}
