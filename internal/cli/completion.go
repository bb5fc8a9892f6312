package cli

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// runCompletion is "pinhole completion bash|zsh|fish|hosts".
func runCompletion(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("pinhole completion", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), `usage: pinhole completion bash|zsh|fish
       pinhole completion hosts

Prints the shell completion script for bash, zsh or fish. It completes the commands, each command's flags (made from the flags the command parses, so they cannot drift) and, for pinhole connect, the host names of ~/.ssh/config's Host lines (patterns without * or ?), which 'pinhole completion hosts' prints. Load it with: source <(pinhole completion bash) in ~/.bashrc; source <(pinhole completion zsh) in ~/.zshrc, after compinit; pinhole completion fish > ~/.config/fish/completions/pinhole.fish.

`)
		fs.PrintDefaults()
	}
	if err := e.parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fmt.Fprintf(e.stderr, "pinhole completion: want one of bash, zsh, fish or hosts\n")
		return errUsage
	}
	switch fs.Arg(0) {
	case "bash":
		io.WriteString(e.stdout, bashCompletion())
	case "zsh":
		io.WriteString(e.stdout, zshCompletion())
	case "fish":
		io.WriteString(e.stdout, fishCompletion())
	case "hosts":
		home, err := os.UserHomeDir()
		if err != nil {
			return fmt.Errorf("no home directory, so no ~/.ssh/config: %v", err)
		}
		f, err := os.Open(filepath.Join(home, ".ssh", "config"))
		if os.IsNotExist(err) {
			return nil
		} else if err != nil {
			return err
		}
		defer f.Close()
		for _, h := range sshConfigHosts(f) {
			fmt.Fprintln(e.stdout, h)
		}
	default:
		return fmt.Errorf("%q: want bash, zsh, fish or hosts", fs.Arg(0))
	}
	return nil
}

// sshConfigHosts returns the names on the Host lines of an ssh_config
// text, in order and once each: patterns with * or ?, negated ones (!) and
// quoted or odd ones are left out. Include is not followed.
func sshConfigHosts(r io.Reader) []string {
	var hosts []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		// "Keyword args", "Keyword=args" or "Keyword = args".
		line := strings.TrimSpace(sc.Text())
		i := strings.IndexAny(line, " \t=")
		if i < 0 || !strings.EqualFold(line[:i], "host") {
			continue
		}
		rest := strings.TrimLeft(line[i:], " \t")
		rest = strings.TrimPrefix(rest, "=")
		for _, p := range strings.Fields(rest) {
			if strings.HasPrefix(p, "#") {
				break
			}
			if strings.ContainsAny(p, "*?!\"'\\`$;&|<>()") || slices.Contains(hosts, p) {
				continue
			}
			hosts = append(hosts, p)
		}
	}
	return hosts
}

// completionCommand is what the scripts know of one command.
type completionCommand struct {
	name, summary string
	flags         []flagInfo
	args          string   // what its arguments complete: "hosts", "commands", or ""
	words         []string // or these words
}

func completionCommands() []completionCommand {
	var out []completionCommand
	for _, c := range commands() {
		cc := completionCommand{name: c.name, summary: c.summary, flags: flagsOf(flagSet(c))}
		switch c.name {
		case "connect":
			cc.args = "hosts"
		case "help", "man":
			cc.args = "commands"
		case "completion":
			cc.words = []string{"bash", "zsh", "fish", "hosts"}
		}
		out = append(out, cc)
	}
	return out
}

func commandList() string {
	var names []string
	for _, c := range commands() {
		names = append(names, c.name)
	}
	return strings.Join(names, " ")
}

func bashCompletion() string {
	var b strings.Builder
	b.WriteString(`# bash completion for pinhole, made by "pinhole completion bash" from the
# flags each command parses. Load it with: source <(pinhole completion bash)
_pinhole() {
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
	local cmd= i
	for ((i = 1; i < COMP_CWORD; i++)); do
		case ${COMP_WORDS[i]} in
		-*) ;;
		*) cmd=${COMP_WORDS[i]}; break ;;
		esac
	done
	local flags= valued= args=
	case $cmd in
`)
	fmt.Fprintf(&b, "\t'') COMPREPLY=($(compgen -W '%s --version --help' -- \"$cur\")); return ;;\n", commandList())
	for _, c := range completionCommands() {
		var flags, valued []string
		for _, f := range c.flags {
			flags = append(flags, f.dashed())
			if f.takesValue {
				valued = append(valued, "-"+f.name, "--"+f.name)
			}
		}
		args := c.args
		if c.words != nil {
			args = strings.Join(c.words, " ")
		}
		fmt.Fprintf(&b, "\t%s) flags='%s' valued='%s' args='%s' ;;\n", c.name, strings.Join(flags, " "), strings.Join(valued, " "), args)
	}
	fmt.Fprintf(&b, `	esac
	# "--flag=value": bash's COMP_WORDBREAKS makes "=" a word of its own.
	if [[ $prev == = ]] && ((COMP_CWORD > 1)); then
		prev=${COMP_WORDS[COMP_CWORD-2]}
	fi
	if [[ " $valued " == *" $prev "* ]]; then
		COMPREPLY=($(compgen -f -- "$cur"))
		return
	fi
	if [[ $cur == -* ]]; then
		COMPREPLY=($(compgen -W "$flags" -- "$cur"))
		return
	fi
	case $args in
	hosts)
		local user=
		if [[ $cur == *@* ]]; then
			user=${cur%%%%@*}@ cur=${cur#*@}
		fi
		COMPREPLY=($(compgen -P "$user" -W "$("${COMP_WORDS[0]}" completion hosts 2>/dev/null)" -- "$cur"))
		;;
	commands) COMPREPLY=($(compgen -W '%s' -- "$cur")) ;;
	?*) COMPREPLY=($(compgen -W "$args" -- "$cur")) ;;
	esac
}
complete -F _pinhole pinhole
`, commandList())
	return b.String()
}

