package tunnel_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/spec"
	"github.com/pinhole-dev/pinhole/internal/ssh"
	"github.com/pinhole-dev/pinhole/internal/streamtest"
	"github.com/pinhole-dev/pinhole/internal/tunnel"
)

// serverLog keeps the server's log lines for a test to look at, and writes
// them to the test log too.
type serverLog struct {
	t  testing.TB
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *serverLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.b.Write(p)
	l.mu.Unlock()
	l.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (l *serverLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// count is how many lines have msg="msg".
func (l *serverLog) count(msg string) int {
	return strings.Count(l.String(), ` msg="`+msg+`" `)
}

// waitFor waits up to 5 s for n lines with msg="msg".
func (l *serverLog) waitFor(t *testing.T, msg string, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for l.count(msg) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d lines with msg=%q in the server log after 5 s, want %d:\n%s", l.count(msg), msg, n, l)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func newServerLog(t testing.TB) (*serverLog, *slog.Logger) {
	lb := &serverLog{t: t}
	return lb, slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// TestMaxAuthTries: 6 refused keys close the connection, with one "auth
// failed" line each and one "too many auth failures"; 5 refused keys and
// then the right one get in. The client calls it a refusal, not a
// network failure to retry.
func TestMaxAuthTries(t *testing.T) {
	good := newSigner(t)
	logs, log := newServerLog(t)
	srv := startServerConfig(t, nil, tunnel.ServerConfig{
		HostKeys:  []ssh.Signer{newSigner(t)},
		Authorize: keySet(t, authorizedLine("", good.PublicKey())),
		Logger:    log,
	})
	var bad []ssh.Signer
	for range 6 {
		bad = append(bad, newSigner(t))
	}
	dial := func(keys ...ssh.Signer) error {
		cfg := clientConfig(t, srv.addr, srv.hostKey.PublicKey(), good)
		cfg.Auth = []ssh.AuthMethod{ssh.PublicKeys(keys...)}
		cfg.Local = []spec.Forward{mustParse(t, spec.Local, "127.0.0.1:0:127.0.0.1:9")}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := tunnel.Dial(ctx, cfg)
		if err == nil {
			c.Close()
		}
		return err
	}
	err := dial(append(bad, good)...)
	if err == nil || !strings.Contains(err.Error(), "too many authentication failures") {
		t.Fatalf("7 keys, the last one good: %v; want a disconnect for too many authentication failures", err)
	}
	var fatal *tunnel.FatalError
	if !errorsAs(err, &fatal) {
		t.Errorf("too many failures is not a FatalError, so the client would retry it: %v", err)
	}
	logs.waitFor(t, "too many auth failures", 1)
	if n := logs.count("auth failed"); n != 6 {
		t.Errorf("%d auth failed lines for 6 refused keys, want 6", n)
	}
	if err := dial(append(bad[:5], good)...); err != nil {
		t.Fatalf("5 refused keys, then the good one: %v", err)
	}
}

func errorsAs(err error, target **tunnel.FatalError) bool {
	for err != nil {
		if f, ok := err.(*tunnel.FatalError); ok {
			*target = f
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

// TestHandshakeEndLines: a silent connection is closed at the login grace
// time with its own line, and garbage gets "handshake failed"; neither is
// an "auth failed".
func TestHandshakeEndLines(t *testing.T) {
	logs, log := newServerLog(t)
	srv := startServerConfig(t, nil, tunnel.ServerConfig{
		HostKeys:         []ssh.Signer{newSigner(t)},
		Authorize:        keySet(t, ""),
		HandshakeTimeout: 300 * time.Millisecond,
		Logger:           log,
	})
	silent, err := net.Dial("tcp", srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	began := time.Now()
	silent.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, silent); err != nil {
		t.Fatalf("silent connection: %v; want the server to close it", err)
	}
	if d := time.Since(began); d > 3*time.Second {
		t.Errorf("closed after %v, login grace is 300 ms", d)
	}
	logs.waitFor(t, "login grace expired", 1)

	garbage, err := net.Dial("tcp", srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer garbage.Close()
	fmt.Fprintf(garbage, "SSH-2.0-garbage\r\n%s", bytes.Repeat([]byte{0xff}, 64))
	garbage.SetReadDeadline(time.Now().Add(5 * time.Second))
	io.Copy(io.Discard, garbage)
	logs.waitFor(t, "handshake failed", 1)
	if n := logs.count("auth failed"); n != 0 {
		t.Errorf("%d auth failed lines for a timeout and a protocol error, want none", n)
	}
	if !regexp.MustCompile(`msg="login grace expired" peer=127\.0\.0\.1:\d+ `).MatchString(logs.String()) {
		t.Errorf("the login grace line does not start with peer=ADDR:PORT:\n%s", logs)
	}
}

// TestStartupsNeverRefuseAuthenticated: with every unauthenticated slot
// taken, a new connection is dropped, but a client that had logged in
// goes on opening streams; once the slots free up, new logins work.
func TestStartupsNeverRefuseAuthenticated(t *testing.T) {
	target := streamtest.NewTarget(t)
	key := newSigner(t)
	logs, log := newServerLog(t)
	srv := startServerConfig(t, nil, tunnel.ServerConfig{
		HostKeys:             []ssh.Signer{newSigner(t)},
		Authorize:            keySet(t, authorizedLine("", key.PublicKey())),
		MaxStartups:          tunnel.Startups{Start: 2, Rate: 100, Full: 2},
		PerSourceMaxStartups: -1,
		HandshakeTimeout:     2 * time.Second,
		Logger:               log,
	})
	cfg := clientConfig(t, srv.addr, srv.hostKey.PublicKey(), key)
	cfg.Local = []spec.Forward{mustParse(t, spec.Local, fmt.Sprintf("127.0.0.1:0:127.0.0.1:%d", target.Port()))}
	c := dialClient(t, cfg)
	// The client's own login leaves its slot when the server has logged
	// it in, which may be a moment after the client knows.
	logs.waitFor(t, "client connected", 1)

	for _, src := range []string{"127.0.0.2", "127.0.0.3"} {
		conn := dialFrom(t, src, srv.addr)
		defer conn.Close()
	}
	waitUnauthenticated(t, srv.srv, 2)
	dropped := dialFrom(t, "127.0.0.4", srv.addr)
	defer dropped.Close()
	dropped.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, _ := dropped.Read(make([]byte, 64)); n != 0 {
		t.Fatalf("a connection past MaxStartups got %d bytes, want to be dropped", n)
	}
	logs.waitFor(t, "startup dropped", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for range 3 {
		conn, err := net.Dial("tcp", c.LocalAddrs()[0].String())
		if err != nil {
			t.Fatal(err)
		}
		if err := streamtest.Exchange(ctx, conn, 1, 64<<10, 64<<10); err != nil {
			t.Fatalf("a stream of the logged-in client while the slots are full: %v", err)
		}
		conn.Close()
	}
	waitUnauthenticated(t, srv.srv, 0) // the login grace time closed the silent two
	dialClient(t, cfg)
}

func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return conn
}

func waitUnauthenticated(t *testing.T, srv *tunnel.Server, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for srv.Startups().Unauthenticated != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d unauthenticated connections after 10 s, want %d", srv.Startups().Unauthenticated, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
