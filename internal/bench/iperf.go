package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// iperfReport is the part of iperf3 -J's output the table needs.
type iperfReport struct {
	Error string `json:"error"`
	End   struct {
		SumReceived struct {
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
}

// parseIperf returns the throughput the receiver saw, in bit/s, from the
// output of iperf3 -c -J (one stream or the sum of -P streams).
func parseIperf(b []byte) (float64, error) {
	var r iperfReport
	if err := json.Unmarshal(b, &r); err != nil {
		return 0, fmt.Errorf("bench: iperf3 -J output: %w", err)
	}
	if r.Error != "" {
		return 0, fmt.Errorf("bench: iperf3: %s", r.Error)
	}
	bps := r.End.SumReceived.BitsPerSecond
	if bps <= 0 || math.IsInf(bps, 0) || math.IsNaN(bps) {
		return 0, errors.New("bench: iperf3 -J output has no end.sum_received.bits_per_second")
	}
	return bps, nil
}

// iperfSeconds is d in the whole seconds iperf3 -t takes, at least 1.
func iperfSeconds(d time.Duration) int {
	return max(1, int(math.Round(d.Seconds())))
}

// runIperf runs iperf3 -c through port for d with streams parallel
// streams and returns Gbit/s.
func runIperf(ctx context.Context, port int, d time.Duration, streams int) (float64, error) {
	secs := iperfSeconds(d)
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+20*time.Second)
	defer cancel()
	args := []string{"-c", "127.0.0.1", "-p", strconv.Itoa(port), "-t", strconv.Itoa(secs),
		"-P", strconv.Itoa(streams), "-J", "--connect-timeout", "5000"}
	cmd := exec.CommandContext(ctx, "iperf3", args...)
	dieWithParent(cmd)
	cmd.WaitDelay = time.Second
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, runErr := cmd.Output()
	bps, err := parseIperf(out)
	switch {
	case ctx.Err() != nil:
		return 0, fmt.Errorf("bench: iperf3 %s: gave up after %v", strings.Join(args, " "), time.Duration(secs)*time.Second+20*time.Second)
	case err != nil && runErr != nil && len(out) == 0:
		return 0, fmt.Errorf("bench: iperf3: %v: %s", runErr, strings.TrimSpace(stderr.String()))
	case err != nil:
		return 0, err
	}
	return bps / 1e9, nil
}
