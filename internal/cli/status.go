package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/pinhole-dev/pinhole/internal/control"
	"github.com/pinhole-dev/pinhole/internal/observe"
)

// pinhole status, reload and stop: clients of the control socket that
// server, connect and up serve (watch.go, internal/control).

func runStatus(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("pinhole status", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	socket := fs.String("socket", "", "control socket `PATH` of one process (default: every pinhole of yours, by the sockets in the control directory)")
	asJSON := fs.Bool("json", false, "print each process's snapshot as one line of JSON (its shape: docs/watching.md)")
	watch := fs.Bool("watch", false, "redraw every second, in place, until interrupted (with --json: a line a process a second)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: pinhole status [--json] [--watch] [--socket PATH]\n\nShows what the running pinhole server, connect and up processes of yours do: their sessions or tunnels,\nforwards with the address bound, state, since when, bytes and rates, and the latest refusals.\n\n")
		fs.PrintDefaults()
	}
	if err := e.parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "pinhole status: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return errUsage
	}
	paths, err := e.controlSockets(*socket)
	if err != nil {
		return err
	}
	show := func(snaps []shown) error {
		if *asJSON {
			return printJSON(e.stdout, snaps)
		}
		var b strings.Builder
		for i, s := range snaps {
			if i > 0 {
				b.WriteString("\n")
			}
			printSnapshot(&b, s)
		}
		if len(snaps) == 0 {
			b.WriteString("no pinhole is running for you now\n")
		}
		if *watch {
			// In place: home, each line cleared to its end, and the
			// rest of the screen cleared after the last.
			out := "\x1b[H" + strings.ReplaceAll(b.String(), "\n", "\x1b[K\n") + "\x1b[J"
			_, err := io.WriteString(e.stdout, out)
			return err
		}
		_, err := io.WriteString(e.stdout, b.String())
		return err
	}
	if !*watch {
		snaps, err := fetchAll(ctx, paths, *socket != "", true)
		if err != nil {
			return err
		}
		return show(snaps)
	}
	if !*asJSON {
		io.WriteString(e.stdout, "\x1b[H\x1b[2J")
	}
	t := time.NewTicker(control.WatchEvery)
	defer t.Stop()
	for {
		if *socket == "" { // processes come and go
			if paths, err = e.controlSockets(""); err != nil {
				paths = nil
			}
		}
		snaps, err := fetchAll(ctx, paths, *socket != "", false)
		if err != nil && ctx.Err() == nil {
			return err
		}
		if err := show(snaps); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// shown is one process's snapshot and where it came from.
type shown struct {
	path string
	observe.Snapshot
}

// controlSockets are the sockets status talks to: path, or every one in
// the control directory.
func (e *env) controlSockets(path string) ([]string, error) {
	if path != "" {
		return []string{path}, nil
	}
	dir, err := controlDir(e)
	if err != nil {
		return nil, err
	}
	return control.Sockets(dir), nil
}

// fetchAll asks each socket for its snapshot. A socket nobody answers on
// is skipped (a process that was killed leaves its file), unless it was
// asked for by name. With rates, a snapshot without a baseline is asked
// for again a second later, so its rates are over that second.
func fetchAll(ctx context.Context, paths []string, named, rates bool) ([]shown, error) {
	var out []shown
	again := false
	for _, p := range paths {
		s, err := fetchOne(ctx, p)
		switch {
		case errors.Is(err, control.ErrNoProcess) && !named:
			continue
		case err != nil:
			return nil, fmt.Errorf("%w (is the process running? its --control flag says where its socket is)", err)
		}
		again = again || s.RateSeconds == 0
		out = append(out, shown{p, s})
	}
	if !rates || !again {
		return out, nil
	}
	select {
	case <-ctx.Done():
		return out, nil
	case <-time.After(control.WatchEvery):
	}
	for i := range out {
		if out[i].RateSeconds != 0 {
			continue
		}
		if s, err := fetchOne(ctx, out[i].path); err == nil {
			out[i].Snapshot = s
		}
	}
	return out, nil
}

func fetchOne(ctx context.Context, path string) (observe.Snapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return control.Client{Path: path}.Status(ctx)
}

func printJSON(w io.Writer, snaps []shown) error {
	for _, s := range snaps {
		b, err := json.Marshal(s.Snapshot)
		if err != nil {
			return err
		}
		if _, err := w.Write(append(escapeC1(b), '\n')); err != nil {
			return err
		}
	}
	return nil
}

// escapeC1 is the JSON b with DEL and the C1 controls (U+0080 to
// U+009F; U+009B starts a sequence on some terminals) written as \u
// escapes, as encoding/json writes the other controls already: a line of
// --json on a terminal moves nothing. b is valid UTF-8, as json.Marshal
// makes it, so 0xc2 only ever starts a character.
func escapeC1(b []byte) []byte {
	var out []byte
	for i := 0; i < len(b); i++ {
		switch {
		case b[i] == 0x7f:
			out = fmt.Appendf(out, `\u007f`)
		case b[i] == 0xc2 && i+1 < len(b) && b[i+1] >= 0x80 && b[i+1] <= 0x9f:
			out = fmt.Appendf(out, `\u%04x`, b[i+1])
			i++
		default:
			out = append(out, b[i])
		}
	}
	return out
}

// printSnapshot writes s as a person reads it: a line about the process,
// a table of its sessions or tunnels and their forwards, and the latest
// refusals.
func printSnapshot(w io.Writer, s shown) {
	name := "pinhole " + map[string]string{"server": "server", "client": "client"}[s.Role]
	fmt.Fprintf(w, "%s %s, pid %d, up %s  (%s)\n", name, printable(s.Version), s.PID, age(s.Started, s.Time), printable(filepath.Base(s.path)))
	fmt.Fprintf(w, "total: %s to targets, %s back, %d streams open, %d in all, %d refused; now %s/s to, %s/s back\n\n",
		size(s.Totals.BytesToTarget), size(s.Totals.BytesFromTarget), s.Totals.StreamsOpen, s.Totals.StreamsTotal, s.Totals.StreamsRefused,
		size(int64(s.Totals.RateToTarget)), size(int64(s.Totals.RateFromTarget)))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(first, addr, state string, since time.Time, c observe.Counters, last string) {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%d\t%s\t%s\t%s/s\t%s/s\t%s\n", printable(first), printable(addr), printable(state), age(since, s.Time),
			c.StreamsOpen, c.StreamsTotal, c.StreamsRefused, size(c.BytesToTarget), size(c.BytesFromTarget),
			size(int64(c.RateToTarget)), size(int64(c.RateFromTarget)), clip(last, 60))
	}
	if s.Role == "server" {
		fmt.Fprintln(tw, "SESSION / LISTENER\tSOURCE / ADDRESS\tSTATE\tSINCE\tSTREAMS\tREFUSED\tTO TARGET\tFROM TARGET\tRATE TO\tRATE FROM\tUSER")
		for _, ss := range s.Sessions {
			who := ss.Key
			if ss.Comment != "" {
				who += " " + ss.Comment
			}
			row(who, ss.Source, ss.State, ss.Since, ss.Counters, ss.User)
			for _, l := range ss.Listeners {
				addr := l.Addr
				if l.URL != "" {
					addr = l.URL
				}
				fmt.Fprintf(tw, "  -R %s/%s\t%s\tlistening\t%s\t\t\t\t\t\t\t\n", clip(l.Requested, 60), printable(l.Proto), printable(addr), age(l.Since, s.Time))
			}
		}
		if len(s.Sessions) == 0 {
			fmt.Fprintln(tw, "(no sessions)\t\t\t\t\t\t\t\t\t\t")
		}
	} else {
		fmt.Fprintln(tw, "TUNNEL / FORWARD\tSERVER / ADDRESS\tSTATE\tSINCE\tSTREAMS\tREFUSED\tTO TARGET\tFROM TARGET\tRATE TO\tRATE FROM\tLAST ERROR")
		for _, t := range s.Tunnels {
			row(t.Name, t.Server, t.State, t.Since, t.Counters, t.LastError)
			for _, f := range t.Forwards {
				addr := f.Addr
				if f.URL != "" {
					addr = f.URL
				}
				if addr == "" {
					addr = "-"
				}
				row("  "+f.Forward, addr, f.State, f.Since, f.Counters, f.LastError)
			}
		}
	}
	tw.Flush()
	if len(s.Events) == 0 {
		return
	}
	fmt.Fprintf(w, "\nrecent refusals and failed logins (%s):\n", countsLine(s.Counts))
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	from := max(0, len(s.Events)-8)
	for _, ev := range s.Events[from:] {
		rep := ""
		if ev.Repeats > 0 {
			rep = fmt.Sprintf(" (×%d)", ev.Repeats+1)
		}
		fmt.Fprintf(tw, "  %s ago\t%s %s%s\t%s\t%s\t%s\t%s\n", age(ev.Time, s.Time), printable(ev.Kind), printable(string(ev.Reason)), rep, clip(ev.Tunnel, 24), clip(ev.Forward, 60), printable(ev.Peer), clip(ev.Detail, 60))
	}
	tw.Flush()
}

