package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseIperf(t *testing.T) {
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	tests := []struct {
		name    string
		in      string
		want    float64
		wantErr string
	}{
		// Real output of iperf 3.12 on loopback.
		{"one stream", read("iperf3-one-stream.json"), 16947030191.165722, ""},
		{"four streams", read("iperf3-four-streams.json"), 15713759070.160557, ""},
		{"refused", read("iperf3-refused.json"), 0, "iperf3: unable to connect to server: Connection refused"},
		{"no end", `{"start":{},"intervals":[]}`, 0, "no end.sum_received"},
		{"zero", `{"end":{"sum_received":{"bits_per_second":0}}}`, 0, "no end.sum_received"},
		{"negative", `{"end":{"sum_received":{"bits_per_second":-5}}}`, 0, "no end.sum_received"},
		{"not JSON", "iperf3: error - the server is busy running a test. try again later\n", 0, "iperf3 -J output"},
		{"empty", "", 0, "iperf3 -J output"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseIperf([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseIperf = %v, %v; want an error with %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("parseIperf = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

func FuzzParseIperf(f *testing.F) {
	for _, name := range []string{"iperf3-one-stream.json", "iperf3-four-streams.json", "iperf3-refused.json"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		bps, err := parseIperf(b)
		if err == nil && !(bps > 0) {
			t.Fatalf("parseIperf(%q) = %v with no error", b, bps)
		}
	})
}

func TestIperfSeconds(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want int
	}{
		{0, 1},
		{100 * time.Millisecond, 1},
		{time.Second, 1},
		{1600 * time.Millisecond, 2},
		{3 * time.Second, 3},
	}
	for _, tt := range tests {
		if got := iperfSeconds(tt.d); got != tt.want {
			t.Errorf("iperfSeconds(%v) = %d, want %d", tt.d, got, tt.want)
		}
	}
}
