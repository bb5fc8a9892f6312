package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The soak of issue 12 (pinhole-bench -soak DURATION): one tunnel,
// pinhole connect → pinhole server, carries for the whole duration
//
//	churn  Conns connections through a -L forward to the TCP echo server,
//	       each opened, used for a few echoes checked byte for byte, closed,
//	       and opened again after a pause;
//	bulk   one stream through another -L forward to a sink in this
//	       process, rate-limited to BulkRate, checked by length and CRC-32;
//	udp    one flow through a -L .../udp forward to the UDP echo server,
//	       UDPRate datagrams a second, each checked;
//
// and the resident memory, goroutines and open descriptors of both ends are
// read at the start, after the warm-up and at the end. The soak passes when
// no figure grew by SoakTarget or more from the warm-up to the end and no
// data was lost or wrong.

// SoakTarget is the most a figure may grow from the warm-up to the end, in
// per cent, for the soak to pass.
const SoakTarget = 10.0

// SoakConfig says what RunSoak does. Zero values mean the defaults.
type SoakConfig struct {
	Duration time.Duration // in all, the warm-up included; 0 means 10 minutes
	Warmup   time.Duration // 0 means a fifth of Duration, but at least a minute or half of it

	Conns    int     // churning connections; 0 means 200
	BulkRate float64 // of the bulk stream, bytes per second; 0 means 25 MB/s
	UDPRate  int     // datagrams per second on the UDP flow; 0 means 200

	// Pinhole is the binary to run; "" means build ./cmd/pinhole from the
	// current tree.
	Pinhole string
	// Command is the command line the report's header shows.
	Command string
	// Progress gets a line every ProgressEvery while it runs; nil means none.
	Progress      io.Writer
	ProgressEvery time.Duration // 0 means 30 s
}

