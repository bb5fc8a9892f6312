package cli

import (
	"context"
	"flag"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/pinhole-dev/pinhole/internal/tunnel"
)

// runVersion is "pinhole version" (and "pinhole --version").
func runVersion(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("pinhole version", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: pinhole version\n       pinhole --version\n\nPrints pinhole's version, the commit it was built from (with \"modified\" when the tree had changes not committed) and the Go version and platform it was built with, as runtime/debug.ReadBuildInfo has them.\n\n")
		fs.PrintDefaults()
	}
	if err := e.parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "pinhole version: unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}
	info, _ := debug.ReadBuildInfo()
	fmt.Fprint(e.stdout, versionText(info))
	return nil
}

// versionText is what pinhole version prints, from the binary's build
// info (nil: none).
func versionText(info *debug.BuildInfo) string {
	var b strings.Builder
	fmt.Fprintf(&b, "pinhole %s\n", tunnel.Version)
	goVersion := runtime.Version()
	commit, modified, when := "", false, ""
	if info != nil {
		if info.GoVersion != "" {
			goVersion = info.GoVersion
		}
		if v := info.Main.Version; v != "" && v != "(devel)" {
			fmt.Fprintf(&b, "module %s %s\n", info.Main.Path, v)
		}
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				commit = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			case "vcs.time":
				when = s.Value
			}
		}
	}
	switch {
	case commit == "":
		b.WriteString("commit unknown (built without version control information)\n")
	default:
		b.WriteString("commit " + commit)
		if when != "" {
			b.WriteString(" of " + when)
		}
		if modified {
			b.WriteString(", modified (changes not committed)")
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "%s %s/%s\n", goVersion, runtime.GOOS, runtime.GOARCH)
	return b.String()
}
