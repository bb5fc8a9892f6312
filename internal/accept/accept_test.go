package accept

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeListener returns errs in order, then conns, then net.ErrClosed.
type fakeListener struct {
	mu    sync.Mutex
	errs  []error
	conns []net.Conn
}

func (l *fakeListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) > 0 {
		err := l.errs[0]
		l.errs = l.errs[1:]
		if err != nil {
			return nil, err
		}
	}
	if len(l.conns) > 0 {
		c := l.conns[0]
		l.conns = l.conns[1:]
		return c, nil
	}
	return nil, net.ErrClosed
}

func (l *fakeListener) Close() error   { return nil }
func (l *fakeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9} }

func emfile() error {
	return &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
}

func TestLoopBacksOffAndSaysSoOnce(t *testing.T) {
	old := quiet
	quiet = 0
	defer func() { quiet = old }()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	// Two episodes: three failures, a connection, two failures, a connection.
	ln := &fakeListener{errs: []error{emfile(), emfile(), emfile(), nil, emfile(), emfile()}, conns: []net.Conn{a, b}}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	var got []net.Conn
	start := time.Now()
	err := Loop(ln, log, func(c net.Conn) { got = append(got, c) })
	if !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Loop = %v, want net.ErrClosed", err)
	}
	if len(got) != 2 {
		t.Fatalf("handled %d connections, want 2", len(got))
	}
	// 5+10+20 ms, then 5+10 ms: the delay starts again after a success.
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("Loop took %v through five EMFILEs; it did not back off", d)
	}
	text := logs.String()
	if n := strings.Count(text, "accept failed"); n != 2 {
		t.Errorf("%d 'accept failed' lines for two episodes, want 2:\n%s", n, text)
	}
	if n := strings.Count(text, "accepting again"); n != 2 {
		t.Errorf("%d 'accepting again' lines, want 2:\n%s", n, text)
	}
	if !strings.Contains(text, "failures=3") {
		t.Errorf("the first episode's end does not count its 3 failures:\n%s", text)
	}
}

// TestLoopFlapping: a listener at its descriptor limit passes one accept
// and fails again, over and over. The episodes after the first within
// quiet are counted, not logged, and the next logged one tells how many.
func TestLoopFlapping(t *testing.T) {
	old := quiet
	quiet = 150 * time.Millisecond
	defer func() { quiet = old }()
	var errs []error
	var conns []net.Conn
	for range 4 {
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		errs = append(errs, emfile(), nil)
		conns = append(conns, a)
	}
	// After four quick episodes, one failure that backs off past quiet:
	// 5+10+20+40+80 ms of failures before the fifth connection.
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	for range 5 {
		errs = append(errs, emfile())
	}
	errs = append(errs, nil, emfile())
	conns = append(conns, a, b)
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	n := 0
	if err := Loop(&fakeListener{errs: errs, conns: conns}, log, func(net.Conn) { n++ }); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Loop = %v, want net.ErrClosed", err)
	}
	if n != 6 {
		t.Fatalf("handled %d connections, want 6", n)
	}
	text := logs.String()
	if n := strings.Count(text, "accept failed"); n != 2 {
		t.Errorf("%d 'accept failed' lines, want 2 (the first and the one after quiet):\n%s", n, text)
	}
	if n := strings.Count(text, "accepting again"); n != 2 {
		t.Errorf("%d 'accepting again' lines, want 2:\n%s", n, text)
	}
	if !strings.Contains(text, "episodes_unlogged=4") {
		t.Errorf("the second logged episode does not count the 4 it left out:\n%s", text)
	}
}

func TestLoopReturnsLastingErrors(t *testing.T) {
	bad := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EINVAL)}
	err := Loop(&fakeListener{errs: []error{bad}}, nil, func(net.Conn) { t.Error("handle called") })
	if !errors.Is(err, syscall.EINVAL) || errors.Is(err, net.ErrClosed) {
		t.Fatalf("Loop = %v, want EINVAL", err)
	}
}

func TestPassing(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{emfile(), true},
		{fmt.Errorf("x: %w", syscall.ENFILE), true},
		{syscall.ENOBUFS, true},
		{syscall.ENOMEM, true},
		{syscall.ECONNABORTED, true},
		{os.ErrDeadlineExceeded, true},
		{syscall.EINVAL, false},
		{net.ErrClosed, false},
		{errors.New("other"), false},
	} {
		if got := Passing(tc.err); got != tc.want {
			t.Errorf("Passing(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestLoopRealListener: closing a real listener ends the loop with
// net.ErrClosed, and connections before that are handled.
func TestLoopRealListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	handled := make(chan net.Conn, 1)
	done := make(chan error, 1)
	go func() { done <- Loop(ln, nil, func(c net.Conn) { handled <- c }) }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case s := <-handled:
		s.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("no connection handled")
	}
	ln.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Loop = %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Loop did not return after Close")
	}
}