func (c SoakConfig) withDefaults() SoakConfig {
	if c.Duration <= 0 {
		c.Duration = 10 * time.Minute
	}
	if c.Warmup <= 0 {
		// Resident memory climbs for the first half minute or so of the
		// churn (a 2-minute trial read the server at 85 MB after 25 s
		// and at 100 MB after 26 s in another run, both near 100 MB at
		// the end): give it a minute, or half of a shorter soak.
		c.Warmup = max(c.Duration/5, min(time.Minute, c.Duration/2))
	}
	if c.Conns <= 0 {
		c.Conns = 200
	}
	if c.BulkRate <= 0 {
		c.BulkRate = 25e6
	}
	if c.UDPRate <= 0 {
		c.UDPRate = 200
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	if c.ProgressEvery <= 0 {
		c.ProgressEvery = 30 * time.Second
	}
	return c
}

func (c SoakConfig) check() error {
	if c.Warmup >= c.Duration {
		return fmt.Errorf("bench: the warm-up (%v) must be shorter than the soak (%v)", c.Warmup, c.Duration)
	}
	if c.Duration < 10*time.Second {
		return fmt.Errorf("bench: a soak of %v is too short to say anything; give at least 10s", c.Duration)
	}
	return nil
}

// soakEnd is one end of the tunnel: a process and its debug server.
type soakEnd struct {
	name  string // pinhole connect, pinhole server
	pid   int
	debug string // host:port of its --debug-addr
}

// RunSoak runs the soak cfg says and returns its report. The error is for
// a soak that could not start or was interrupted; a soak that ran and
// failed its target is a report whose Pass is false.
func RunSoak(ctx context.Context, cfg SoakConfig) (*SoakReport, error) {
	cfg = cfg.withDefaults()
	if err := cfg.check(); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pinhole-soak-")
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
	raiseFileLimit(uint64(4*cfg.Conns + 1024)) // a few sockets per connection in each process; best effort
	l, err := newLab(dir, cfg.Pinhole)
	if err != nil {
		return nil, err
	}
	defer l.close()
	sink, err := newBulkSink()
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer sink.Close()

	f := &forwarding{}
	defer f.Close()
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	ends, err := startSoakTunnel(sctx, l, dir, f, sink.Port())
	cancel()
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(cfg.Progress, "soak: pinhole connect (pid %d) → pinhole server (pid %d) up; %v in all, warm-up %v\n",
		ends[0].pid, ends[1].pid, cfg.Duration, cfg.Warmup)

	// The table's header, but of the versions only Go's and pinhole's.
	header := machine(ctx, Config{Command: cfg.Command, Pinhole: cfg.Pinhole}, built)
	goVersion, pinhole := goAndPinhole(ctx, cfg.Pinhole, built)
	header[len(header)-1] = fmt.Sprintf("Versions: %s; %s.", goVersion, pinhole)
	r := &SoakReport{cfg: cfg, header: header}
	for _, e := range ends {
		r.Ends = append(r.Ends, e.name)
	}
	s := &soak{cfg: cfg, f: f, sink: sink}
	if r.Start, err = s.snapshot(ctx, ends); err != nil {
		return nil, err
	}

	began := time.Now()
	trafficCtx, stopTraffic := context.WithDeadline(ctx, began.Add(cfg.Duration))
	defer stopTraffic()
	var wg sync.WaitGroup
	for i := range cfg.Conns {
		wg.Go(func() { s.churn(trafficCtx, i) })
	}
	wg.Go(func() { s.bulk(trafficCtx, ctx) })
	wg.Go(func() { s.udp(trafficCtx) })
	progressDone := make(chan struct{})
	go func() {
		defer close(progressDone)
		s.progress(trafficCtx, began)
	}()

	// After the warm-up, and at the end, the churn pauses for the reading.
	// CPU is read for the ends and for the benchmark's own processes.
	cpuOf := append(slices.Clone(ends),
		soakEnd{name: "pinhole-bench", pid: os.Getpid()},
		soakEnd{name: "its echo child", pid: l.echo.cmd.Process.Pid})
	for _, e := range cpuOf {
		r.CPUOf = append(r.CPUOf, e.name)
	}
	var warmCPU []cpuTime
	readAt := func(at time.Time, label string) (snapshot, error) {
		if err := sleepCtx(ctx, time.Until(at)); err != nil {
			return snapshot{}, err
		}
		s.gate.Lock()
		defer s.gate.Unlock()
		snap, err := s.settledSnapshot(ctx, ends)
		if label == "warm-up" {
			warmCPU, _ = cpuTimes(cpuOf)
		}
		fmt.Fprintf(cfg.Progress, "soak: %s read at %v: %s\n", label, time.Since(began).Round(time.Second), snap.brief(r.Ends))
		return snap, err
	}
	r.Warm, err = readAt(began.Add(cfg.Warmup), "warm-up")
	if err == nil {
		// the end is read a little before the deadline, with the bulk
		// stream and the UDP flow still going, as after the warm-up
		r.End, err = readAt(began.Add(cfg.Duration-3*time.Second), "end")
	}
	endCPU, _ := cpuTimes(cpuOf)
	stopTraffic()
	wg.Wait()
	<-progressDone
	r.Elapsed = time.Since(began)
	if err != nil {
		return nil, err
	}
	r.CPU = cpuShares(warmCPU, endCPU)
	r.Traffic = s.counts()
	r.judge()
	return r, nil
}

// startSoakTunnel starts pinhole server and pinhole connect with their
// debug servers, -L forwards to the bulk sink (f.iperfPort), the TCP echo
// server (f.echoPort) and the UDP echo server (f.udpPort).
func startSoakTunnel(ctx context.Context, l *lab, dir string, f *forwarding, sinkPort int) ([]soakEnd, error) {
	debug := []string{"--debug-addr", "127.0.0.1:0"}
	server, addr, knownHosts, err := l.startPinholeServer(ctx, dir, f, debug...)
	if err != nil {
		return nil, err
	}
	client, err := l.startPinholeConnect(ctx, dir, f, pinholeDest{addr: addr, user: "bench", knownHosts: knownHosts}, sinkPort, true, debug...)
	if err != nil {
		return nil, err
	}
	var ends []soakEnd
	for _, e := range []struct {
		name string
		p    *proc
	}{{"pinhole connect", client}, {"pinhole server", server}} {
		a, err := debugAddrIn(e.p.Output())
		if err != nil {
			return nil, fmt.Errorf("bench: %s: %w", e.name, err)
		}
		ends = append(ends, soakEnd{name: e.name, pid: e.p.Pid(), debug: a})
	}
	return ends, nil
}

var debugLine = regexp.MustCompile(`debug: net/http/pprof on http://([^/\s]+)/debug/pprof/`)

// debugAddrIn finds the address that pinhole's --debug-addr line names in
// a program's output.
func debugAddrIn(out string) (string, error) {
	m := debugLine.FindStringSubmatch(out)
	if m == nil {
		return "", errors.New("no --debug-addr line in its output (is the binary older than --debug-addr?)")
	}
	return m[1], nil
}

// soak is a running soak's traffic and counters.
type soak struct {
	cfg  SoakConfig
	f    *forwarding
	sink *bulkSink

	// gate: each churn connection holds it for reading; a reading of the
	// figures holds it for writing, which waits for the connections open
	// and keeps new ones from opening.
	gate sync.RWMutex

	bulkSent atomic.Int64 // bytes the bulk stream sent so far, for the progress lines

	mu sync.Mutex
	c  trafficCounts
}

// snapshot reads the figures of every end once.
func (s *soak) snapshot(ctx context.Context, ends []soakEnd) (snapshot, error) {
	snap := snapshot{At: time.Now()}
	for _, e := range ends {
		fig, err := readFigures(ctx, e)
		if err != nil {
			return snapshot{}, err
		}
		snap.Figures = append(snap.Figures, fig)
	}
	return snap, nil
}

// settledSnapshot reads the figures until two readings half a second apart
// have the same goroutines and descriptors in every end, at most for 15 s:
// the ends take a moment to close what the churn's last connections left.
func (s *soak) settledSnapshot(ctx context.Context, ends []soakEnd) (snapshot, error) {
	prev, err := s.snapshot(ctx, ends)
	if err != nil {
		return snapshot{}, err
	}
	for range 30 {
		if err := sleepCtx(ctx, 500*time.Millisecond); err != nil {
			return snapshot{}, err
		}
		next, err := s.snapshot(ctx, ends)
		if err != nil {
			return snapshot{}, err
		}
		if next.sameCounts(prev) {
			return next, nil
		}
		prev = next
	}
	prev.Unsettled = true
	return prev, nil
}

// readFigures reads one end's resident memory and descriptors from /proc
// and its goroutines from its debug server.
func readFigures(ctx context.Context, e soakEnd) (figures, error) {
	st, err := readStatus(e.pid)
	if err != nil {
		return figures{}, err
	}
	fds, err := countFDs(e.pid)
	if err != nil {
		return figures{}, err
	}
	g, err := goroutines(ctx, e.debug)
	if err != nil {
		return figures{}, fmt.Errorf("bench: %s: %w", e.name, err)
	}
	return figures{RSSkB: st.VmRSSkB, Goroutines: g, FDs: fds}, nil
}

// goroutines asks a debug server for its goroutine count, on a connection
// of its own that is closed after, so that each reading counts the same
// serving goroutines.
func goroutines(ctx context.Context, addr string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/debug/pprof/goroutine?debug=1", nil)
	if err != nil {
		return 0, err
	}
	req.Close = true
	tr := &http.Transport{DisableKeepAlives: true, Proxy: nil}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("goroutine profile: %s", resp.Status)
	}
	line, err := bufio.NewReader(io.LimitReader(resp.Body, 4096)).ReadString('\n')
	if err != nil && line == "" {
		return 0, fmt.Errorf("goroutine profile: %w", err)
	}
	return parseGoroutineTotal(line)
}

