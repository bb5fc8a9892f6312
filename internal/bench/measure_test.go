package bench

import (
	"net"
	"runtime"
	"testing"
	"time"
)

// echoServer runs the benchmark's TCP echo in this process.
func echoServer(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e := newTCPEcho(ln)
	t.Cleanup(func() { e.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// TestMeasurementsDirect runs each in-process measurement straight against
// the echo servers, with no forwarder: each gives its figures and no
// error. Nothing about speed is asserted.
func TestMeasurementsDirect(t *testing.T) {
	port := echoServer(t)
	udp, err := newUDPEcho()
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	pids := func() ([]int, error) { return nil, nil }
	tests := []struct {
		name string
		want int // figures
		run  func() ([]float64, string, error)
	}{
		{"rr", 3, func() ([]float64, string, error) { return tcpRequestResponse(t.Context(), port, 50*time.Millisecond) }},
		{"conns", 1, func() ([]float64, string, error) { return newConnections(t.Context(), port, 50*time.Millisecond, 8) }},
		{"memory", 1, func() ([]float64, string, error) { return idleMemory(t.Context(), port, 20, pids) }},
		{"hold", 1, func() ([]float64, string, error) { return holdMany(t.Context(), port, 100) }},
		{"udp rr", 3, func() ([]float64, string, error) {
			return udpRequestResponse(t.Context(), udp.Port(), 50*time.Millisecond)
		}},
		{"udp burst", 1, func() ([]float64, string, error) {
			return udpBurst(t.Context(), udp.Port(), 800, 8, burstPace{window: 16})
		}},
		{"udp unpaced burst", 1, func() ([]float64, string, error) {
			return udpBurst(t.Context(), udp.Port(), 800, 8, burstPace{perMilli: 4})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, note, err := tt.run()
			if err != nil || len(got) != tt.want {
				t.Fatalf("%v, %q, %v; want %d figures", got, note, err, tt.want)
			}
			t.Logf("%v %s", got, note)
		})
	}
}

func TestHoldManyCountsAll(t *testing.T) {
	got, note, err := holdMany(t.Context(), echoServer(t), 50)
	if err != nil || got[0] != 50 || note != "" {
		t.Fatalf("holdMany = %v, %q, %v; want all 50 held", got, note, err)
	}
}

func TestStillOpen(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("bench: skipping: stillOpen checks on Linux only")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pair := func() (client, server net.Conn) {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(); s.Close() })
		return c, s
	}
	c, _ := pair()
	if err := stillOpen(c); err != nil {
		t.Errorf("idle connection: %v", err)
	}
	c, s := pair()
	s.Close()
	waitFor(t, func() bool { return stillOpen(c) != nil })
	c, s = pair()
	s.Write([]byte("x"))
	waitFor(t, func() bool { return stillOpen(c) != nil })
}

// waitFor polls cond for up to 10 s: what the kernel does on loopback
// takes a moment.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for range 1000 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the condition did not become true in 10 s")
}
