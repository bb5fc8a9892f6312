package bench

import (
	"math"
	"slices"
	"time"
)

// median returns the median of xs, the mean of the middle two for an even
// count, and NaN for none. xs is not changed.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// percentile returns the p-th percentile (0 < p ≤ 100) of sorted by the
// nearest-rank method: the smallest value with at least p % of the values
// at or below it. It returns 0 for none.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// ratio returns v ÷ base, and false when there is no meaningful ratio: a
// missing value, or a base of zero.
func ratio(v, base float64) (float64, bool) {
	if math.IsNaN(v) || math.IsNaN(base) || base == 0 {
		return 0, false
	}
	return v / base, true
}

// micros returns d in microseconds, as a float for the table.
func micros(d time.Duration) float64 {
	return float64(d) / float64(time.Microsecond)
}
