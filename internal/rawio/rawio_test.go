package rawio

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/streamtest"
)

func skipUnsupported(t *testing.T) {
	// Not a descriptor: EBADF where raw calls work, and nothing can block.
	if _, err := ReadOnce(^uintptr(0), make([]byte, 1)); errors.Is(err, errors.ErrUnsupported) {
		t.Skipf("no raw socket calls on %s: NewReader and NewWriter return the connection itself", runtime.GOOS)
	}
}

// TestRoundTrip sends more than the sockets hold both ways at once, so
// that writes meet a full socket and wait in the poller, and checks every
// byte.
func TestRoundTrip(t *testing.T) {
	skipUnsupported(t)
	a, b := streamtest.TCPPair(t)
	msg := make([]byte, 8<<20)
	for i := range msg {
		msg[i] = byte(i*7 + i>>11)
	}
	want := sha256.Sum256(msg)
	type result struct {
		sum [32]byte
		n   int64
		err error
	}
	got := make(chan result, 2)
	recv := func(c *net.TCPConn) {
		h := sha256.New()
		n, err := io.Copy(h, NewReader(c))
		var r result
		copy(r.sum[:], h.Sum(nil))
		r.n, r.err = n, err
		got <- r
	}
	go recv(a)
	go recv(b)
	send := func(c *net.TCPConn) {
		w := NewWriter(c)
		// Uneven pieces, so that some writes end mid-way.
		for p := msg; len(p) > 0; {
			k := min(len(p), 300_001)
			n, err := w.Write(p[:k])
			if err != nil || n != k {
				t.Errorf("Write of %d: %d, %v", k, n, err)
				return
			}
			p = p[k:]
		}
		c.CloseWrite()
	}
	done := make(chan struct{})
	go func() { send(a); close(done) }()
	send(b)
	<-done
	for range 2 {
		r := <-got
		if r.err != nil || r.n != int64(len(msg)) || r.sum != want {
			t.Errorf("received %d bytes (%v), sha256 matches: %v; want %d", r.n, r.err, r.sum == want, len(msg))
		}
	}
}

func TestReadEOF(t *testing.T) {
	skipUnsupported(t)
	a, b := streamtest.TCPPair(t)
	a.Write([]byte("last words"))
	a.CloseWrite()
	got, err := io.ReadAll(NewReader(b))
	if err != nil || string(got) != "last words" {
		t.Fatalf("ReadAll = %q, %v; want %q, nil", got, err, "last words")
	}
	if n, err := NewReader(b).Read(make([]byte, 8)); n != 0 || err != io.EOF {
		t.Fatalf("Read after EOF = %d, %v; want 0, io.EOF", n, err)
	}
}

// TestErrors checks that errors read as the net package's own: the
// deadline, the closed connection and the peer's reset are all
// *net.OpError that errors.Is finds the cause in.
func TestErrors(t *testing.T) {
	skipUnsupported(t)
	buf := make([]byte, 64)

	t.Run("read deadline", func(t *testing.T) {
		_, b := streamtest.TCPPair(t)
		b.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		_, err := NewReader(b).Read(buf)
		var ne net.Error
		if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("Read past the deadline: %v; want a timeout", err)
		}
		checkOp(t, err, "read")
	})
	t.Run("write deadline", func(t *testing.T) {
		a, _ := streamtest.TCPPair(t) // the peer never reads
		big := make([]byte, 64<<20)   // before the deadline: it takes a while
		a.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
		n, err := NewWriter(a).Write(big)
		if !errors.Is(err, os.ErrDeadlineExceeded) || n == 0 || n == 64<<20 {
			t.Fatalf("Write past the deadline: %d, %v; want part written and a timeout", n, err)
		}
		checkOp(t, err, "write")
	})
	t.Run("closed", func(t *testing.T) {
		a, _ := streamtest.TCPPair(t)
		r, w := NewReader(a), NewWriter(a)
		a.Close()
		_, err := r.Read(buf)
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Read after Close: %v; want net.ErrClosed", err)
		}
		checkOp(t, err, "read")
		_, err = w.Write(buf)
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Write after Close: %v; want net.ErrClosed", err)
		}
		checkOp(t, err, "write")
	})
	t.Run("reset", func(t *testing.T) {
		a, b := streamtest.TCPPair(t)
		b.SetLinger(0)
		b.Close() // sends RST
		time.Sleep(20 * time.Millisecond)
		_, err := NewReader(a).Read(buf)
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("Read after the peer's reset: %v; want ECONNRESET", err)
		}
		checkOp(t, err, "read")
		var n int
		for range 10 { // the first write after a reset may still go out
			if n, err = NewWriter(a).Write(buf); err != nil {
				break
			}
		}
		if !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("Write after the peer's reset: %d, %v; want EPIPE or ECONNRESET", n, err)
		}
		checkOp(t, err, "write")
	})
}

func checkOp(t *testing.T, err error, op string) {
	t.Helper()
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != op || oe.Net != "tcp" || oe.Addr == nil {
		t.Errorf("error %#v; want a *net.OpError for %q on tcp with addresses", err, op)
	}
}

// TestOnce checks the single calls on a socket's descriptor: nothing to
// read is EAGAIN, not a wait.
func TestOnce(t *testing.T) {
	skipUnsupported(t)
	a, b := streamtest.TCPPair(t)
	rc, err := b.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 16)
	var n int
	var rerr error
	rc.Read(func(fd uintptr) bool { n, rerr = ReadOnce(fd, buf); return true })
	if n != 0 || rerr != syscall.EAGAIN {
		t.Fatalf("ReadOnce on an empty socket = %d, %v; want 0, EAGAIN", n, rerr)
	}
	wc, err := a.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	wc.Write(func(fd uintptr) bool { n, rerr = WriteOnce(fd, []byte("hello")); return true })
	if n != 5 || rerr != nil {
		t.Fatalf("WriteOnce = %d, %v; want 5, nil", n, rerr)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(NewReader(b), got); err != nil || !bytes.Equal(got, []byte("hello")) {
		t.Fatalf("read back %q, %v", got, err)
	}
}