// parseGoroutineTotal reads the first line of /debug/pprof/goroutine?debug=1:
// "goroutine profile: total N".
func parseGoroutineTotal(line string) (int64, error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(line), "goroutine profile: total ")
	if !ok {
		return 0, fmt.Errorf("goroutine profile: first line %q, want \"goroutine profile: total N\"", line)
	}
	n, err := strconv.ParseInt(rest, 10, 64)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("goroutine profile: first line %q: bad total", line)
	}
	return n, nil
}

// progress writes a line of counts every ProgressEvery until ctx ends.
func (s *soak) progress(ctx context.Context, began time.Time) {
	tick := time.NewTicker(s.cfg.ProgressEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		c := s.counts()
		fmt.Fprintf(s.cfg.Progress, "soak: %v: %s; bulk %.0f MB sent\n", time.Since(began).Round(time.Second), c.brief(), float64(s.bulkSent.Load())/1e6)
	}
}

func (s *soak) counts() trafficCounts {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.c
	c.Errors = append([]string(nil), s.c.Errors...)
	return c
}

// count changes the counters under the lock.
func (s *soak) count(change func(c *trafficCounts)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	change(&s.c)
}

// sleepCtx waits for d or until ctx ends, and then returns ctx's error.
func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// countFDs returns how many descriptors process pid has open.
func countFDs(pid int) (int64, error) {
	entries, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		return 0, fmt.Errorf("bench: process %d: %w", pid, err)
	}
	return int64(len(entries)), nil
}

// dialLoopback connects to 127.0.0.1:port.
func dialLoopback(ctx context.Context, port int) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	return d.DialContext(ctx, "tcp", loopback(port))
}
