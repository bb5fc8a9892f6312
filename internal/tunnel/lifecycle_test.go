package tunnel_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/proxy"

	"github.com/pinhole-dev/pinhole/internal/ssh"

	"github.com/pinhole-dev/pinhole/internal/spec"
	"github.com/pinhole-dev/pinhole/internal/streamtest"
	"github.com/pinhole-dev/pinhole/internal/tunnel"
)

// waitFor polls cond every 20 ms until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// echoThrough sends msg through addr and checks that it comes back.
func echoThrough(addr string, msg []byte) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	go c.Write(msg)
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if !bytes.Equal(got, msg) {
		return errors.New("echo came back different")
	}
	return nil
}

// TestForwardHandles: forwards of every kind added to a running client
// work, say where they listen, count their bytes and streams exactly, and
// closing one leaves the others working.
func TestForwardHandles(t *testing.T) {
	echo := streamtest.NewEcho(t)
	clientKey := newSigner(t)
	srv := startServer(t, nil, newSigner(t), keySet(t, authorizedLine("", clientKey.PublicKey())))
	c := dialClient(t, clientConfig(t, srv.addr, srv.hostKey.PublicKey(), clientKey))
	if st := c.State(); st != tunnel.StateUp {
		t.Fatalf("client state %v after Dial, want up", st)
	}
	if n := len(c.Forwardings()); n != 0 {
		t.Fatalf("%d forwards on a client dialed with none", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	add := func(k spec.Kind, s string) *tunnel.Forwarding {
		t.Helper()
		f, err := c.Forward(ctx, mustParse(t, k, s))
		if err != nil {
			t.Fatalf("Forward(%s %s): %v", k, s, err)
		}
		if st := f.State(); st != tunnel.StateUp {
			t.Fatalf("%s %s: state %v, want up", k, s, st)
		}
		if !f.Addr().IsValid() || f.Addr().Port() == 0 {
			t.Fatalf("%s %s: Addr %v", k, s, f.Addr())
		}
		return f
	}
	lf := add(spec.Local, "127.0.0.1:0:"+echo.Addr())
	rf := add(spec.Remote, "0:"+echo.Addr())
	df := add(spec.Dynamic, "127.0.0.1:0")
	if got := len(c.Forwardings()); got != 3 {
		t.Fatalf("Forwardings: %d, want 3", got)
	}

	msg := bytes.Repeat([]byte("pinhole "), 40000) // 320000 bytes
	for _, f := range []*tunnel.Forwarding{lf, rf} {
		if err := echoThrough(f.Addr().String(), msg); err != nil {
			t.Fatalf("%v through %s: %v", f.Spec(), f.Addr(), err)
		}
	}
	d, err := proxy.SOCKS5("tcp", df.Addr().String(), nil, proxy.Direct)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := d.Dial("tcp", echo.Addr())
	if err != nil {
		t.Fatal(err)
	}
	go sc.Write(msg)
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(sc, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("through -D: %v", err)
	}
	sc.Close()

	for _, f := range []*tunnel.Forwarding{lf, rf, df} {
		want := tunnel.Stats{ToTarget: int64(len(msg)), FromTarget: int64(len(msg)), StreamsTotal: 1}
		waitFor(t, 5*time.Second, fmt.Sprintf("%v's stats", f.Spec()), func() bool { return f.Stats() == want })
	}
	if s := c.Stats(); s.ToTarget != 3*int64(len(msg)) || s.StreamsTotal != 3 {
		t.Fatalf("client stats %+v: want 3 streams and %d bytes each way", s, 3*len(msg))
	}

	// A stream to a port where nothing listens is counted as refused.
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead.Close()
	bad := add(spec.Local, "127.0.0.1:0:"+dead.Addr().String())
	if err := echoThrough(bad.Addr().String(), []byte("x")); err == nil {
		t.Fatal("a stream to a closed port echoed")
	}
	waitFor(t, 5*time.Second, "the refused stream counted", func() bool { return bad.Stats().StreamsRefused == 1 })

	// Closing the -R cancels it on the server; the others go on.
	rport := rf.Addr().String()
	rf.Close()
	rf.Close() // idempotent
	if rf.State() != tunnel.StateClosed {
		t.Fatalf("-R state %v after Close", rf.State())
	}
	waitFor(t, 5*time.Second, "the server to stop listening for the closed -R", func() bool {
		conn, err := net.Dial("tcp", rport)
		if err != nil {
			return true
		}
		conn.Close()
		return false
	})
	lport := lf.Addr().String()
	lf.Close()
	if conn, err := net.Dial("tcp", lport); err == nil {
		conn.Close()
		t.Fatal("the closed -L still accepts")
	}
	sc, err = d.Dial("tcp", echo.Addr())
	if err != nil {
		t.Fatalf("-D after closing the other forwards: %v", err)
	}
	sc.Close()
	if n := len(c.Forwardings()); n != 2 {
		t.Fatalf("Forwardings after closing two of four: %d, want 2", n)
	}
	// The client's figures keep what the closed forwards carried.
	if s := c.Stats(); s.StreamsTotal < 4 || s.ToTarget < 3*int64(len(msg)) {
		t.Fatalf("client stats after closing forwards: %+v", s)
	}
}

// TestForwardWhileReconnecting: a forward added while the server is down
// is applied when it comes back; one added before works again after.
func TestForwardWhileReconnecting(t *testing.T) {
	echo := streamtest.NewEcho(t)
	clientKey, hostKey := newSigner(t), newSigner(t)
	authorize := keySet(t, authorizedLine("", clientKey.PublicKey()))
	srv := startServer(t, nil, hostKey, authorize)
	cfg := clientConfig(t, srv.addr, hostKey.PublicKey(), clientKey)
	cfg.Local = []spec.Forward{mustParse(t, spec.Local, "127.0.0.1:0:"+echo.Addr())}
	c := dialClient(t, cfg)
	srv.srv.Close()
	waitFor(t, 10*time.Second, "the client to notice", func() bool { return c.State() == tunnel.StateReconnecting })

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rf, err := c.Forward(ctx, mustParse(t, spec.Remote, "0:"+echo.Addr()))
	if err != nil {
		t.Fatalf("Forward while reconnecting: %v", err)
	}
	if st := rf.State(); st != tunnel.StateReconnecting {
		t.Fatalf("-R added while reconnecting: state %v", st)
	}
	lf2, err := c.Forward(ctx, mustParse(t, spec.Local, "127.0.0.1:0:"+echo.Addr()))
	if err != nil {
		t.Fatalf("-L while reconnecting: %v", err)
	}
	ln, err := net.Listen("tcp", srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	startServer(t, ln, hostKey, authorize)
	waitFor(t, 10*time.Second, "the -R added while down to be in place", func() bool { return rf.State() == tunnel.StateUp })
	for _, addr := range []string{c.LocalAddrs()[0].String(), lf2.Addr().String(), rf.Addr().String()} {
		if err := echoThrough(addr, []byte("back")); err != nil {
			t.Fatalf("through %s after the server came back: %v", addr, err)
		}
	}
}

// TestCloseInEveryState: Close returns within a second whatever the client
// is doing, and afterwards nothing of it is left working.
func TestCloseInEveryState(t *testing.T) {
	echo := streamtest.NewEcho(t)
	clientKey, hostKey := newSigner(t), newSigner(t)
	authorize := keySet(t, authorizedLine("", clientKey.PublicKey()))
	closeWithin := func(t *testing.T, c *tunnel.Client) {
		t.Helper()
		start := time.Now()
		c.Close()
		if d := time.Since(start); d > time.Second {
			t.Fatalf("Close took %v", d)
		}
		if c.State() != tunnel.StateClosed {
			t.Fatalf("state %v after Close", c.State())
		}
		select {
		case <-c.Done():
		default:
			t.Fatal("Done not closed after Close")
		}
		c.Close() // again, at once
	}
	// withStream is a client up with one stream open through its -L.
	withStream := func(t *testing.T) (*tunnel.Client, net.Conn) {
		srv := startServer(t, nil, hostKey, authorize)
		cfg := clientConfig(t, srv.addr, hostKey.PublicKey(), clientKey)
		cfg.Local = []spec.Forward{mustParse(t, spec.Local, "127.0.0.1:0:"+echo.Addr())}
		c := dialClient(t, cfg)
		conn, err := net.Dial("tcp", c.LocalAddrs()[0].String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		conn.Write([]byte("x"))
		if _, err := conn.Read(make([]byte, 1)); err != nil {
			t.Fatalf("the stream before Close: %v", err)
		}
		return c, conn
	}
	t.Run("up with streams", func(t *testing.T) {
		c, conn := withStream(t)
		closeWithin(t, c)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Read(make([]byte, 1)); err == nil || os.IsTimeout(err) {
			t.Fatalf("stream still open after Close: %v", err)
		}
	})
	t.Run("reconnecting to a closed port", func(t *testing.T) {
		srv := startServer(t, nil, hostKey, authorize)
		c := dialClient(t, clientConfig(t, srv.addr, hostKey.PublicKey(), clientKey))
		srv.srv.Close()
		waitFor(t, 10*time.Second, "reconnecting", func() bool { return c.State() == tunnel.StateReconnecting })
		time.Sleep(300 * time.Millisecond) // into the backoff
		closeWithin(t, c)
	})
	t.Run("reconnecting to a silent server", func(t *testing.T) {
		srv := startServer(t, nil, hostKey, authorize)
		hole := newBlackhole(t, srv.addr)
		// Once the path is frozen, connections reach a listener that
		// accepts and never speaks, so the reconnect hangs in its
		// handshake.
		silent, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer silent.Close()
		go func() {
			var held []net.Conn
			defer func() {
				for _, c := range held {
					c.Close()
				}
			}()
			for {
				s, err := silent.Accept()
				if err != nil {
					return
				}
				held = append(held, s)
			}
		}()
		var frozen atomic.Bool
		cfg := clientConfig(t, hole.ln.Addr().String(), hostKey.PublicKey(), clientKey)
		cfg.KeepaliveInterval = 200 * time.Millisecond
		cfg.ConnectTimeout = time.Minute
		cfg.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			if frozen.Load() {
				addr = silent.Addr().String()
			}
			return new(net.Dialer).DialContext(ctx, network, addr)
		}
		c := dialClient(t, cfg)
		frozen.Store(true)
		hole.freeze()
		waitFor(t, 10*time.Second, "reconnecting", func() bool { return c.State() == tunnel.StateReconnecting })
		time.Sleep(time.Second) // into a handshake that never ends
		closeWithin(t, c)
	})
	t.Run("draining", func(t *testing.T) {
		c, _ := withStream(t) // the open stream holds the drain
		done := make(chan error, 1)
		go func() { done <- c.Shutdown(context.Background()) }()
		waitFor(t, 5*time.Second, "draining", func() bool { return c.State() == tunnel.StateDraining })
		closeWithin(t, c)
		select {
		case err := <-done:
			if err != nil {
				t.Logf("Shutdown after Close: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Shutdown did not return after Close")
		}
	})
}

// sum256 is the SHA-256 of what r gives until EOF, and how much that was.
func sum256(r io.Reader) ([32]byte, int64, error) {
	h := sha256.New()
	n, err := io.Copy(h, r)
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s, n, err
}

// bigTransfer writes size deterministic bytes to conn, half-closes it, and
// reports the SHA-256 and length of what comes back (an echo).
func bigTransfer(conn *net.TCPConn, size int64) (sent, got [32]byte, n int64, err error) {
	src := io.LimitReader(rand.NewChaCha8([32]byte{7}), size)
	h := sha256.New()
	werr := make(chan error, 1)
	go func() {
		_, err := io.Copy(conn, io.TeeReader(src, h))
		conn.CloseWrite()
		werr <- err
	}()
	got, n, err = sum256(conn)
	if e := <-werr; err == nil {
		err = e
	}
	copy(sent[:], h.Sum(nil))
	return sent, got, n, err
}

// transfer is a 64 MiB echo through a forward, running.
type transfer struct {
	conn *net.TCPConn
	res  chan transferResult
}

type transferResult struct {
	sent, got [32]byte
	n         int64
	err       error
}

const transferSize = 64 << 20

// startTransfer starts a 64 MiB exchange with the echo behind laddr.
func startTransfer(t *testing.T, laddr string) *transfer {
	t.Helper()
	conn, err := net.Dial("tcp", laddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	tr := &transfer{conn: conn.(*net.TCPConn), res: make(chan transferResult, 1)}
	go func() {
		s, g, n, err := bigTransfer(tr.conn, transferSize)
		tr.res <- transferResult{s, g, n, err}
	}()
	return tr
}

// check fails the test unless every byte came back as sent.
func (tr *transfer) check(t *testing.T, through string) {
	t.Helper()
	r := <-tr.res
	if r.err != nil || r.n != transferSize || r.sent != r.got {
		t.Fatalf("transfer through a draining %s: %d of %d bytes back (%v), checksums equal: %v", through, r.n, transferSize, r.err, r.sent == r.got)
	}
	tr.conn.Close()
}

// TestClientShutdownDrains: a 64 MiB transfer in flight when Shutdown
// starts completes byte for byte, while new connections are refused.
func TestClientShutdownDrains(t *testing.T) {
	echo := streamtest.NewEcho(t)
	clientKey, hostKey := newSigner(t), newSigner(t)
	srv := startServer(t, nil, hostKey, keySet(t, authorizedLine("", clientKey.PublicKey())))
	cfg := clientConfig(t, srv.addr, hostKey.PublicKey(), clientKey)
	cfg.Local = []spec.Forward{mustParse(t, spec.Local, "127.0.0.1:0:"+echo.Addr())}
	c := dialClient(t, cfg)
	laddr := c.LocalAddrs()[0].String()
	tr := startTransfer(t, laddr)
	waitFor(t, 10*time.Second, "the transfer to start", func() bool { return c.Stats().ToTarget > 1<<20 })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- c.Shutdown(ctx) }()
	waitFor(t, 5*time.Second, "the -L listener to close", func() bool {
		nc, err := net.Dial("tcp", laddr)
		if err != nil {
			return true
		}
		nc.Close()
		return false
	})
	tr.check(t, "client")
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// TestServerShutdownDrains: the same for the server, whose draining also
// closes the remote forwards' listeners and refuses new streams and
// remote forwards on the connections it has.
func TestServerShutdownDrains(t *testing.T) {
	echo := streamtest.NewEcho(t)
	clientKey, hostKey := newSigner(t), newSigner(t)
	srv := startServer(t, nil, hostKey, keySet(t, authorizedLine("", clientKey.PublicKey())))
	cfg := clientConfig(t, srv.addr, hostKey.PublicKey(), clientKey)
	cfg.Local = []spec.Forward{mustParse(t, spec.Local, "127.0.0.1:0:"+echo.Addr())}
	cfg.Remote = []spec.Forward{mustParse(t, spec.Remote, "0:"+echo.Addr())}
	c := dialClient(t, cfg)
	laddr := c.LocalAddrs()[0].String()
	tr := startTransfer(t, laddr)
	waitFor(t, 10*time.Second, "the transfer to start", func() bool { return srv.srv.Stats().ToTarget > 1<<20 })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- srv.srv.Shutdown(ctx) }()
	for _, addr := range []string{srv.addr, c.Forwardings()[1].Addr().String()} {
		waitFor(t, 5*time.Second, "the server's listener on "+addr+" to close", func() bool {
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				return true
			}
			nc.Close()
			return false
		})
	}
	// A new stream on the open connection is refused while draining.
	if err := echoThrough(laddr, []byte("new")); err == nil {
		t.Fatal("a new stream was opened on a draining server")
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	rf, err := c.Forward(ctx2, mustParse(t, spec.Remote, "0:"+echo.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	if rf.State() == tunnel.StateUp || rf.Err() == nil || !strings.Contains(rf.Err().Error(), "shutting down") {
		t.Fatalf("-R asked of a draining server: state %v, err %v; want refused as shutting down", rf.State(), rf.Err())
	}
	tr.check(t, "server")
	select {
	case err := <-shut:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return after the last stream ended")
	}
}

// TestTakeover: a key that asks for a -R port its own dead connection
// holds gets it in the same request; a live holder keeps it.
func TestTakeover(t *testing.T) {
	echo := streamtest.NewEcho(t)
	key, hostKey := newSigner(t), newSigner(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := startServerConfig(t, ln, tunnel.ServerConfig{
		HostKeys:          []ssh.Signer{hostKey},
		Authorize:         keySet(t, authorizedLine("", key.PublicKey())),
		KeepaliveInterval: time.Hour, // only the probe can tell the holder is dead
		TakeoverProbe:     500 * time.Millisecond,
		Logger:            testLogger(t).With("side", "server"),
	})
	port := freePort(t)
	fwd := fmt.Sprintf("%d:%s", port, echo.Addr())
	remote := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))

	// The first client reaches the server through a path that goes silent.
	hole := newBlackhole(t, srv.addr)
	cfgA := clientConfig(t, hole.ln.Addr().String(), hostKey.PublicKey(), key)
	cfgA.KeepaliveInterval = time.Hour
	cfgA.Remote = []spec.Forward{mustParse(t, spec.Remote, fwd)}
	a := dialClient(t, cfgA)
	if a.Forwardings()[0].State() != tunnel.StateUp {
		t.Fatalf("first client's -R: %v", a.Forwardings()[0].Err())
	}

	// While it lives, the same key from elsewhere is refused with a reason.
	cfgB := clientConfig(t, srv.addr, hostKey.PublicKey(), key)
	cfgB.Remote = []spec.Forward{mustParse(t, spec.Remote, fwd)}
	cfgB.BackoffMin, cfgB.BackoffMax = time.Hour, time.Hour // no retry: see the first answer
	b := dialClient(t, cfgB)
	if f := b.Forwardings()[0]; f.State() == tunnel.StateUp || f.Err() == nil || !strings.Contains(f.Err().Error(), "live connection with this key") {
		t.Fatalf("second client while the first lives: state %v, err %v", f.State(), f.Err())
	}
	b.Close()

	hole.freeze()
	start := time.Now()
	c := dialClient(t, cfgB)
	took := time.Since(start)
	f := c.Forwardings()[0]
	if f.State() != tunnel.StateUp {
		t.Fatalf("the same key after its old connection went silent: %v (took %v)", f.Err(), took)
	}
	if took > 3*time.Second {
		t.Fatalf("taking the port over took %v with a 500 ms probe", took)
	}
	if err := echoThrough(remote, []byte("taken over")); err != nil {
		t.Fatalf("through the port taken over: %v", err)
	}
	t.Logf("port taken over from a silent connection in %v", took)
}

// freePort is a TCP port nobody listens on just now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// TestRemoteRetryBackoff: a -R the server refuses because its port is
// taken is asked again at most BackoffMax apart, so it is in place soon
// after the port frees, not after a backoff that kept doubling.
func TestRemoteRetryBackoff(t *testing.T) {
	echo := streamtest.NewEcho(t)
	clientKey, hostKey := newSigner(t), newSigner(t)
	srv := startServer(t, nil, hostKey, keySet(t, authorizedLine("", clientKey.PublicKey())))
	squatter, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := squatter.Addr().(*net.TCPAddr).Port
	cfg := clientConfig(t, srv.addr, hostKey.PublicKey(), clientKey)
	cfg.BackoffMin, cfg.BackoffMax = 50*time.Millisecond, 200*time.Millisecond
	cfg.Remote = []spec.Forward{mustParse(t, spec.Remote, fmt.Sprintf("%d:%s", port, echo.Addr()))}
	c := dialClient(t, cfg)
	f := c.Forwardings()[0]
	if f.State() != tunnel.StateConnecting || f.Err() == nil {
		t.Fatalf("-R on a taken port: state %v, err %v; want connecting with the refusal", f.State(), f.Err())
	}
	time.Sleep(2 * time.Second) // a doubling backoff would be at 1.6 s by now
	squatter.Close()
	freed := time.Now()
	waitFor(t, 5*time.Second, "the -R in place after its port freed", func() bool { return f.State() == tunnel.StateUp })
	if d := time.Since(freed); d > 800*time.Millisecond {
		t.Fatalf("-R in place %v after its port freed, with BackoffMax 200 ms", d)
	}
}

// TestUDPForwardHandles: /udp forwards added to a running client carry
// datagrams, count them (a flow is a stream), and closing the -R one
// cancels it on the server (cancel-udp-forward@pinhole) so that its port
// is free again.
func TestUDPForwardHandles(t *testing.T) {
	echo := streamtest.NewUDPEcho(t)
	clientKey := newSigner(t)
	srv := startServer(t, nil, newSigner(t), keySet(t, authorizedLine("", clientKey.PublicKey())))
	c := dialClient(t, clientConfig(t, srv.addr, srv.hostKey.PublicKey(), clientKey))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	target := echo.LocalAddr().String()
	var fs []*tunnel.Forwarding
	for _, s := range []struct {
		k    spec.Kind
		spec string
	}{{spec.Local, "127.0.0.1:0:" + target + "/udp"}, {spec.Remote, "0:" + target + "/udp"}} {
		f, err := c.Forward(ctx, mustParse(t, s.k, s.spec))
		if err != nil || f.State() != tunnel.StateUp {
			t.Fatalf("Forward(%s): %v, state %v (%v)", s.spec, err, f.State(), f.Err())
		}
		fs = append(fs, f)
	}
	msg := bytes.Repeat([]byte("u"), 1000)
	for _, f := range fs {
		uc := dialUDP(t, f.Addr().String())
		if err := roundTrip(uc, msg); err != nil {
			t.Fatalf("through %v at %s: %v", f.Spec(), f.Addr(), err)
		}
		waitFor(t, 5*time.Second, fmt.Sprintf("%v's counts", f.Spec()), func() bool {
			s := f.Stats()
			// A lost and resent datagram counts again.
			return s.StreamsTotal == 1 && s.ToTarget >= int64(len(msg)) && s.FromTarget >= int64(len(msg)) && s.ToTarget%int64(len(msg)) == 0
		})
	}
	rf := fs[1]
	raddr := rf.Addr().String()
	rf.Close()
	waitFor(t, 5*time.Second, "the -R/udp port to be free on the server", func() bool {
		pc, err := net.ListenPacket("udp", raddr)
		if err != nil {
			return false
		}
		pc.Close()
		return true
	})
	if err := roundTrip(dialUDP(t, fs[0].Addr().String()), msg); err != nil {
		t.Fatalf("-L/udp after closing the -R/udp: %v", err)
	}
}

// TestServerShutdownWithRemoteForward: Shutdown of a server that has a
// connection holding a -R (TCP and UDP) returns; closing that listener
// under the server's lock once deadlocked it.
func TestServerShutdownWithRemoteForward(t *testing.T) {
	echo := streamtest.NewEcho(t)
	clientKey, hostKey := newSigner(t), newSigner(t)
	srv := startServer(t, nil, hostKey, keySet(t, authorizedLine("", clientKey.PublicKey())))
	cfg := clientConfig(t, srv.addr, hostKey.PublicKey(), clientKey)
	cfg.Remote = []spec.Forward{mustParse(t, spec.Remote, "0:"+echo.Addr()), mustParse(t, spec.Remote, "0:"+echo.Addr()+"/udp")}
	c := dialClient(t, cfg)
	for _, f := range c.Forwardings() {
		waitFor(t, 10*time.Second, "the -R to be up", func() bool { return f.State() == tunnel.StateUp })
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- srv.srv.Shutdown(ctx) }()
	select {
	case err := <-shut:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown of a server with a remote forward open did not return in 5 s")
	}
}
