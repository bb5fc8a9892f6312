//go:build !linux

package rawio

// pollYield outside Linux only lets the runnable goroutines go first: the
// eventfd it waits for on Linux is not there (BENCHMARKS.md measured
// Linux only).
func pollYield() { goschedYield() }
