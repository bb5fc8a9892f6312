package bench

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// results builds Results by hand: two setups, one measurement with a
// ratio column, one without.
func testResults() *Results {
	cfg := Config{Rounds: 3, Duration: time.Second}.withDefaults()
	ss, ms, err := choose(Config{Only: []string{"openssh", "pinhole"}, Skip: []string{"tput4", "rr", "conns", "memory", "udpburst", "conns10k", "http1", "http64", "paced64", "rr-under-load", "udp-under-load"}})
	if err != nil {
		panic(err)
	}
	r := &Results{cfg: cfg, setups: ss, measurements: ms, samples: map[string]map[string][]sample{}, header: []string{"Command: `x`."}}
	tput1, udp := ms[0], ms[1]
	for _, v := range []float64{3.28, 3.72, 3.74} {
		r.add(ss[0], tput1, sample{values: []float64{v}})
	}
	r.add(ss[1], tput1, sample{values: []float64{2.60}})
	r.add(ss[1], tput1, sample{err: errors.New("bench: iperf3: the server is busy\nmore")})
	r.add(ss[1], tput1, sample{values: []float64{2.82}})
	for range 3 {
		r.add(ss[1], udp, sample{values: []float64{9000, 99, 292, 0}, note: "1 of 9001 datagrams lost"})
	}
	return r
}

func TestMarkdown(t *testing.T) {
	md := testResults().Markdown()
	for _, want := range []string{
		"| setup | 1 stream Gbit/s | UDP req/resp per s | UDP p50 µs | UDP p99 µs | UDP burst loss % |\n",
		"| --- | ---: | ---: | ---: | ---: | ---: |\n",
		// OpenSSH: median 3.72, no ratio to itself, no UDP.
		"| OpenSSH ssh → OpenSSH sshd | 3.72 | — | — | — | — |\n",
		// pinhole: median of the two rounds that worked, 2.71 ÷ 3.72.
		"| pinhole connect → pinhole server | 2.71 (0.73×) [2 of 3] | 9000 | 99 | 292 | 0.00 |\n",
		"- pinhole connect → pinhole server, tput1, round 2: failed: bench: iperf3: the server is busy …\n",
		"- pinhole connect → pinhole server, udp, round 1: 1 of 9001 datagrams lost\n",
		"median of 3 rounds",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the report lacks %q:\n%s", want, md)
		}
	}
}

func TestCellFailedAndMissing(t *testing.T) {
	r := testResults()
	ss, ms := r.setups, r.measurements
	r.samples["pinhole"]["tput1"] = []sample{{err: errors.New("x")}}
	if got := r.cell(ss[1], ms[0], 0); got != "failed" {
		t.Errorf("all rounds failed: cell %q, want failed", got)
	}
	delete(r.samples, "openssh")
	r.samples["pinhole"]["tput1"] = []sample{{values: []float64{2.5}}}
	if got := r.cell(ss[1], ms[0], 0); got != "2.50" {
		t.Errorf("no baseline: cell %q, want 2.50 without a ratio", got)
	}
	if got := r.cell(ss[0], ms[0], 0); got != "—" {
		t.Errorf("nothing measured: cell %q, want —", got)
	}
}

func TestChoose(t *testing.T) {
	tests := []struct {
		only, skip []string
		setups     string
		wantErr    string
	}{
		{nil, nil, "direct,socat,forward,openssh,pinhole,pinhole-metrics,pinhole-metrics1s,pinhole-tls,pinhole-wss,ssh-pinhole,pinhole-sshd,http,https,ssh-http", ""},
		{[]string{"pinhole", "openssh"}, nil, "openssh,pinhole", ""},
		{[]string{"pinhole-wss", "openssh", "pinhole-tls", "pinhole"}, nil, "openssh,pinhole,pinhole-tls,pinhole-wss", ""},
		{[]string{"pinhole"}, []string{"memory", "conns10k"}, "pinhole", ""},
		{[]string{"ssh"}, nil, "", `no setup named "ssh"; the setups are direct, socat, forward, openssh`},
		{nil, []string{"latency"}, "", `no measurement named "latency"; the measurements are tput1, tput4, rr`},
	}
	for _, tt := range tests {
		ss, ms, err := choose(Config{Only: tt.only, Skip: tt.skip})
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("choose(%q, %q): %v, want an error with %q", tt.only, tt.skip, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if got := names(ss, func(s setup) string { return s.name }); got != tt.setups {
			t.Errorf("choose(%q) setups = %s, want %s", tt.only, got, tt.setups)
		}
		for _, m := range ms {
			for _, s := range tt.skip {
				if m.name == s {
					t.Errorf("choose(skip %q) kept %s", tt.skip, s)
				}
			}
		}
	}
}

func TestCommandLineAndLists(t *testing.T) {
	if got, want := commandLine([]string{"-only", "openssh,pinhole", "-out", "my file.md"}), "go run ./cmd/pinhole-bench -only openssh,pinhole -out 'my file.md'"; got != want {
		t.Errorf("commandLine = %q, want %q", got, want)
	}
	if got := splitList(" openssh, ,pinhole,"); strings.Join(got, "|") != "openssh|pinhole" {
		t.Errorf("splitList = %q", got)
	}
	if got := oneLine("a | b\nsecond line"); got != `a \| b …` {
		t.Errorf("oneLine = %q", got)
	}
}

// TestCellRatioToDirect: the HTTP figures' ratios are to direct, not to
// OpenSSH, and direct's own cells have none.
func TestCellRatioToDirect(t *testing.T) {
	cfg := Config{Rounds: 1, Duration: time.Second}.withDefaults()
	ss, ms, err := choose(Config{Only: []string{"direct", "openssh", "http"}, Skip: []string{"tput1", "tput4", "rr", "conns", "memory", "udp", "conns10k", "http1", "paced64"}})
	if err != nil {
		t.Fatal(err)
	}
	r := &Results{cfg: cfg, setups: ss, measurements: ms, samples: map[string]map[string][]sample{}}
	direct, openssh, http := ss[0], ss[1], ss[2]
	http64 := ms[0]
	r.add(direct, http64, sample{values: []float64{20000, 1000, 4000}})
	r.add(openssh, http64, sample{values: []float64{1, 1, 1}}) // never the base here
	r.add(http, http64, sample{values: []float64{5000, 4000, 20000}})
	if got := r.cell(http, http64, 0); got != "5000 (0.25×)" {
		t.Errorf("http's req/s: %q, want 5000 (0.25×)", got)
	}
	if got := r.cell(http, http64, 2); got != "20000 (5.00×)" {
		t.Errorf("http's p99: %q, want 20000 (5.00×)", got)
	}
	if got := r.cell(direct, http64, 0); got != "20000" {
		t.Errorf("direct's req/s: %q, want no ratio", got)
	}
	if md := r.Markdown(); !strings.Contains(md, "the HTTP figures with their ratio to direct's") {
		t.Errorf("the report does not say what the HTTP ratios are to:\n%s", md)
	}
}
