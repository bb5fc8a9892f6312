package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// machine returns the lines of the report's header that say what ran
// where: when, the command, the machine, and the versions of everything
// measured.
func machine(ctx context.Context, cfg Config, built bool) []string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		if v, ok := procField(b, "model name"); ok {
			cpu = v
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if v, ok := procField(b, "MemTotal"); ok {
			if kb, err := strconv.ParseFloat(strings.TrimSuffix(v, " kB"), 64); err == nil {
				mem = fmt.Sprintf(", %.1f GiB", kb/(1<<20))
			}
		}
	}
	kernel := "unknown"
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = strings.TrimSpace(string(b))
	}
	goVersion, pinhole := goAndPinhole(ctx, cfg.Pinhole, built)
	return []string{
		fmt.Sprintf("Command: `%s`, %s.", cfg.Command, time.Now().UTC().Format("2006-01-02 15:04 MST")),
		fmt.Sprintf("Machine: %s, %d cores%s, kernel %s, everything on loopback.", cpu, runtime.NumCPU(), mem, kernel),
		fmt.Sprintf("Versions: %s; %s; %s; %s; %s.", goVersion,
			orUnknown(firstLine(ctx, "ssh", "-V")),
			orUnknown(firstLine(ctx, "iperf3", "--version")),
			orUnknown(firstLine(ctx, "socat", "-V", "|socat version")),
			pinhole),
	}
}

// goAndPinhole returns the Go version and which pinhole is measured.
func goAndPinhole(ctx context.Context, bin string, built bool) (goVersion, pinhole string) {
	goVersion = firstLine(ctx, "go", "env", "GOVERSION")
	if goVersion == "" {
		goVersion = runtime.Version()
	}
	pinhole = "pinhole " + bin
	if built {
		pinhole = "pinhole built from the tree at " + orUnknown(firstLine(ctx, "git", "describe", "--always", "--dirty"))
	}
	return goVersion, pinhole
}

// procField returns the value of the first "key: value" line of a /proc
// file such as cpuinfo or meminfo.
func procField(b []byte, key string) (string, bool) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

