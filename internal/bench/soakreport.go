package bench

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"
)

// figures are one end's readings.
type figures struct {
	RSSkB      int64 // VmRSS of /proc/PID/status
	Goroutines int64 // from its /debug/pprof/goroutine?debug=1
	FDs        int64 // entries of /proc/PID/fd
}

// figureNames are the rows of the report for each end, in the order of
// figures.values.
var figureNames = []string{"RSS kB", "goroutines", "fds"}

func (f figures) values() []int64 { return []int64{f.RSSkB, f.Goroutines, f.FDs} }

// snapshot is one reading of every end, in the order of SoakReport.Ends.
type snapshot struct {
	At        time.Time
	Figures   []figures
	Unsettled bool // the counts still moved when the reading gave up waiting
}

// sameCounts reports whether s and o have the same goroutines and
// descriptors in every end (resident memory always moves a little).
func (s snapshot) sameCounts(o snapshot) bool {
	if len(s.Figures) != len(o.Figures) {
		return false
	}
	for i, f := range s.Figures {
		if f.Goroutines != o.Figures[i].Goroutines || f.FDs != o.Figures[i].FDs {
			return false
		}
	}
	return true
}

// brief is a snapshot on one progress line.
func (s snapshot) brief(ends []string) string {
	var parts []string
	for i, f := range s.Figures {
		parts = append(parts, fmt.Sprintf("%s %d kB, %d goroutines, %d fds", ends[i], f.RSSkB, f.Goroutines, f.FDs))
	}
	out := strings.Join(parts, "; ")
	if s.Unsettled {
		out += " (counts still moving)"
	}
	return out
}

// growth is how much a figure grew from warm to end, in per cent of warm.
// From 0 it is 0 when it stayed 0 and +Inf when it grew.
func growth(warm, end int64) float64 {
	if warm <= 0 {
		if end <= warm {
			return 0
		}
		return math.Inf(1)
	}
	return 100 * float64(end-warm) / float64(warm)
}

// formatGrowth shows a growth with its sign.
func formatGrowth(g float64) string {
	if math.IsInf(g, 1) {
		return "+∞ %"
	}
	return fmt.Sprintf("%+.1f %%", g)
}

// cpuTime is a process's user and system CPU time.
type cpuTime struct {
	at    time.Time
	ticks int64 // utime + stime, in clock ticks
}

// clockTicks is the unit of /proc/PID/stat's times: USER_HZ, 100 on every
// Linux architecture Go runs on.
const clockTicks = 100

// parseStatTicks returns utime + stime from the text of /proc/PID/stat.
// The command name, in parentheses, may hold spaces and parentheses: the
// fields are counted from the last ')'.
func parseStatTicks(b []byte) (int64, error) {
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("bench: /proc stat: no ')' in %q", s)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state): utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("bench: /proc stat: %d fields after the name, want at least 13", len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil || utime < 0 || stime < 0 {
		return 0, fmt.Errorf("bench: /proc stat: utime %q, stime %q", f[11], f[12])
	}
	return utime + stime, nil
}

// cpuTimes reads the CPU time of every end.
func cpuTimes(ends []soakEnd) ([]cpuTime, error) {
	var out []cpuTime
	for _, e := range ends {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(e.pid) + "/stat")
		if err != nil {
			return nil, fmt.Errorf("bench: %s: %w", e.name, err)
		}
		t, err := parseStatTicks(b)
		if err != nil {
			return nil, err
		}
		out = append(out, cpuTime{at: time.Now(), ticks: t})
	}
	return out, nil
}

// cpuShares returns each end's CPU use from a to b, in per cent of one
// core; nil when either reading is missing.
func cpuShares(a, b []cpuTime) []float64 {
	if len(a) == 0 || len(a) != len(b) {
		return nil
	}
	var out []float64
	for i := range a {
		secs := b[i].at.Sub(a[i].at).Seconds()
		if secs <= 0 {
			return nil
		}
		out = append(out, 100*float64(b[i].ticks-a[i].ticks)/clockTicks/secs)
	}
	return out
}

// SoakReport is what a soak measured, and its verdict.
type SoakReport struct {
	cfg    SoakConfig
	header []string

	Ends             []string // pinhole connect, pinhole server
	Start, Warm, End snapshot
	Elapsed          time.Duration
	CPUOf            []string  // the ends, then the benchmark's own processes
	CPU              []float64 // of each of CPUOf, % of one core, from the warm-up to the end
	Traffic          trafficCounts

	Failures []string // why it failed; none when it passed
}

// Pass reports whether the soak met its target with no data error.
func (r *SoakReport) Pass() bool { return len(r.Failures) == 0 }

// judge fills Failures.
func (r *SoakReport) judge() {
	r.Failures = nil
	for i, end := range r.Ends {
		if i >= len(r.Warm.Figures) || i >= len(r.End.Figures) {
			r.Failures = append(r.Failures, end+": no readings")
			continue
		}
		w, e := r.Warm.Figures[i].values(), r.End.Figures[i].values()
		for j, name := range figureNames {
			if g := growth(w[j], e[j]); g >= SoakTarget {
				r.Failures = append(r.Failures, fmt.Sprintf("%s: %s grew %s (%d → %d); the target is less than %.0f %%", end, name, formatGrowth(g), w[j], e[j], SoakTarget))
			}
		}
	}
	t := r.Traffic
	if n := t.DataErrors(); n > 0 {
		r.Failures = append(r.Failures, fmt.Sprintf("%d data errors (churn: %d failed, %d wrong; bulk: %d broken, %d wrong; udp: %d wrong)",
			n, t.ConnsFailed, t.ConnsWrong, t.BulkFailed, t.BulkWrong, t.UDPWrong))
	}
	if t.Conns == 0 {
		r.Failures = append(r.Failures, "the churn made no connection")
	}
	if t.BulkBytes == 0 {
		r.Failures = append(r.Failures, "no bulk stream ended checked")
	}
	if t.UDPOK == 0 {
		r.Failures = append(r.Failures, "no UDP datagram came back")
	}
}