// countsLine names the reasons counted so far: "permitopen 3, unknown-key 1".
func countsLine(c map[observe.Reason]uint64) string {
	var parts []string
	for _, r := range observe.Reasons() {
		if n := c[r]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", r, n))
		}
	}
	return strings.Join(parts, ", ")
}

// age is how long from t to now, in two units at most: 45s, 3m02s,
// 2h03m, 3d04h; "-" for a zero t.
func age(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := max(now.Sub(t), 0).Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
}

// size is n bytes for people: 512 B, 64.0 KiB, 1.2 MiB.
func size(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	f, i := float64(n)/unit, 0
	for f >= unit && i < 4 {
		f /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", f, "KMGTP"[i])
}

// clip is s printable, shortened to n runes with an ellipsis.
func clip(s string, n int) string {
	s = printable(s)
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// printable is s with every character a terminal would not show as
// itself written as a Go escape (\x1b, \t, \u009b; \xff for a byte that
// is not UTF-8), so that text a peer chose (a user or method name, a
// forward it asked for, a server's refusal) cannot move the cursor, set
// the title or break the table's columns.
func printable(s string) string {
	clean := true
	for _, r := range s {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for len(s) > 0 {
		r, n := utf8.DecodeRuneInString(s)
		switch {
		case r == utf8.RuneError && n == 1:
			fmt.Fprintf(&b, `\x%02x`, s[0])
		case unicode.IsPrint(r):
			b.WriteString(s[:n])
		default:
			q := strconv.QuoteRune(r)
			b.WriteString(q[1 : len(q)-1])
		}
		s = s[n:]
	}
	return b.String()
}

// runReload is pinhole reload: the process's config read again, as
// SIGHUP does.
func runReload(ctx context.Context, e *env, args []string) error {
	return controlCommand(ctx, e, args, "reload", "usage: pinhole reload [--socket PATH]\n\nMakes a running pinhole up (or pinhole server) read its config again, as SIGHUP does, and prints what changed.\n\n", 0,
		func(c control.Client, _ []string) (string, error) { return c.Reload(ctx) })
}

// runStop is pinhole stop NAME: one tunnel of pinhole up drained and
// stopped, as a reload that removed it would.
func runStop(ctx context.Context, e *env, args []string) error {
	return controlCommand(ctx, e, args, "stop", "usage: pinhole stop [--socket PATH] NAME\n\nDrains and stops the tunnel NAME of a running pinhole up, as a reload that removed it from the file would;\nthe other tunnels go on. The next reload (pinhole reload, SIGHUP, saving the file) starts it again.\n\n", 1,
		func(c control.Client, pos []string) (string, error) { return c.Stop(ctx, pos[0]) })
}

// controlCommand is a command that asks one process something through
// its control socket (--socket, or the only one) and prints the answer:
// it takes n arguments.
func controlCommand(ctx context.Context, e *env, args []string, name, usage string, n int, ask func(control.Client, []string) (string, error)) error {
	fs := flag.NewFlagSet("pinhole "+name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	socket := fs.String("socket", "", "control socket `PATH` of the process (default: the only one in the control directory)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usage)
		fs.PrintDefaults()
	}
	pos, err := e.parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != n {
		if n == 0 {
			fmt.Fprintf(e.stderr, "pinhole %s: unexpected argument %q\n", name, pos[0])
		} else {
			fmt.Fprintf(e.stderr, "pinhole %s: want the NAME of one tunnel (pinhole status lists them)\n", name)
		}
		fs.Usage()
		return errUsage
	}
	c, err := e.oneControl(ctx, *socket)
	if err != nil {
		return err
	}
	msg, err := ask(c, pos)
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, msg)
	return nil
}

// oneControl is the control socket at path, or the only live one in the
// control directory.
func (e *env) oneControl(ctx context.Context, path string) (control.Client, error) {
	if path != "" {
		return control.Client{Path: path}, nil
	}
	paths, err := e.controlSockets("")
	if err != nil {
		return control.Client{}, err
	}
	var live []string
	for _, p := range paths {
		if _, err := fetchOne(ctx, p); err == nil {
			live = append(live, p)
		}
	}
	switch len(live) {
	case 1:
		return control.Client{Path: live[0]}, nil
	case 0:
		dir, _ := controlDir(e)
		return control.Client{}, fmt.Errorf("no pinhole of yours is running (no live control socket in %s): start pinhole up, or give --socket PATH", dir)
	}
	return control.Client{}, fmt.Errorf("several pinholes are running: give --socket with one of %s", strings.Join(live, ", "))
}