// firstLine runs a program and returns the first line it writes (stdout
// and stderr: ssh -V writes to stderr); with a last argument "|prefix",
// the first line that starts with prefix instead. "" if it fails.
func firstLine(ctx context.Context, name string, args ...string) string {
	prefix := ""
	if n := len(args); n > 0 && strings.HasPrefix(args[n-1], "|") {
		prefix, args = args[n-1][1:], args[:n-1]
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil && len(out) == 0 {
		return ""
	}
	for line := range strings.Lines(string(out)) {
		if line = strings.TrimSpace(line); line != "" && strings.HasPrefix(line, prefix) {
			return line
		}
	}
	return ""
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// base is the setup m's ratios are to.
func (m measurement) base() string {
	if m.ratioTo == "" {
		return baseline
	}
	return m.ratioTo
}

// figure returns the median of column i of m's samples for setup name over
// the rounds that worked, how many did, and how many ran.
func (r *Results) figure(name string, m measurement, i int) (v float64, good, total int) {
	var vals []float64
	samples := r.samples[name][m.name]
	for _, s := range samples {
		if s.err == nil {
			vals = append(vals, s.values[i])
		}
	}
	return median(vals), len(vals), len(samples)
}

// cell is the text of one table cell: the median, its ratio to the
// baseline's, and a mark when some rounds failed.
func (r *Results) cell(s setup, m measurement, i int) string {
	if !m.applies(s) {
		return "—"
	}
	c := m.columns[i]
	v, good, total := r.figure(s.name, m, i)
	switch {
	case total == 0:
		return "—"
	case good == 0:
		return "failed"
	}
	text := c.format(v)
	if base := m.base(); c.ratio && s.name != base {
		if base, n, _ := r.figure(base, m, i); n > 0 {
			if q, ok := ratio(v, base); ok {
				text += fmt.Sprintf(" (%.2f×)", q)
			}
		}
	}
	if good < total {
		text += fmt.Sprintf(" [%d of %d]", good, total)
	}
	return text
}

// Markdown returns the report: the header, one table with a row per setup
// and a column per figure, and notes on what failed.
func (r *Results) Markdown() string {
	var b strings.Builder
	b.WriteString("## pinhole-bench results\n\n")
	for _, line := range r.header {
		b.WriteString(line + "\n")
	}
	haveBaseline, haveDirect, httpFigures := false, false, false
	for _, s := range r.setups {
		haveBaseline = haveBaseline || s.name == baseline
		haveDirect = haveDirect || s.name == "direct"
	}
	for _, m := range r.measurements {
		httpFigures = httpFigures || m.ratioTo == "direct"
	}
	if r.cfg.Rounds == 1 {
		b.WriteString("\nEach figure is from 1 round")
	} else {
		fmt.Fprintf(&b, "\nEach figure is the median of %d rounds", r.cfg.Rounds)
	}
	if haveBaseline {
		b.WriteString(", with its ratio to OpenSSH ssh → OpenSSH sshd in the same run in brackets (for µs and kB lower is better)")
	}
	if haveDirect && httpFigures {
		b.WriteString(", the HTTP figures with their ratio to direct's in the same run")
	}
	b.WriteString("; [2 of 3] marks a figure from fewer rounds than ran, the others having failed (see the notes).\n\n")

	b.WriteString("| setup |")
	align := "| --- |"
	for _, m := range r.measurements {
		for _, c := range m.columns {
			b.WriteString(" " + c.title + " |")
			align += " ---: |"
		}
	}
	b.WriteString("\n" + align + "\n")
	for _, s := range r.setups {
		b.WriteString("| " + s.title + " |")
		for _, m := range r.measurements {
			for i := range m.columns {
				b.WriteString(" " + r.cell(s, m, i) + " |")
			}
		}
		b.WriteString("\n")
	}

	b.WriteString("\n" + columnsNote(r.cfg, r.measurements))
	if notes := r.notes(); len(notes) > 0 {
		b.WriteString("\nNotes:\n\n")
		for _, n := range notes {
			b.WriteString("- " + n + "\n")
		}
	}
	return b.String()
}

// columnsNote says in one paragraph how each figure was measured.
func columnsNote(cfg Config, ms []measurement) string {
	what := map[string]string{
		"tput1":    fmt.Sprintf("Gbit/s: iperf3 for %d s, one TCP stream", iperfSeconds(cfg.Duration)),
		"tput4":    fmt.Sprintf("4 streams: iperf3 -P 4 for %d s", iperfSeconds(cfg.Duration)),
		"rr":       fmt.Sprintf("req/resp: 64 bytes and their echo on one connection, one after the other, for %v", cfg.Duration),
		"conns":    fmt.Sprintf("new conns: 8 workers each connecting, echoing 64 bytes and closing, for %v", cfg.Duration),
		"memory":   fmt.Sprintf("kB per idle conn: growth of VmRSS of every forwarder process (both ends; for sshd, its processes for the connection) with %d connections held, each proven by one echoed byte, on fresh processes", cfg.IdleConns),
		"udp":      fmt.Sprintf("UDP: 64-byte request/response over one flow through -L .../udp for %v (OpenSSH carries no UDP), and the loss of %d datagrams of 64–1400 bytes over 8 flows, at most 64 in flight per flow", cfg.Duration, cfg.UDPDatagrams),
		"http1":    fmt.Sprintf("HTTP: GETs of a %d-byte page from a Go net/http service (in the echo child), one after the other on each keep-alive connection for %v, by 1 and by 64 clients each with its own connection, to http(s)://%s.%s:PORT dialed at 127.0.0.1; directly, or through pinhole server --domain %s and a -R %s:80 of pinhole connect (ssh-http: of OpenSSH ssh) (https: TLS to the server with the self-signed certificate, pinned)", len(httpBody), cfg.Duration, benchName, benchDomain, benchDomain, benchName),
		"udpburst": fmt.Sprintf("UDP unpaced: the same %d datagrams with no flow control, each of the 8 flows sending 4 a millisecond whatever comes back", cfg.UDPDatagrams),
		"conns10k": fmt.Sprintf("held: %d connections opened through the forward and held at once, each proven by one echoed byte when opened, and none closed by the forwarder once all were open; once per run, for OpenSSH and pinhole ↔ pinhole (raw, tls://, wss://)", cfg.HoldConns),
	}
	what["rr-under-load"] = fmt.Sprintf("under load: the req/resp (TCP), or the UDP one through -L .../udp, for %v on an idle tunnel, then for %v again while one iperf3 stream runs through another forward of the same tunnel (started %v before), and that stream's Gbit/s over its whole run", cfg.Duration, cfg.Duration, bulkWarmup)
	what["udp-under-load"] = what["rr-under-load"]
	what["http64"] = what["http1"]
	what["paced64"] = fmt.Sprintf("HTTP at %d/s: the same by 64 clients sending on a schedule, %d requests a second in all, each timed from when it was due", pacedRate, pacedRate)
	var parts []string
	for _, m := range ms {
		if w, ok := what[m.name]; ok && !slices.Contains(parts, w) {
			parts = append(parts, w)
		}
	}
	return "How: " + strings.Join(parts, ". ") + ".\n"
}

// notes lists every failure and partial failure, one line each.
func (r *Results) notes() []string {
	var out []string
	for _, s := range r.setups {
		for _, m := range r.measurements {
			for round, sm := range r.samples[s.name][m.name] {
				text := sm.note
				if sm.err != nil {
					text = "failed: " + sm.err.Error()
				}
				if text == "" {
					continue
				}
				where := fmt.Sprintf("round %d", round+1)
				if m.once {
					where = "once"
				}
				out = append(out, fmt.Sprintf("%s, %s, %s: %s", s.title, m.name, where, oneLine(text)))
			}
		}
	}
	return out
}

// oneLine shortens a message that may hold a program's output to its
// first line and at most 300 bytes.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i] + " …"
	}
	if len(s) > 300 {
		s = strings.ToValidUTF8(s[:300], "") + " …"
	}
	return strings.ReplaceAll(s, "|", "\\|")
}
