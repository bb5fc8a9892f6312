package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Main is the pinhole-bench command: it parses args (without the program
// name), runs the benchmark, prints the table to stdout and writes it to
// the -out file. It returns the exit code: 0, 1 when the run could not be
// made, 2 for bad usage.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("pinhole-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	rounds := fs.Int("rounds", 3, "rounds; each figure is the median of them")
	duration := fs.Duration("duration", 3*time.Second, "length of each timed measurement (iperf3 takes whole seconds)")
	out := fs.String("out", "bench-results.md", "file to write the table to as well (\"\" for none)")
	only := fs.String("only", "", "comma-separated setups to run (default all): "+names(setups(), func(s setup) string { return s.name }))
	skip := fs.String("skip", "", "comma-separated measurements to leave out: "+names(measurements(Config{}), func(m measurement) string { return m.name }))
	kernel := fs.Bool("kernel", false, "instead: pinhole forward --kernel beside routing with no forwarder and pinhole forward in user space, across network namespaces (needs root; see BENCHMARKS.md)")
	netem := fs.Bool("netem", false, "instead: OpenSSH and pinhole through 25 ms each way and 1 % loss in network namespaces (needs root; see BENCHMARKS.md)")
	pinhole := fs.String("pinhole", "", "pinhole binary to measure (default: go build ./cmd/pinhole from the current tree)")
	soak := fs.Duration("soak", 0, "instead of the table: soak one pinhole tunnel for this long (such as 10m) and check that memory, goroutines and fds stop growing")
	soakWarmup := fs.Duration("soak-warmup", 0, "of -soak: the warm-up, after which growth is measured (default a fifth of -soak, but at least 1m or half of it)")
	soakConns := fs.Int("soak-conns", 200, "of -soak: connections churning at once")
	soakBulk := fs.Float64("soak-bulk-rate", 25, "of -soak: the bulk stream's rate limit, MB/s (kept low: a shared machine's cores are for others too)")
	soakUDP := fs.Int("soak-udp-rate", 200, "of -soak: datagrams per second on the UDP flow")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: go run ./cmd/pinhole-bench [flags]\n\n"+
			"Runs pinhole and OpenSSH side by side on loopback and prints one markdown table,\n"+
			"each figure with its ratio to OpenSSH's. Progress goes to stderr. See BENCHMARKS.md.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "pinhole-bench: unexpected argument %q; run 'pinhole-bench -h' for the flags\n", fs.Arg(0))
		return 2
	}
	if *soak > 0 {
		outSet := false
		fs.Visit(func(f *flag.Flag) { outSet = outSet || f.Name == "out" })
		if !outSet {
			*out = "" // the table's default file is not for the soak's report
		}
		return mainSoak(ctx, SoakConfig{
			Duration: *soak,
			Warmup:   *soakWarmup,
			Conns:    *soakConns,
			BulkRate: *soakBulk * 1e6,
			UDPRate:  *soakUDP,
			Pinhole:  *pinhole,
			Command:  commandLine(args),
			Progress: stderr,
		}, *out, stdout, stderr)
	}
	cfg := Config{
		Rounds:   *rounds,
		Duration: *duration,
		Only:     splitList(*only),
		Skip:     splitList(*skip),
		Pinhole:  *pinhole,
		Command:  commandLine(args),
		Progress: stderr,
	}
	if *netem {
		return mainLab(ctx, RunNetem, cfg, *out, stdout, stderr)
	}
	if *kernel {
		return mainLab(ctx, RunKernel, cfg, *out, stdout, stderr)
	}
	if _, _, err := choose(cfg); err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	res, err := Run(ctx, cfg)
	if res == nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	table := res.Markdown()
	fmt.Fprint(stdout, "\n"+table)
	if *out != "" {
		if werr := os.WriteFile(*out, []byte(table), 0o644); werr != nil {
			fmt.Fprintf(stderr, "pinhole-bench: %v\n", werr)
			return 1
		}
		fmt.Fprintf(stderr, "pinhole-bench: the table is in %s\n", *out)
	}
	if err != nil {
		fmt.Fprintf(stderr, "pinhole-bench: stopped early (%v): the table holds what was measured until then\n", err)
		return 1
	}
	return 0
}

// mainSoak is Main for -soak: 0 when the soak passed, 1 when it failed or
// could not run, 2 for bad usage.
func mainSoak(ctx context.Context, cfg SoakConfig, out string, stdout, stderr io.Writer) int {
	if cfg.Conns < 1 || cfg.BulkRate <= 0 || cfg.UDPRate < 1 {
		fmt.Fprintln(stderr, "pinhole-bench: -soak-conns, -soak-bulk-rate and -soak-udp-rate must be positive")
		return 2
	}
	if err := cfg.withDefaults().check(); err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	r, err := RunSoak(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "pinhole-bench: soak: %v\n", err)
		return 1
	}
	report := r.Markdown()
	fmt.Fprint(stdout, "\n"+report)
	if out != "" {
		if err := os.WriteFile(out, []byte(report), 0o644); err != nil {
			fmt.Fprintf(stderr, "pinhole-bench: %v\n", err)
			return 1
		}
		fmt.Fprintf(stderr, "pinhole-bench: the report is in %s\n", out)
	}
	if !r.Pass() {
		return 1
	}
	return 0
}

func names[T any](xs []T, name func(T) string) string {
	var out []string
	for _, x := range xs {
		out = append(out, name(x))
	}
	return strings.Join(out, ",")
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// commandLine is how the report shows the command that made it.
func commandLine(args []string) string {
	parts := []string{"go run ./cmd/pinhole-bench"}
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t'\"$\\") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

// mainLab is Main for -netem and -kernel: the table run makes.
func mainLab(ctx context.Context, run func(context.Context, Config) (string, error), cfg Config, out string, stdout, stderr io.Writer) int {
	table, err := run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	fmt.Fprint(stdout, "\n"+table)
	if out != "" {
		if err := os.WriteFile(out, []byte(table), 0o644); err != nil {
			fmt.Fprintf(stderr, "pinhole-bench: %v\n", err)
			return 1
		}
		fmt.Fprintf(stderr, "pinhole-bench: the table is in %s\n", out)
	}
	return 0
}
