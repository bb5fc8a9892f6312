// Package bench is the benchmark command of issue 6: on loopback it runs,
// side by side, direct traffic, a socat relay, OpenSSH's ssh -L through a
// throwaway sshd, pinhole connect → pinhole server (over raw SSH, tls://
// and wss://), OpenSSH ssh → pinhole server, pinhole connect → OpenSSH
// sshd, and HTTP(S) to a name of pinhole server's name router, measures
// each the same way, and prints one markdown table with every figure also
// as a ratio to OpenSSH ↔ OpenSSH's in the same run (the HTTP figures to
// direct's).
//
// It builds pinhole from the tree it sits in, so it measures the code
// beside it, and starts everything it needs itself: sshd (through
// internal/sshtest's LaunchSSHD), pinhole server, iperf3 -s, and in this
// process a UDP echo server, in a child process the TCP echo server and
// the HTTP service. Each setup runs on fresh processes in each round, on
// ports below the ephemeral range picked at random and retried when
// taken. Every measurement has a time limit: a setup that
// fails is a failure in its cells and the notes, never a hung run.
//
// What is measured, per setup and round:
//
//	memory   2,000 idle connections held through the forward, each proven by
//	         one echoed byte: growth of the resident memory (VmRSS in
//	         /proc/PID/status) of every forwarder process, both ends, per
//	         connection. Taken first, on processes that have carried nothing.
//	tput1    iperf3, one TCP stream, Gbit/s
//	tput4    iperf3 -P 4, Gbit/s
//	rr       64-byte request/response on one connection: per second, p50, p99
//	conns    8 workers each connecting, echoing 64 bytes and closing: per second
//	udp      pinhole's -L .../udp: 64-byte request/response on one flow (per
//	         second, p99), and the loss of a burst of 10,000 datagrams of
//	         64–1400 bytes over 8 flows, each with at most 64 in flight
//	udpburst the same burst unpaced: each flow sends 4 datagrams a
//	         millisecond whatever comes back; the percentage lost
//	http1    on direct, http and https (pinhole server --domain, a -R to a
//	http64   name): small GETs to a Go HTTP service by 1 and by 64
//	         keep-alive clients: per second, p50, p99
//
// and once per run, on fresh processes, for pinhole ↔ pinhole (each
// transport) and OpenSSH:
//
//	conns10k 10,000 connections held at once, each proven by one echoed byte
//	         when opened, and none closed by the forwarder once all are open
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pinhole-dev/pinhole/internal/sshtest"
)

// Config says what Run measures. The zero value is the command's defaults.
type Config struct {
	Rounds   int           // rounds whose median is reported; 0 means 3
	Duration time.Duration // of each timed measurement; 0 means 3 s

	Only []string // names of the setups to run; nil means all
	Skip []string // names of the measurements to leave out

	// Pinhole is the pinhole binary to measure. "" means build one with
	// go build from the module in the current directory.
	Pinhole string

	IdleConns    int // held for the memory figure; 0 means 2,000
	HoldConns    int // held by conns10k; 0 means 10,000
	UDPDatagrams int // in the UDP burst; 0 means 10,000

	// Command is the command line the report's header shows.
	Command string

	// Progress gets one line per figure as the run goes; nil means none.
	Progress io.Writer
}

