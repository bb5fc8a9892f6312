package bench

import (
	"context"
	"math"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/sshtest"
)

func TestMain(m *testing.M) {
	if ServeEchoChild() { // the benchmark runs its echo server as this binary
		return
	}
	os.Exit(m.Run())
}

// TestSmoke runs the whole benchmark for pinhole ↔ pinhole (raw SSH,
// tls:// and wss://), OpenSSH and the name router (http, https) with
// tiny durations and counts: every figure must come out, none failed.
// It asserts nothing about speed.
func TestSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("bench: skipping the smoke run in -short mode")
	}
	sshtest.Need(t, "iperf3", sshtest.SSHPath, sshtest.SSHDPath)
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("bench: skipping: go is not on PATH to build pinhole with")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	// Built from the repository's root, as the command does from there.
	wd, _ := os.Getwd()
	t.Chdir("../..")
	var progress strings.Builder
	res, err := Run(ctx, Config{
		Rounds:       1,
		Duration:     200 * time.Millisecond,
		Only:         []string{"openssh", "pinhole", "pinhole-tls", "pinhole-wss", "http", "https", "ssh-http"},
		IdleConns:    50,
		HoldConns:    200,
		UDPDatagrams: 400,
		Command:      "go test ./internal/bench (" + wd + ")",
		Progress:     &progress,
	})
	t.Log("progress:\n" + progress.String())
	if err != nil {
		t.Fatal(err)
	}
	md := res.Markdown()
	t.Log("\n" + md)
	for _, s := range res.setups {
		for _, m := range res.measurements {
			if !m.applies(s) {
				continue
			}
			for i, c := range m.columns {
				v, good, total := res.figure(s.name, m, i)
				if good != 1 || total != 1 || math.IsNaN(v) {
					t.Errorf("%s: %s: %d of %d rounds worked (%v)", s.name, c.title, good, total, v)
				}
			}
		}
	}
	for _, want := range []string{"| pinhole connect → pinhole server |", "| pinhole connect tls:// → pinhole server |", "| pinhole connect wss:// → pinhole server |", "| OpenSSH ssh → OpenSSH sshd |", "| https:// name → pinhole server → pinhole connect -R |", "×)", "held of 200"} {
		if !strings.Contains(md, want) {
			t.Errorf("the report lacks %q", want)
		}
	}
	if strings.Contains(md, "failed |") || strings.Contains(md, "| failed") {
		t.Errorf("the report holds a failure")
	}
}
