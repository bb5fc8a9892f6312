package bench

import (
	"context"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseGoroutineTotal(t *testing.T) {
	tests := []struct {
		line    string
		want    int64
		wantErr bool
	}{
		{"goroutine profile: total 24\n", 24, false},
		{"goroutine profile: total 1", 1, false},
		{"goroutine profile: total 10000\r\n", 10000, false},
		{"goroutine profile: total 0\n", 0, true},
		{"goroutine profile: total -3\n", 0, true},
		{"goroutine profile: total many\n", 0, true},
		{"goroutine profile: total \n", 0, true},
		{"heap profile: 1: 2 [3: 4] @ heap/1048576\n", 0, true},
		{"", 0, true},
	}
	for _, tt := range tests {
		got, err := parseGoroutineTotal(tt.line)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseGoroutineTotal(%q) = %d, %v; want %d, error %v", tt.line, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestDebugAddrIn(t *testing.T) {
	out := "pinhole server: listening on 127.0.0.1:2222\n" +
		"pinhole server: debug: net/http/pprof on http://127.0.0.1:41234/debug/pprof/\n"
	if got, err := debugAddrIn(out); err != nil || got != "127.0.0.1:41234" {
		t.Errorf("debugAddrIn = %q, %v; want 127.0.0.1:41234", got, err)
	}
	if got, err := debugAddrIn("pinhole server: debug: net/http/pprof on http://[::1]:6060/debug/pprof/\n"); err != nil || got != "[::1]:6060" {
		t.Errorf("debugAddrIn = %q, %v; want [::1]:6060", got, err)
	}
	if _, err := debugAddrIn("pinhole server: listening on 127.0.0.1:2222\n"); err == nil {
		t.Error("debugAddrIn found an address in output without the line")
	}
}

func TestGrowth(t *testing.T) {
	tests := []struct {
		warm, end int64
		want      float64
	}{
		{100, 100, 0},
		{100, 109, 9},
		{100, 110, 10},
		{100, 90, -10},
		{200, 250, 25},
		{14, 15, 100.0 / 14},
		{0, 0, 0},
		{0, 1, math.Inf(1)},
	}
	for _, tt := range tests {
		if got := growth(tt.warm, tt.end); math.Abs(got-tt.want) > 1e-9 && got != tt.want {
			t.Errorf("growth(%d, %d) = %v; want %v", tt.warm, tt.end, got, tt.want)
		}
	}
	for g, want := range map[float64]string{0: "+0.0 %", 9.94: "+9.9 %", -4.5: "-4.5 %", math.Inf(1): "+∞ %"} {
		if got := formatGrowth(g); got != want {
			t.Errorf("formatGrowth(%v) = %q; want %q", g, got, want)
		}
	}
}

func TestParseStatTicks(t *testing.T) {
	const line = "19647 (pinhole) S 19600 19600 19500 34816 19600 4194560 6208 0 0 0 1523 877 0 0 20 0 6 0 41122 1290895360 23761 18446744073709551615 1 1 0 0 0 0 0 0 2143420159 0 0 0 17 1 0 0 0 0 0\n"
	tests := []struct {
		name    string
		in      string
		want    int64
		wantErr bool
	}{
		{"pinhole", line, 1523 + 877, false},
		{"name with spaces and parens", strings.Replace(line, "(pinhole)", "(a (b) c)", 1), 1523 + 877, false},
		{"no name", "19647 pinhole S 1 2 3", 0, true},
		{"short", "19647 (pinhole) S 19600 19600", 0, true},
		{"bad utime", strings.Replace(line, " 1523 ", " x ", 1), 0, true},
		{"empty", "", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatTicks([]byte(tt.in))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("parseStatTicks = %d, %v; want %d, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestCPUShares(t *testing.T) {
	t0 := time.Unix(1000, 0)
	a := []cpuTime{{t0, 100}, {t0, 0}}
	b := []cpuTime{{t0.Add(10 * time.Second), 600}, {t0.Add(10 * time.Second), 2000}}
	got := cpuShares(a, b)
	if len(got) != 2 || math.Abs(got[0]-50) > 1e-9 || math.Abs(got[1]-200) > 1e-9 {
		t.Errorf("cpuShares = %v; want [50 200] (5 s of 10, 20 s of 10)", got)
	}
	if got := cpuShares(nil, b); got != nil {
		t.Errorf("cpuShares without a first reading = %v; want nil", got)
	}
}

func TestPace(t *testing.T) {
	t0 := time.Unix(1000, 0)
	const rate = 25e6
	tests := []struct {
		after time.Duration
		sent  int64
		want  time.Duration
	}{
		{0, 0, 0},
		{0, 25e6, time.Second}, // a second's worth sent at once: wait a second
		{500 * time.Millisecond, 25e6, 500 * time.Millisecond}, // half of it waited already
		{2 * time.Second, 25e6, 0},                             // behind: send at once
	}
	for _, tt := range tests {
		if got := pace(t0, t0.Add(tt.after), tt.sent, rate); got != tt.want {
			t.Errorf("pace(after %v, sent %d) = %v; want %v", tt.after, tt.sent, got, tt.want)
		}
	}
}

func TestSameCounts(t *testing.T) {
	a := snapshot{Figures: []figures{{RSSkB: 100, Goroutines: 20, FDs: 14}, {RSSkB: 90, Goroutines: 16, FDs: 12}}}
	b := snapshot{Figures: []figures{{RSSkB: 104, Goroutines: 20, FDs: 14}, {RSSkB: 80, Goroutines: 16, FDs: 12}}}
	if !a.sameCounts(b) {
		t.Error("snapshots that differ only in RSS are not the same counts")
	}
	b.Figures[1].FDs++
	if a.sameCounts(b) {
		t.Error("snapshots with another fd count are the same counts")
	}
	if a.sameCounts(snapshot{}) {
		t.Error("a snapshot with no figures has the same counts")
	}
}

// goodReport is a soak report that passes.
func goodReport() *SoakReport {
	t0 := time.Unix(1000, 0)
	return &SoakReport{
		cfg:   SoakConfig{}.withDefaults(),
		Ends:  []string{"pinhole connect", "pinhole server"},
		Start: snapshot{At: t0, Figures: []figures{{11000, 21, 14}, {11000, 13, 12}}},
		Warm:  snapshot{At: t0.Add(2 * time.Minute), Figures: []figures{{75000, 24, 15}, {97000, 16, 14}}},
		End:   snapshot{At: t0.Add(10 * time.Minute), Figures: []figures{{80000, 24, 15}, {92000, 16, 14}}},
		CPUOf: []string{"pinhole connect", "pinhole server", "pinhole-bench", "its echo child"},
		CPU:   []float64{30, 32, 40, 10},

		Elapsed: 10 * time.Minute,
		Traffic: trafficCounts{Conns: 400000, Echoes: 1800000, EchoedBytes: 7e9, BulkStreams: 1, BulkBytes: 15e9, UDPSent: 100000, UDPOK: 99990, UDPLost: 10},
	}
}

func TestJudge(t *testing.T) {
	tests := []struct {
		name   string
		change func(r *SoakReport)
		want   []string // in the failures, in order; none for a pass
	}{
		{"pass", func(*SoakReport) {}, nil},
		{"RSS grew 10 %", func(r *SoakReport) { r.End.Figures[0].RSSkB = 82500 }, []string{"pinhole connect: RSS kB grew +10.0 % (75000 → 82500)"}},
		{"RSS grew 9.9 %", func(r *SoakReport) { r.End.Figures[0].RSSkB = 82499 }, nil},
		{"goroutines leak", func(r *SoakReport) { r.End.Figures[1].Goroutines = 40 }, []string{"pinhole server: goroutines grew +150.0 %"}},
		{"one fd more", func(r *SoakReport) { r.End.Figures[1].FDs = 16 }, []string{"pinhole server: fds grew +14.3 %"}},
		{"shrank", func(r *SoakReport) { r.End.Figures[0] = figures{50000, 20, 14} }, nil},
		{"churn failures", func(r *SoakReport) { r.Traffic.ConnsFailed = 2; r.Traffic.ConnsWrong = 1 }, []string{"3 data errors (churn: 2 failed, 1 wrong"}},
		{"bulk wrong", func(r *SoakReport) { r.Traffic.BulkWrong = 1 }, []string{"1 data errors"}},
		{"udp wrong", func(r *SoakReport) { r.Traffic.UDPWrong = 1 }, []string{"udp: 1 wrong"}},
		{"udp loss is no error", func(r *SoakReport) { r.Traffic.UDPLost = 5000 }, nil},
		{"no traffic", func(r *SoakReport) { r.Traffic = trafficCounts{} }, []string{"no connection", "no bulk stream", "no UDP datagram"}},
		{"no readings", func(r *SoakReport) { r.End.Figures = nil }, []string{"pinhole connect: no readings", "pinhole server: no readings"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := goodReport()
			tt.change(r)
			r.judge()
			if len(tt.want) == 0 {
				if !r.Pass() {
					t.Fatalf("failures %q; want a pass", r.Failures)
				}
				return
			}
			if r.Pass() || len(r.Failures) != len(tt.want) {
				t.Fatalf("failures %q; want %d with %q", r.Failures, len(tt.want), tt.want)
			}
			for i, w := range tt.want {
				if !strings.Contains(r.Failures[i], w) {
					t.Errorf("failure %d is %q; want it to hold %q", i, r.Failures[i], w)
				}
			}
		})
	}
}

func TestSoakMarkdown(t *testing.T) {
	r := goodReport()
	r.judge()
	md := r.Markdown()
	for _, want := range []string{
		"rate-limited to 25 MB/s",
		"| end | figure | start | after warm-up (2m0s) | end (10m0s) | growth, warm-up → end |",
		"| pinhole connect | RSS kB | 11000 | 75000 | 80000 | +6.7 % |",
		"| pinhole server | RSS kB | 11000 | 97000 | 92000 | -5.2 % |",
		"| pinhole server | fds | 12 | 14 | 14 | +0.0 % |",
		"Churn: 400000 connections (667/s)",
		"UDP: 100000 datagrams, 99990 back and checked, 10 lost (0.01 %",
		"pinhole-bench 40 %",
		"Result: **pass**",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the report lacks %q:\n%s", want, md)
		}
	}
	r.End.Figures[1].Goroutines = 40
	r.Traffic.Errors = []string{"churn: read tcp: connection reset by peer"}
	r.judge()
	md = r.Markdown()
	for _, want := range []string{"Result: **FAIL**:\n- pinhole server: goroutines grew", "- error: churn: read tcp: connection reset by peer"} {
		if !strings.Contains(md, want) {
			t.Errorf("the failed report lacks %q:\n%s", want, md)
		}
	}
}

func TestSoakWarmupDefault(t *testing.T) {
	for d, want := range map[time.Duration]time.Duration{
		10 * time.Minute: 2 * time.Minute,
		time.Hour:        12 * time.Minute,
		2 * time.Minute:  time.Minute,
		5 * time.Minute:  time.Minute,
		30 * time.Second: 15 * time.Second,
	} {
		if got := (SoakConfig{Duration: d}).withDefaults().Warmup; got != want {
			t.Errorf("-soak %v: warm-up %v; want %v", d, got, want)
		}
	}
}

func TestSoakUsage(t *testing.T) {
	for _, args := range [][]string{
		{"-soak", "5s"},
		{"-soak", "1m", "-soak-warmup", "1m"},
		{"-soak", "1m", "-soak-conns", "0"},
		{"-soak", "1m", "-soak-bulk-rate", "-1"},
	} {
		var stdout, stderr strings.Builder
		if code := Main(t.Context(), args, &stdout, &stderr); code != 2 {
			t.Errorf("pinhole-bench %s: exit %d; want 2 (stderr %q)", strings.Join(args, " "), code, stderr.String())
		}
	}
}

// corruptingEcho echoes every connection on ln with its 100th byte
// flipped.
func corruptingEcho(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 64<<10)
				seen := 0
				for {
					n, err := c.Read(buf)
					if i := 99 - seen; i >= 0 && i < n {
						buf[i] ^= 1
					}
					seen += n
					if n > 0 {
						c.Write(buf[:n])
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestChurnOnce runs churn connections straight to an echo server (no
// tunnel): good echoes pass, a flipped byte is wrong bytes.
func TestChurnOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	echo := newTCPEcho(ln)
	defer echo.Close()
	rng := rand.New(rand.NewPCG(1, 1))
	sent, got := make([]byte, churnMaxBytes), make([]byte, churnMaxBytes)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for range 5 {
		echoes, n, err := churnOnce(ctx, ln.Addr().(*net.TCPAddr).Port, rng, sent, got)
		if err != nil || echoes < 1 || echoes > churnMaxEchoes || n < int64(echoes) {
			t.Fatalf("churnOnce = %d echoes, %d bytes, %v", echoes, n, err)
		}
	}
	bad := corruptingEcho(t)
	for range 20 { // some first messages are shorter than 100 bytes
		_, _, err := churnOnce(ctx, bad, rng, sent, got)
		if errors.Is(err, errWrongBytes) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Fatal("churnOnce never saw the flipped byte")
}

// TestBulkStream runs the bulk stream straight to the sink for a moment:
// rate-limited, and checked by the sink's length and CRC; and through a
// corrupting relay, wrong bytes.
func TestBulkStream(t *testing.T) {
	sink, err := newBulkSink()
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	pattern := make([]byte, bulkPattern+bulkChunk)
	fillRandom(rand.New(rand.NewPCG(1, 2)), pattern)
	const rate = 20e6
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	began := time.Now()
	n, err := bulkStream(ctx, t.Context(), sink.Port(), rate, pattern, new(atomic.Int64))
	took := time.Since(began)
	if err != nil {
		t.Fatal(err)
	}
	// 0.5 s at 20 MB/s, a chunk ahead: at most 10 MB and a chunk.
	if limit := int64(rate*took.Seconds()) + bulkChunk; n > limit || n < bulkChunk {
		t.Errorf("sent %d bytes in %v at %.0f MB/s; want at most %d", n, took, rate/1e6, limit)
	}

	// Through a relay that flips a byte, to a sink behind it.
	relay, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer relay.Close()
	go func() {
		c, err := relay.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		s, err := net.Dial("tcp", loopback(sink.Port()))
		if err != nil {
			return
		}
		defer s.Close()
		go io.Copy(c, s) // the summary back
		buf := make([]byte, 4096)
		k, _ := io.ReadFull(c, buf)
		buf[7] ^= 0x80
		s.Write(buf[:k])
		io.Copy(s, c)
		s.(*net.TCPConn).CloseWrite()
		time.Sleep(time.Second) // for the summary
	}()
	ctx2, cancel2 := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel2()
	if _, err := bulkStream(ctx2, t.Context(), relay.Addr().(*net.TCPAddr).Port, rate, pattern, new(atomic.Int64)); !errors.Is(err, errWrongBytes) {
		t.Fatalf("through a corrupting relay: %v; want wrong bytes", err)
	}
}

// TestUDPReply checks the UDP flow's echo check against the UDP echo
// server: the echo of the datagram sent passes, a late echo of an earlier
// one is skipped, none is lost.
func TestUDPReply(t *testing.T) {
	u, err := newUDPEcho()
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	c, err := dialUDP(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mk := func(seq uint64, n int) []byte {
		b := make([]byte, n)
		fillRandom(rand.New(rand.NewPCG(seq, 0)), b)
		for i := range 8 {
			b[i] = byte(seq >> (56 - 8*i))
		}
		return b
	}
	resp := make([]byte, 64<<10)
	late, now := mk(1, 100), mk(2, 300)
	c.Write(late)
	c.Write(now)
	if ok, err := udpReply(c, 2, now, resp); !ok || err != nil {
		t.Fatalf("udpReply = %v, %v; want the echo of datagram 2 after skipping 1's", ok, err)
	}
	if ok, err := udpReply(c, 3, mk(3, 50), resp); ok || err != nil {
		t.Fatalf("udpReply of a datagram never sent = %v, %v; want lost", ok, err)
	}
	c.Write(mk(4, 64))
	if ok, err := udpReply(c, 4, mk(4, 65), resp); !errors.Is(err, errWrongBytes) {
		t.Fatalf("udpReply of an echo shorter than expected = %v, %v; want wrong bytes", ok, err)
	}
}
