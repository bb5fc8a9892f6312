package auth

import "testing"

// TestParseLimitsOption: pinhole-limits as parseOptions reads it; its
// errors are in TestParseOptionsErrors.
func TestParseLimitsOption(t *testing.T) {
	tests := []struct {
		in   string
		want Limits
	}{
		{`pinhole-limits="names=20,ports=50,streams=5000,stream-rate=500"`, Limits{Names: 20, Ports: 50, Streams: 5000, StreamRate: 500}},
		{`pinhole-limits="streams=none"`, Limits{Streams: LimitNone}},
		{`PINHOLE-LIMITS="Ports = 3 , stream-rate=NONE"`, Limits{Ports: 3, StreamRate: LimitNone}},
		{`pinhole-limits="names=1",pinhole-limits="ports=2"`, Limits{Names: 1, Ports: 2}},
		{`restrict,port-forwarding,pinhole-limits="streams=1"`, Limits{Streams: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			o, err := parseOptions(tt.in)
			if err != nil {
				t.Fatalf("parseOptions: %v", err)
			}
			if o.Limits != tt.want {
				t.Errorf("Limits = %+v, want %+v", o.Limits, tt.want)
			}
			if !o.PortForwarding {
				t.Errorf("pinhole-limits turned port forwarding off")
			}
		})
	}
}

// FuzzParseLimits: whatever the value, parseLimits either fails or gives
// limits that are each 0, none or in range, and that String writes back
// as a value parseLimits reads to the same limits.
func FuzzParseLimits(f *testing.F) {
	for _, s := range []string{"names=20,ports=50,streams=5000,stream-rate=500", "streams=none", "ports=1,", "x=1", "=", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var l Limits
		if err := parseLimits(s, &l); err != nil {
			return
		}
		for _, n := range []int{l.Names, l.Ports, l.Streams, l.StreamRate} {
			if n != 0 && n != LimitNone && (n < 1 || n > maxLimit) {
				t.Fatalf("parseLimits(%q) = %+v: a limit out of range", s, l)
			}
		}
		var back Limits
		if err := parseLimits(l.String(), &back); err != nil || back != l {
			t.Fatalf("parseLimits(%q) = %+v, String %q reads back as %+v, %v", s, l, l.String(), back, err)
		}
	})
}
