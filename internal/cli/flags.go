package cli

import (
	"flag"
	"strings"
)

// flagInfo is one flag as help, man pages and completions show it.
type flagInfo struct {
	name        string // without dashes
	takesValue  bool   // false for a bool flag
	placeholder string // the value's name in the usage (backquoted), or its type
	usage       string // with the backquotes removed
	def         string // the default as text, "" when it is the zero value
}

// dashed is how pinhole's docs spell a flag: -L, --known-hosts (Go's flag
// package takes one dash or two for either).
func (f flagInfo) dashed() string { return dashed(f.name) }

func dashed(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// flagsOf lists fs's flags in its order (sorted by name).
func flagsOf(fs *flag.FlagSet) []flagInfo {
	var out []flagInfo
	fs.VisitAll(func(f *flag.Flag) {
		placeholder, usage := flag.UnquoteUsage(f)
		fi := flagInfo{name: f.Name, takesValue: true, placeholder: placeholder, usage: usage}
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			fi.takesValue, fi.placeholder = false, ""
		}
		switch f.DefValue {
		case "", "0", "false", "0s":
		default:
			fi.def = f.DefValue
		}
		out = append(out, fi)
	})
	return out
}

// usageText splits what fs.Usage prints into its usage lines (without
// "usage: ") and the description that follows them, PrintDefaults' part
// left out. A subcommand's Usage prints "usage: ..." lines, a blank line,
// the description, a blank line, then fs.PrintDefaults().
func usageText(fs *flag.FlagSet) (synopsis []string, description string) {
	var all, defaults strings.Builder
	out := fs.Output()
	fs.SetOutput(&defaults)
	fs.PrintDefaults()
	fs.SetOutput(&all)
	fs.Usage()
	fs.SetOutput(out)
	text := strings.TrimSuffix(all.String(), defaults.String())
	head, rest, _ := strings.Cut(text, "\n\n")
	for _, line := range strings.Split(head, "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "usage:"))
		if line != "" {
			synopsis = append(synopsis, line)
		}
	}
	return synopsis, strings.TrimSpace(rest)
}
