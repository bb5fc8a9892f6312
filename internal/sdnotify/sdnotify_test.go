package sdnotify

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// listen is the systemd side: a unixgram socket at name whose datagrams
// arrive on the returned channel.
func listen(t *testing.T, name string) <-chan string {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	msgs := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := c.ReadFromUnix(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	return msgs
}

func next(t *testing.T, msgs <-chan string) string {
	t.Helper()
	select {
	case m := <-msgs:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no message within 5 s")
		return ""
	}
}

func TestMessages(t *testing.T) {
	for _, name := range []string{
		filepath.Join(t.TempDir(), "notify"),
		fmt.Sprintf("@pinhole-sdnotify-test-%d-%d", os.Getpid(), time.Now().UnixNano()),
	} {
		t.Run(name, func(t *testing.T) {
			msgs := listen(t, name)
			n, err := New(Config{Socket: name})
			if err != nil {
				t.Fatal(err)
			}
			if !n.Enabled() {
				t.Fatal("Enabled = false with a socket")
			}
			if err := n.Ready("listening on [::]:22"); err != nil {
				t.Fatal(err)
			}
			if got, want := next(t, msgs), "READY=1\nSTATUS=listening on [::]:22\n"; got != want {
				t.Errorf("Ready sent %q, want %q", got, want)
			}
			before, _ := monotonicUsec()
			if err := n.Reloading(""); err != nil {
				t.Fatal(err)
			}
			after, _ := monotonicUsec()
			got := next(t, msgs)
			v, ok := strings.CutPrefix(got, "RELOADING=1\nMONOTONIC_USEC=")
			usec, err := strconv.ParseUint(strings.TrimSuffix(v, "\n"), 10, 64)
			if !ok || err != nil || !strings.HasSuffix(v, "\n") || usec < before || usec > after {
				t.Errorf("Reloading sent %q, want RELOADING=1 and MONOTONIC_USEC between %d and %d", got, before, after)
			}
			if err := n.Stopping("a\nb"); err != nil {
				t.Fatal(err)
			}
			if got, want := next(t, msgs), "STOPPING=1\nSTATUS=a b\n"; got != want {
				t.Errorf("Stopping sent %q, want %q", got, want)
			}
			if err := n.Notify("READY=1\nMAINPID=1"); err == nil {
				t.Error("Notify took a field with a newline in it")
			}
		})
	}
}

// TestDisabled: without a socket, and on a nil Notifier, every method is a
// no-op that returns nil.
func TestDisabled(t *testing.T) {
	empty, err := New(Config{WatchdogUSec: "1000000"})
	if err != nil {
		t.Fatal(err)
	}
	for name, n := range map[string]*Notifier{"empty": empty, "nil": nil} {
		if n.Enabled() || n.WatchdogInterval() != 0 {
			t.Errorf("%s: Enabled %v, WatchdogInterval %v; want false, 0", name, n.Enabled(), n.WatchdogInterval())
		}
		for _, err := range []error{n.Ready("x"), n.Reloading("x"), n.Stopping("x"), n.Status("x"), n.Notify("A=1"), n.Watchdog(context.Background(), nil)} {
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
		}
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"relative socket", Config{Socket: "run/notify"}, "neither an absolute path nor an abstract socket"},
		{"bare @", Config{Socket: "@"}, "neither an absolute path"},
		{"vsock", Config{Socket: "vsock:2:1234"}, "neither an absolute path"},
		{"bad usec", Config{Socket: "/run/n", WatchdogUSec: "30s"}, "WATCHDOG_USEC \"30s\" is not a number"},
		{"negative usec", Config{Socket: "/run/n", WatchdogUSec: "-1"}, "WATCHDOG_USEC"},
		{"huge usec", Config{Socket: "/run/n", WatchdogUSec: "18446744073709551615"}, "WATCHDOG_USEC"},
		{"bad pid", Config{Socket: "/run/n", WatchdogUSec: "1000", WatchdogPID: "me"}, "WATCHDOG_PID \"me\" is not a process id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "sdnotify: ") {
				t.Fatalf("New(%+v) = %v, %v; want an error containing %q", tt.cfg, n, err, tt.want)
			}
		})
	}
}

func TestWatchdogInterval(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want time.Duration
	}{
		{"unset", Config{Socket: "/run/n"}, 0},
		{"zero", Config{Socket: "/run/n", WatchdogUSec: "0"}, 0},
		{"half", Config{Socket: "/run/n", WatchdogUSec: "30000000"}, 15 * time.Second},
		{"our pid", Config{Socket: "/run/n", WatchdogUSec: "2000", WatchdogPID: "42", PID: 42}, time.Millisecond},
		{"own pid by default", Config{Socket: "/run/n", WatchdogUSec: "2000", WatchdogPID: strconv.Itoa(os.Getpid())}, time.Millisecond},
		{"another pid", Config{Socket: "/run/n", WatchdogUSec: "2000", WatchdogPID: "43", PID: 42}, 0},
		{"no socket", Config{WatchdogUSec: "2000"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := New(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := n.WatchdogInterval(); got != tt.want {
				t.Errorf("WatchdogInterval = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestWatchdog: with WATCHDOG_USEC 200 ms the pings come every 100 ms,
// the first at once; none while alive fails; Watchdog returns when ctx
// ends.
func TestWatchdog(t *testing.T) {
	name := filepath.Join(t.TempDir(), "notify")
	msgs := listen(t, name)
	n, err := New(Config{Socket: name, WatchdogUSec: "200000"})
	if err != nil {
		t.Fatal(err)
	}
	var sick = make(chan bool, 1)
	sick <- false
	alive := func() error {
		s := <-sick
		sick <- s
		if s {
			return errors.New("sick")
		}
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- n.Watchdog(ctx, alive) }()
	var at []time.Duration
	for range 6 {
		if m := next(t, msgs); m != "WATCHDOG=1\n" {
			t.Fatalf("got %q, want WATCHDOG=1", m)
		}
		at = append(at, time.Since(start))
	}
	if at[0] > 50*time.Millisecond {
		t.Errorf("first ping after %v, want at once", at[0])
	}
	// Five intervals of 100 ms; a loaded machine may be late, never early.
	if span := at[5] - at[0]; span < 450*time.Millisecond || span > 1500*time.Millisecond {
		t.Errorf("6 pings spanned %v, want about 500 ms (one each 100 ms): %v", span, at)
	}
	<-sick
	sick <- true
	// At most one ping was already on its way.
	time.Sleep(150 * time.Millisecond)
	for len(msgs) > 0 {
		<-msgs
	}
	select {
	case m := <-msgs:
		t.Errorf("got %q while alive failed", m)
	case <-time.After(400 * time.Millisecond):
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Watchdog returned %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watchdog did not return after ctx ended")
	}
}

// TestNoListener: a socket nobody listens on is an error, not a hang.
func TestNoListener(t *testing.T) {
	n, err := New(Config{Socket: filepath.Join(t.TempDir(), "none")})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Ready(""); err == nil || !strings.HasPrefix(err.Error(), "sdnotify: ") {
		t.Errorf("Ready to a missing socket = %v, want an sdnotify error", err)
	}
}