func zshCompletion() string {
	var b strings.Builder
	b.WriteString(`#compdef pinhole
# zsh completion for pinhole, made by "pinhole completion zsh" from the
# flags each command parses. Load it with: source <(pinhole completion zsh)
# after compinit.
_pinhole() {
	local cmd= i
	for ((i = 2; i < CURRENT; i++)); do
		if [[ ${words[i]} != -* ]]; then
			cmd=${words[i]}
			break
		fi
	done
	local -a flags valued args
	case $cmd in
`)
	fmt.Fprintf(&b, "\t'') compadd -- %s --version --help; return ;;\n", commandList())
	for _, c := range completionCommands() {
		var flags, valued []string
		for _, f := range c.flags {
			flags = append(flags, f.dashed())
			if f.takesValue {
				valued = append(valued, "-"+f.name, "--"+f.name)
			}
		}
		args := c.args
		if c.words != nil {
			args = strings.Join(c.words, " ")
		}
		fmt.Fprintf(&b, "\t%s) flags=(%s) valued=(%s) args=(%s) ;;\n", c.name, strings.Join(flags, " "), strings.Join(valued, " "), args)
	}
	fmt.Fprintf(&b, `	esac
	if (( ${valued[(Ie)${words[CURRENT-1]}]} )); then
		_files
		return
	fi
	if [[ ${words[CURRENT]} == -* ]]; then
		compadd -- $flags
		return
	fi
	case $args in
	hosts)
		compset -P '*@'
		compadd -- ${(f)"$(${words[1]} completion hosts 2>/dev/null)"}
		;;
	commands) compadd -- %s ;;
	?*) compadd -- $args ;;
	esac
}
if (( $+functions[compdef] )); then
	compdef _pinhole pinhole
fi
`, commandList())
	return b.String()
}

func fishCompletion() string {
	var b strings.Builder
	b.WriteString(`# fish completion for pinhole, made by "pinhole completion fish" from the
# flags each command parses. Install it with:
# pinhole completion fish > ~/.config/fish/completions/pinhole.fish
complete -c pinhole -f
complete -c pinhole -n __fish_use_subcommand -l version -d 'print the version'
complete -c pinhole -n __fish_use_subcommand -l help -s h -d 'print the help'
`)
	for _, c := range completionCommands() {
		fmt.Fprintf(&b, "complete -c pinhole -n __fish_use_subcommand -a %s -d %s\n", c.name, fishQuote(c.summary))
	}
	for _, c := range completionCommands() {
		cond := fishQuote("__fish_seen_subcommand_from " + c.name)
		for _, f := range c.flags {
			opt := "-l " + f.name
			if len(f.name) == 1 {
				opt = "-s " + f.name
			}
			if f.takesValue {
				opt += " -r -F"
			}
			fmt.Fprintf(&b, "complete -c pinhole -n %s %s -d %s\n", cond, opt, fishQuote(shortUsage(f.usage)))
		}
		switch {
		case c.args == "hosts":
			fmt.Fprintf(&b, "complete -c pinhole -n %s -a '(command -q pinhole; and pinhole completion hosts 2>/dev/null)'\n", cond)
		case c.args == "commands":
			fmt.Fprintf(&b, "complete -c pinhole -n %s -a %s\n", cond, fishQuote(commandList()))
		case c.words != nil:
			fmt.Fprintf(&b, "complete -c pinhole -n %s -a %s\n", cond, fishQuote(strings.Join(c.words, " ")))
		}
	}
	return b.String()
}

// fishQuote quotes s for fish, in single quotes.
func fishQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// shortUsage is the start of a flag's usage, for a completion menu.
func shortUsage(s string) string {
	if i := strings.IndexAny(s, ";"); i > 0 {
		s = s[:i]
	}
	s = strings.TrimSpace(s)
	if len(s) > 70 {
		s = s[:67] + "..."
	}
	return s
}