func (c Config) withDefaults() Config {
	if c.Rounds <= 0 {
		c.Rounds = 3
	}
	if c.Duration <= 0 {
		c.Duration = 3 * time.Second
	}
	if c.IdleConns <= 0 {
		c.IdleConns = 2000
	}
	if c.HoldConns <= 0 {
		c.HoldConns = 10000
	}
	if c.UDPDatagrams <= 0 {
		c.UDPDatagrams = 10000
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	return c
}

// column is one column of the table.
type column struct {
	title  string
	format func(float64) string
	ratio  bool // shown with its ratio to the baseline's
}

// measurement is one thing measured on a running setup; it fills one or
// more columns.
type measurement struct {
	name    string // what -skip names it by
	columns []column
	// first: run before anything else on the setup's fresh processes.
	first bool
	// once: run once per run, on fresh processes, not in every round.
	once bool
	// applies says whether the measurement is made on a setup.
	applies func(s setup) bool
	// ratioTo names the setup its ratio columns are to; "" means
	// baseline (OpenSSH).
	ratioTo string
	// limit bounds how long one run of it may take.
	limit func(c Config) time.Duration
	// run measures; a note says what went partly wrong (some
	// connections failed) without making the figure a failure.
	run func(ctx context.Context, c Config, f *forwarding) (values []float64, note string, err error)
}

func fixed(prec int) func(float64) string {
	return func(v float64) string { return fmt.Sprintf("%.*f", prec, v) }
}

func measurements(c Config) []measurement {
	timed := func(c Config) time.Duration { return c.Duration + 30*time.Second }
	tcp := func(s setup) bool { return !s.onlyHTTP }
	return []measurement{
		{
			name:    "tput1",
			columns: []column{{"1 stream Gbit/s", fixed(2), true}},
			applies: tcp, limit: timed,
			run: func(ctx context.Context, c Config, f *forwarding) ([]float64, string, error) {
				g, err := runIperf(ctx, f.iperfPort, c.Duration, 1)
				return []float64{g}, "", err
			},
		},
		{
			name:    "tput4",
			columns: []column{{"4 streams Gbit/s", fixed(2), true}},
			applies: tcp, limit: timed,
			run: func(ctx context.Context, c Config, f *forwarding) ([]float64, string, error) {
				g, err := runIperf(ctx, f.iperfPort, c.Duration, 4)
				return []float64{g}, "", err
			},
		},
		{
			name: "rr",
			columns: []column{
				{"req/resp per s", fixed(0), true},
				{"p50 µs", fixed(0), true},
				{"p99 µs", fixed(0), true},
			},
			applies: tcp, limit: timed,
			run: func(ctx context.Context, c Config, f *forwarding) ([]float64, string, error) {
				return tcpRequestResponse(ctx, f.echoPort, c.Duration)
			},
		},
		{
			name:    "conns",
			columns: []column{{"new conns per s", fixed(0), true}},
			applies: tcp, limit: timed,
			run: func(ctx context.Context, c Config, f *forwarding) ([]float64, string, error) {
				return newConnections(ctx, f.echoPort, c.Duration, 8)
			},
		},
		{
			name:    "memory",
			columns: []column{{"kB per idle conn", fixed(1), true}},
			first:   true,
			applies: func(s setup) bool { return s.memory },
			limit:   func(Config) time.Duration { return 90 * time.Second },
			run: func(ctx context.Context, c Config, f *forwarding) ([]float64, string, error) {
				return idleMemory(ctx, f.echoPort, c.IdleConns, f.pids)
			},
		},
		{
			name: "udp",
			columns: []column{
				{"UDP req/resp per s", fixed(0), false},
				{"UDP p50 µs", fixed(0), false},
				{"UDP p99 µs", fixed(0), false},
				{"UDP burst loss %", fixed(2), false},
			},
			applies: func(s setup) bool { return s.udp },
			limit:   func(c Config) time.Duration { return c.Duration + 60*time.Second },
			run: func(ctx context.Context, c Config, f *forwarding) ([]float64, string, error) {
				rr, note, err := udpRequestResponse(ctx, f.udpPort, c.Duration)
				if err != nil {
					return nil, note, err
				}
				loss, _, err := udpBurst(ctx, f.udpPort, c.UDPDatagrams, 8, burstPace{window: 64})
				if err != nil {
					return nil, note, err
				}
				return append(rr, loss...), note, nil
			},
		},
		httpMeasurement(1, 0),
		httpMeasurement(64, 0),
		httpMeasurement(64, pacedRate),
		{
			name:    "udpburst",
			columns: []column{{"UDP unpaced burst loss %", fixed(2), false}},
			applies: func(s setup) bool { return s.udp },
			limit:   func(Config) time.Duration { return 60 * time.Second },
			run: func(ctx context.Context, c Config, f *forwarding) ([]float64, string, error) {
				return udpBurst(ctx, f.udpPort, c.UDPDatagrams, 8, burstPace{perMilli: 4})
			},
		},
		{
			name:    "rr-under-load",
			columns: underLoadColumns("TCP"),
			applies: tcp, limit: func(c Config) time.Duration { return 2*c.Duration + 40*time.Second },
			run: func(ctx context.Context, c Config, f *forwarding) ([]float64, string, error) {
				return underLoad(ctx, f.iperfPort, c.Duration, func(ctx context.Context, d time.Duration) ([]float64, string, error) {
					return tcpRequestResponse(ctx, f.echoPort, d)
				})
			},
		},
		{
			name:    "udp-under-load",
			columns: underLoadColumns("UDP"),
			applies: func(s setup) bool { return s.udp && !s.onlyHTTP },
			limit:   func(c Config) time.Duration { return 2*c.Duration + 40*time.Second },
			run: func(ctx context.Context, c Config, f *forwarding) ([]float64, string, error) {
				return underLoad(ctx, f.iperfPort, c.Duration, func(ctx context.Context, d time.Duration) ([]float64, string, error) {
					return udpRequestResponse(ctx, f.udpPort, d)
				})
			},
		},
		{
			name:    "conns10k",
			columns: []column{{fmt.Sprintf("held of %d", c.HoldConns), fixed(0), false}},
			once:    true,
			applies: func(s setup) bool { return s.holds },
			limit:   func(Config) time.Duration { return 3 * time.Minute },
			run: func(ctx context.Context, c Config, f *forwarding) ([]float64, string, error) {
				return holdMany(ctx, f.echoPort, c.HoldConns)
			},
		},
	}
}

// httpMeasurement is http1, http64 or paced64: GETs by that many
// keep-alive clients, each as soon as the one before is answered, or
// with a rate, at that many a second in all (httpLoad); on the setups
// with http, its ratios to direct.
func httpMeasurement(clients int, rate float64) measurement {
	name, who := fmt.Sprintf("http%d", clients), fmt.Sprintf("HTTP %d clients", clients)
	if clients == 1 {
		who = "HTTP 1 client"
	}
	if rate > 0 {
		name, who = fmt.Sprintf("paced%d", clients), fmt.Sprintf("HTTP %d clients at %.0f/s", clients, rate)
	}
	return measurement{
		name: name,
		columns: []column{
			{who + " req/s", fixed(0), true},
			{who + " p50 µs", fixed(0), true},
			{who + " p99 µs", fixed(0), true},
		},
		applies: func(s setup) bool { return s.http },
		ratioTo: "direct",
		limit:   func(c Config) time.Duration { return c.Duration + 30*time.Second },
		run: func(ctx context.Context, c Config, f *forwarding) ([]float64, string, error) {
			return httpLoad(ctx, f.http, c.Duration, clients, rate)
		},
	}
}

// pacedRate is paced64's requests per second, in all: about half of what
// 64 clients got through a name at most on the 2-core machine of
// BENCHMARKS.md, so that its latency is of a loaded tunnel, not of a
// queue that grows.
const pacedRate = 2000

// sample is the outcome of one measurement in one round.
type sample struct {
	values []float64
	note   string
	err    error
}

// Results holds every sample of a run, for the report.
type Results struct {
	cfg          Config
	setups       []setup
	measurements []measurement
	samples      map[string]map[string][]sample // setup, measurement → rounds
	startFailed  map[string][]error             // setup → failures to start
	header       []string
}

func (r *Results) add(s setup, m measurement, sm sample) {
	if r.samples[s.name] == nil {
		r.samples[s.name] = make(map[string][]sample)
	}
	r.samples[s.name][m.name] = append(r.samples[s.name][m.name], sm)
}

// selectNames returns the items of all whose name is in only (all of them
// for an empty only), and an error naming what is unknown.
func selectNames[T any](kind string, all []T, name func(T) string, only []string) ([]T, error) {
	var names []string
	for _, x := range all {
		names = append(names, name(x))
	}
	for _, n := range only {
		if !slices.Contains(names, n) {
			return nil, fmt.Errorf("bench: no %s named %q; the %ss are %s", kind, n, kind, strings.Join(names, ", "))
		}
	}
	if len(only) == 0 {
		return all, nil
	}
	var out []T
	for _, x := range all {
		if slices.Contains(only, name(x)) {
			out = append(out, x)
		}
	}
	return out, nil
}

// choose returns the setups and measurements cfg selects.
func choose(cfg Config) ([]setup, []measurement, error) {
	ss, err := selectNames("setup", setups(), func(s setup) string { return s.name }, cfg.Only)
	if err != nil {
		return nil, nil, err
	}
	all := measurements(cfg)
	if _, err := selectNames("measurement", all, func(m measurement) string { return m.name }, cfg.Skip); err != nil {
		return nil, nil, err
	}
	ms := slices.DeleteFunc(all, func(m measurement) bool { return slices.Contains(cfg.Skip, m.name) })
	return ss, ms, nil
}

// Run starts the setups cfg selects and measures them, round after round,
// until done or ctx ends. Failures of single setups or measurements are in
// the results, not the error: the error is for a run that cannot start.
func Run(ctx context.Context, cfg Config) (*Results, error) {
	cfg = cfg.withDefaults()
	ss, ms, err := choose(cfg)
	if err != nil {
		return nil, err
	}
	if err := needPrograms(ss); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pinhole-bench-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(dir)

	built := cfg.Pinhole == ""
	if built {
		fmt.Fprintf(cfg.Progress, "building pinhole from this tree\n")
		if cfg.Pinhole, err = buildPinhole(ctx, dir); err != nil {
			return nil, err
		}
	}
	// A socket per held connection here, in the echo child and in each
	// forwarder process (which inherit the limit), and a few more.
	fdNote := ""
	if limit, err := raiseFileLimit(uint64(cfg.HoldConns + 1024)); err != nil || limit < uint64(cfg.HoldConns+100) {
		fdNote = fmt.Sprintf("The open-file limit is %d and could not be raised (%v): conns10k fails for that.", limit, err)
	}
	l, err := newLab(dir, cfg.Pinhole)
	if err != nil {
		return nil, err
	}
	defer l.close()

	r := &Results{
		cfg: cfg, setups: ss, measurements: ms,
		samples:     make(map[string]map[string][]sample),
		startFailed: make(map[string][]error),
		header:      machine(ctx, cfg, built),
	}
	if fdNote != "" {
		r.header = append(r.header, fdNote)
	}
	var perRound, once []measurement
	for _, m := range ms {
		if m.once {
			once = append(once, m)
		} else {
			perRound = append(perRound, m)
		}
	}
	// The memory figure first, on processes that have carried nothing.
	slices.SortStableFunc(perRound, func(a, b measurement) int {
		switch {
		case a.first == b.first:
			return 0
		case a.first:
			return -1
		}
		return 1
	})
	instance := 0
	for round := range cfg.Rounds {
		// Each round starts at another setup, so that slow drift of a
		// noisy machine does not always favour the same one.
		for i := range ss {
			s := ss[(i+round)%len(ss)]
			instance++
			r.measureSetup(ctx, l, filepath.Join(dir, fmt.Sprint(instance)), s, perRound, fmt.Sprintf("round %d/%d", round+1, cfg.Rounds))
			if ctx.Err() != nil {
				return r, ctx.Err()
			}
		}
	}
	for _, s := range ss {
		instance++
		r.measureSetup(ctx, l, filepath.Join(dir, fmt.Sprint(instance)), s, once, "once")
		if ctx.Err() != nil {
			return r, ctx.Err()
		}
	}
	return r, nil
}

// measureSetup starts s on fresh processes, makes the measurements that
// apply to it, and stops it.
func (r *Results) measureSetup(ctx context.Context, l *lab, dir string, s setup, ms []measurement, label string) {
	var applicable []measurement
	for _, m := range ms {
		if m.applies(s) {
			applicable = append(applicable, m)
		}
	}
	if len(applicable) == 0 {
		return
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		r.startFailed[s.name] = append(r.startFailed[s.name], err)
		return
	}
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	began := time.Now()
	f, err := s.start(sctx, l, dir)
	cancel()
	fmt.Fprintf(r.cfg.Progress, "%s  %-34s started [%.1fs]\n", label, s.title, time.Since(began).Seconds())
	if err != nil {
		fmt.Fprintf(r.cfg.Progress, "%s  %-34s failed to start: %v\n", label, s.title, err)
		r.startFailed[s.name] = append(r.startFailed[s.name], err)
		for _, m := range applicable {
			r.add(s, m, sample{err: fmt.Errorf("did not start: %w", err)})
		}
		return
	}
	defer f.Close()
	for _, m := range applicable {
		mctx, cancel := context.WithTimeout(ctx, m.limit(r.cfg))
		began := time.Now()
		values, note, err := m.run(mctx, r.cfg, f)
		took := time.Since(began)
		if err == nil && len(values) != len(m.columns) {
			err = fmt.Errorf("bench: %s gave %d figures for %d columns", m.name, len(values), len(m.columns))
		}
		if err != nil && errors.Is(mctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("gave up after %v: %w", m.limit(r.cfg), err)
		}
		cancel()
		r.add(s, m, sample{values: values, note: note, err: err})
		fmt.Fprintf(r.cfg.Progress, "%s  %-34s %-8s %s [%.1fs]\n", label, s.title, m.name, describe(m, values, note, err), took.Seconds())
		if ctx.Err() != nil {
			return
		}
	}
}

// describe is one progress line's figures.
func describe(m measurement, values []float64, note string, err error) string {
	if err != nil {
		return "failed: " + err.Error()
	}
	var parts []string
	for i, c := range m.columns {
		parts = append(parts, c.format(values[i])+" "+c.title)
	}
	s := strings.Join(parts, ", ")
	if note != "" {
		s += " (" + note + ")"
	}
	return s
}

// needPrograms says which program the selected setups need and lacks.
func needPrograms(ss []setup) error {
	need := []string{"iperf3"}
	for _, s := range ss {
		switch s.name {
		case "socat":
			need = append(need, "socat")
		case baseline, "ssh-pinhole", "pinhole-sshd":
			need = append(need, sshtest.SSHPath, sshtest.SSHDPath)
		case "ssh-http":
			need = append(need, sshtest.SSHPath)
		}
	}
	for _, p := range need {
		if _, err := exec.LookPath(p); err != nil {
			return fmt.Errorf("bench: %s is not installed: install it (Debian: apt-get install iperf3 socat openssh-client openssh-server), or leave out the setups that need it with -only", p)
		}
	}
	return nil
}

// buildPinhole builds ./cmd/pinhole of the module in the current directory
// into dir and returns the binary's path.
func buildPinhole(ctx context.Context, dir string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "list", "-m").Output()
	if err != nil || strings.TrimSpace(string(out)) != "github.com/pinhole-dev/pinhole" {
		return "", fmt.Errorf("bench: run this from the pinhole repository (go list -m says %q, %v), or pass the binary to measure with -pinhole", strings.TrimSpace(string(out)), err)
	}
	bin := filepath.Join(dir, "pinhole")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/pinhole")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("bench: go build ./cmd/pinhole: %v\n%s", err, out)
	}
	return bin, nil
}
