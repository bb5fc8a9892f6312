package bench

import (
	"context"
	"fmt"
	"time"
)

// The latency-under-load figures (issue 16): one small request/response
// on its own forwarded connection or UDP flow while iperf3 pushes one bulk
// stream through another forward of the same tunnel, so that both share
// one SSH connection, its windows, its writer and its socket.

// bulkWarmup is how long the bulk stream runs before the probe starts
// timing: long enough for TCP's window and the channel's to open fully.
const bulkWarmup = time.Second

// probe is a request/response measurement: its figures are round trips
// per second, p50 µs and p99 µs (rateAndPercentiles).
type probe func(ctx context.Context, d time.Duration) ([]float64, string, error)

// underLoad times p for d on an idle tunnel, then again for d beside one
// iperf3 stream through iperfPort, and returns the idle p99, the loaded
// p50 and p99 (µs), and the bulk stream's Gbit/s over its whole run.
func underLoad(ctx context.Context, iperfPort int, d time.Duration, p probe) ([]float64, string, error) {
	idle, note, err := p(ctx, d)
	if err != nil {
		return nil, note, fmt.Errorf("idle: %w", err)
	}
	type bulkResult struct {
		gbits float64
		err   error
	}
	bulk := make(chan bulkResult, 1)
	bulkFor := bulkWarmup + d + time.Second
	go func() {
		g, err := runIperf(ctx, iperfPort, bulkFor, 1)
		bulk <- bulkResult{g, err}
	}()
	select {
	case <-time.After(bulkWarmup):
	case r := <-bulk:
		return nil, "", fmt.Errorf("the bulk stream ended before the probe began: %v", r.err)
	case <-ctx.Done():
		return nil, "", ctx.Err()
	}
	loaded, loadedNote, err := p(ctx, d)
	r := <-bulk
	if err != nil {
		return nil, loadedNote, fmt.Errorf("beside the bulk stream: %w", err)
	}
	if r.err != nil {
		return nil, loadedNote, fmt.Errorf("the bulk stream: %w", r.err)
	}
	if note == "" {
		note = loadedNote
	} else if loadedNote != "" {
		note += "; loaded: " + loadedNote
	}
	return []float64{idle[2], loaded[1], loaded[2], r.gbits}, note, nil
}

// underLoadColumns are underLoad's figures, named for kind ("TCP", "UDP").
func underLoadColumns(kind string) []column {
	return []column{
		{kind + " idle p99 µs", fixed(0), false},
		{kind + " loaded p50 µs", fixed(0), false},
		{kind + " loaded p99 µs", fixed(0), true},
		{kind + " bulk beside Gbit/s", fixed(2), true},
	}
}