// since is how far into the soak a snapshot was read.
func (r *SoakReport) since(s snapshot) time.Duration {
	return s.At.Sub(r.Start.At).Round(time.Second)
}

// Markdown is the report as the command prints it.
func (r *SoakReport) Markdown() string {
	c := r.cfg
	var b strings.Builder
	fmt.Fprintf(&b, "### Soak: pinhole connect → pinhole server, %v\n\n", c.Duration)
	for _, h := range r.header {
		b.WriteString(h + "\n")
	}
	fmt.Fprintf(&b, "\nOne tunnel on loopback for %v, of which the first %v is warm-up. Through it at once:\n\n", c.Duration, c.Warmup)
	fmt.Fprintf(&b, "- churn: %d connections through `-L` to a TCP echo server, each opened, used for 1–%d echoes of 1–%d random bytes up to %v apart, each checked byte for byte, closed, and opened again after up to %v;\n",
		c.Conns, churnMaxEchoes, churnMaxBytes, churnPause, churnPause)
	fmt.Fprintf(&b, "- bulk: one TCP stream through another `-L` to a sink, **rate-limited to %.0f MB/s** so that the soak leaves most of a shared machine's cores to others, checked at its end by length and CRC-32;\n", c.BulkRate/1e6)
	fmt.Fprintf(&b, "- UDP: one flow through `-L …/udp` to a UDP echo server, up to %d datagrams/s of %d–%d bytes, each sent after the echo of the one before (or %v without it), each echo checked.\n\n", c.UDPRate, udpMinBytes, udpMaxBytes, udpWait)
	b.WriteString("The start is read before any traffic; after the warm-up and at the end the churn pauses (its open connections finish, none opens) " +
		"while the bulk stream and the UDP flow go on, and the figures are read once every end's goroutines and fds hold still for half a second.\n\n")

	fmt.Fprintf(&b, "| end | figure | start | after warm-up (%v) | end (%v) | growth, warm-up → end |\n", r.since(r.Warm), r.since(r.End))
	b.WriteString("| --- | --- | ---: | ---: | ---: | ---: |\n")
	for i, end := range r.Ends {
		if i >= len(r.Start.Figures) || i >= len(r.Warm.Figures) || i >= len(r.End.Figures) {
			continue
		}
		s, w, e := r.Start.Figures[i].values(), r.Warm.Figures[i].values(), r.End.Figures[i].values()
		for j, name := range figureNames {
			fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %s |\n", end, name, s[j], w[j], e[j], formatGrowth(growth(w[j], e[j])))
		}
	}
	for _, s := range []struct {
		name string
		snap snapshot
	}{{"after warm-up", r.Warm}, {"end", r.End}} {
		if s.snap.Unsettled {
			fmt.Fprintf(&b, "\nThe %s reading was taken with the counts still moving after 15 s of waiting.\n", s.name)
		}
	}

	t := r.Traffic
	secs := r.Elapsed.Seconds()
	fmt.Fprintf(&b, "\nChurn: %d connections (%.0f/s), %d echoes, %.0f MB echoed; %d failed, %d with wrong bytes.\n",
		t.Conns, float64(t.Conns)/secs, t.Echoes, float64(t.EchoedBytes)/1e6, t.ConnsFailed, t.ConnsWrong)
	fmt.Fprintf(&b, "Bulk: %.0f MB in %d stream(s) (%.1f MB/s), checked; %d broken, %d wrong.\n",
		float64(t.BulkBytes)/1e6, t.BulkStreams, float64(t.BulkBytes)/1e6/secs, t.BulkFailed, t.BulkWrong)
	lostPct := 0.0
	if t.UDPSent > 0 {
		lostPct = 100 * float64(t.UDPLost) / float64(t.UDPSent)
	}
	fmt.Fprintf(&b, "UDP: %d datagrams, %d back and checked, %d lost (%.2f %%, not counted as errors), %d wrong.\n",
		t.UDPSent, t.UDPOK, t.UDPLost, lostPct, t.UDPWrong)
	if len(r.CPU) == len(r.CPUOf) && len(r.CPU) > 0 {
		var parts []string
		for i, end := range r.CPUOf {
			parts = append(parts, fmt.Sprintf("%s %.0f %%", end, r.CPU[i]))
		}
		fmt.Fprintf(&b, "CPU from the warm-up to the end, in per cent of one core: %s.\n", strings.Join(parts, ", "))
	}
	for _, e := range t.Errors {
		fmt.Fprintf(&b, "- error: %s\n", e)
	}
	if r.Pass() {
		fmt.Fprintf(&b, "\nResult: **pass**: every figure grew less than %.0f %% from the warm-up to the end, and no data error.\n", SoakTarget)
	} else {
		b.WriteString("\nResult: **FAIL**:\n")
		for _, f := range r.Failures {
			fmt.Fprintf(&b, "- %s\n", f)
		}
	}
	return b.String()
}
