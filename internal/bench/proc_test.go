package bench

import (
	"strings"
	"testing"
)

// TestStartOnPorts: a program that says its port is taken is started again
// on other ports; one that fails otherwise is an error with its output.
func TestStartOnPorts(t *testing.T) {
	tries := 0
	var seen [][]int
	p, ports, err := startOnPorts(t.Context(), 2, func(ports []int) (*proc, error) {
		tries++
		seen = append(seen, ports)
		if tries < 3 {
			return startProc("/bin/sh", "-c", "echo 'bind: Address already in use' >&2; exit 1")
		}
		return startProc("/bin/sh", "-c", "echo up; exec sleep 60")
	}, func(p *proc, _ []int) bool { return strings.Contains(p.Output(), "up") })
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if tries != 3 || len(ports) != 2 || ports[0] == ports[1] {
		t.Fatalf("tries %d, ports %v", tries, ports)
	}
	for _, ps := range seen {
		for _, port := range ps {
			if port < 10000 || port >= 32768 {
				t.Errorf("port %d outside 10000–32767", port)
			}
		}
	}
	p.Close()
	p.Close() // idempotent
	if !p.exited() {
		t.Error("the program runs on after Close")
	}

	_, _, err = startOnPorts(t.Context(), 1, func([]int) (*proc, error) {
		return startProc("/bin/sh", "-c", "echo 'no such key' >&2; exit 3")
	}, func(*proc, []int) bool { return false })
	if err == nil || !strings.Contains(err.Error(), "no such key") {
		t.Fatalf("a failing program: %v, want an error with its output", err)
	}
}

func TestTail(t *testing.T) {
	var tl tail
	tl.Write([]byte("begin "))
	big := strings.Repeat("x", tailMax)
	tl.Write([]byte(big))
	tl.Write([]byte(" end"))
	got := tl.String()
	if len(got) != tailMax || !strings.HasSuffix(got, "x end") {
		t.Fatalf("tail keeps %d bytes ending %q", len(got), got[len(got)-10:])
	}
}
