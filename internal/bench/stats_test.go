package bench

import (
	"math"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	tests := []struct {
		xs   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{3, 1, 2}, 2},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{2.61, 2.82, 2.60}, 2.61},
		{[]float64{5, 5, 1, 9, 5}, 5},
	}
	for _, tt := range tests {
		xs := append([]float64(nil), tt.xs...)
		if got := median(tt.xs); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.xs, got, tt.want)
		}
		for i := range xs {
			if xs[i] != tt.xs[i] {
				t.Fatalf("median reordered its argument: %v, was %v", tt.xs, xs)
			}
		}
	}
	if got := median(nil); !math.IsNaN(got) {
		t.Errorf("median(nil) = %v, want NaN", got)
	}
}

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i+1) * time.Microsecond // 1..100 µs
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"none", nil, 50, 0},
		{"one", []time.Duration{7}, 99, 7},
		{"p50 of 100", hundred, 50, 50 * time.Microsecond},
		{"p99 of 100", hundred, 99, 99 * time.Microsecond},
		{"p100 of 100", hundred, 100, 100 * time.Microsecond},
		{"p1 of 100", hundred, 1, 1 * time.Microsecond},
		{"p50 of 4", []time.Duration{1, 2, 3, 4}, 50, 2},
		{"p99 of 4", []time.Duration{1, 2, 3, 4}, 99, 4},
		{"tiny p", []time.Duration{1, 2, 3, 4}, 0.0001, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentile(tt.sorted, tt.p); got != tt.want {
				t.Fatalf("percentile(p%v) = %v, want %v", tt.p, got, tt.want)
			}
		})
	}
}

func TestRatio(t *testing.T) {
	tests := []struct {
		v, base float64
		want    float64
		ok      bool
	}{
		{3, 4, 0.75, true},
		{4, 2, 2, true},
		{0, 2, 0, true},
		{1, 0, 0, false},
		{math.NaN(), 2, 0, false},
		{2, math.NaN(), 0, false},
	}
	for _, tt := range tests {
		got, ok := ratio(tt.v, tt.base)
		if got != tt.want || ok != tt.ok {
			t.Errorf("ratio(%v, %v) = %v, %v; want %v, %v", tt.v, tt.base, got, ok, tt.want, tt.ok)
		}
	}
}
