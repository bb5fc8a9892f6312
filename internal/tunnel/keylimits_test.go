package tunnel_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/spec"
	"github.com/pinhole-dev/pinhole/internal/ssh"
	"github.com/pinhole-dev/pinhole/internal/streamtest"
	"github.com/pinhole-dev/pinhole/internal/tunnel"
	"github.com/pinhole-dev/pinhole/internal/vhost"
)

// rawClient logs in to srv with key as a pinhole peer (so that refused
// forwards carry their reason) through the SSH library alone, for tests
// that read each refusal.
func rawClient(t testing.TB, srv *server, key ssh.Signer) *ssh.Client {
	t.Helper()
	c, err := ssh.Dial("tcp", srv.addr, &ssh.ClientConfig{
		User:            "tester",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(key)},
		HostKeyCallback: ssh.FixedHostKey(srv.hostKey.PublicKey()),
		ClientVersion:   "SSH-2.0-pinhole_test",
		Timeout:         10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// holdTarget accepts connections and keeps each open, reading, until its
// peer closes it or the test ends.
func holdTarget(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				io.Copy(io.Discard, c)
				c.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// closeTarget accepts connections and closes each at once.
func closeTarget(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ln.Addr().String()
}

// openReason opens a direct-tcpip channel to addr, returning it, or the
// refusal's reason text.
func openReason(c *ssh.Client, addr string) (net.Conn, string) {
	conn, err := c.Dial("tcp", addr)
	if err == nil {
		return conn, ""
	}
	var oe *ssh.OpenChannelError
	if errors.As(err, &oe) {
		return nil, oe.Message
	}
	return nil, err.Error()
}

// waitStreams waits up to 5 s for the key's open streams on srv to be n.
func waitStreams(t *testing.T, srv *tunnel.Server, key ssh.Signer, n int64) {
	t.Helper()
	fp := ssh.FingerprintSHA256(key.PublicKey())
	deadline := time.Now().Add(5 * time.Second)
	for srv.KeyUsage(fp).Streams != n {
		if time.Now().After(deadline) {
			t.Fatalf("key holds %d streams after 5 s, want %d", srv.KeyUsage(fp).Streams, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestKeyLimitStreams: a key's streams count across its connections; the
// one past the limit is refused with a reason naming the limit, the
// key's open streams carry on, a closed one makes room again, and another
// key is not counted with it.
func TestKeyLimitStreams(t *testing.T) {
	target := streamtest.NewTarget(t)
	keyA, keyB := newSigner(t), newSigner(t)
	logs, log := newServerLog(t)
	srv := startServerConfig(t, nil, tunnel.ServerConfig{
		HostKeys:  []ssh.Signer{newSigner(t)},
		Authorize: keySet(t, authorizedLine("", keyA.PublicKey())+authorizedLine("", keyB.PublicKey())),
		KeyLimits: tunnel.KeyLimits{Streams: 3, StreamRate: -1},
		Logger:    log,
	})
	a1, a2 := rawClient(t, srv, keyA), rawClient(t, srv, keyA)
	var held []net.Conn
	for _, c := range []*ssh.Client{a1, a1, a2} {
		conn, reason := openReason(c, target.Addr())
		if conn == nil {
			t.Fatalf("stream %d of 3: refused: %s", len(held)+1, reason)
		}
		held = append(held, conn)
	}
	fp := ssh.FingerprintSHA256(keyA.PublicKey())
	want := "pinhole: key " + fp + " is at its 3 concurrent streams (--max-streams-per-key 3); close some, or ask the server's admin to raise it"
	for _, c := range []*ssh.Client{a1, a2} {
		if conn, reason := openReason(c, target.Addr()); conn != nil || reason != want {
			t.Fatalf("a 4th stream of the key: refusal %q, want %q", reason, want)
		}
	}
	// The refused opens did not disturb the open streams.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := streamtest.Exchange(ctx, timedConn{held[2]}, 7, 1<<20, 1<<20); err != nil {
		t.Fatalf("an open stream of the key at its limit: %v", err)
	}
	held[2].Close()
	waitStreams(t, srv.srv, keyA, 2)
	conn, reason := openReason(a2, target.Addr())
	if conn == nil {
		t.Fatalf("a stream after one closed: refused: %s", reason)
	}
	defer conn.Close()
	b := rawClient(t, srv, keyB)
	for i := range 3 {
		conn, reason := openReason(b, target.Addr())
		if conn == nil {
			t.Fatalf("key B's stream %d while key A is at its limit: refused: %s", i+1, reason)
		}
		defer conn.Close()
	}
	logs.waitFor(t, "per-key limit reached", 1)
	if !strings.Contains(logs.String(), "limit=streams max=3") || !strings.Contains(logs.String(), "--max-streams-per-key") {
		t.Errorf("no log line names the limit:\n%s", logs)
	}
	for _, c := range held[:2] {
		c.Close()
	}
}

// TestKeyLimitStreamRate: a burst of twice the rate goes through, the
// next opens are refused naming the rate, and the bucket refills.
func TestKeyLimitStreamRate(t *testing.T) {
	target := holdTarget(t)
	key := newSigner(t)
	srv := startServerConfig(t, nil, tunnel.ServerConfig{
		HostKeys:  []ssh.Signer{newSigner(t)},
		Authorize: keySet(t, authorizedLine("", key.PublicKey())),
		KeyLimits: tunnel.KeyLimits{StreamRate: 5},
		Logger:    testLogger(t),
	})
	c := rawClient(t, srv, key)
	ok, reason := 0, ""
	start := time.Now()
	for reason == "" && ok < 100 {
		var conn net.Conn
		if conn, reason = openReason(c, target); conn != nil {
			ok++
			conn.Close()
		}
	}
	// 10 at once, and 5 a second while they were opened.
	if most := 10 + int(5*time.Since(start).Seconds()) + 1; ok < 10 || ok > most {
		t.Errorf("%d streams before the first refusal, want 10 to %d", ok, most)
	}
	if want := "opens streams faster than its 5 a second (--max-stream-rate-per-key 5); open fewer at once"; !strings.Contains(reason, want) {
		t.Fatalf("refusal %q, want it to contain %q", reason, want)
	}
	time.Sleep(300 * time.Millisecond) // 1.5 tokens
	conn, reason := openReason(c, target)
	if conn == nil {
		t.Fatalf("a stream 300 ms after the bucket ran dry: refused: %s", reason)
	}
	conn.Close()
}

// timedConn gives a channel's conn, which has no deadlines, a deadline
// that closes it, for streamtest.Exchange.
type timedConn struct{ net.Conn }

func (c timedConn) SetDeadline(t time.Time) error {
	if !t.IsZero() {
		time.AfterFunc(time.Until(t), func() { c.Conn.Close() })
	}
	return nil
}

func (c timedConn) CloseWrite() error { return c.Conn.(interface{ CloseWrite() error }).CloseWrite() }

// forwardPayload is a tcpip-forward's (and udp-forward@pinhole's) payload.
func forwardPayload(host string, port uint32) []byte {
	return ssh.Marshal(struct {
		Host string
		Port uint32
	}{host, port})
}

// TestKeyLimitPorts: remote forwards on a port, TCP and UDP, count toward
// the key's limit across its connections; the one past it is refused
// naming the limit, and a canceled forward makes room. A key whose
// authorized_keys line raises the limit gets its own.
func TestKeyLimitPorts(t *testing.T) {
	keyA, keyB := newSigner(t), newSigner(t)
	srv := startServerConfig(t, nil, tunnel.ServerConfig{
		HostKeys:  []ssh.Signer{newSigner(t)},
		Authorize: keySet(t, authorizedLine("", keyA.PublicKey())+authorizedLine(`pinhole-limits="ports=3"`, keyB.PublicKey())),
		KeyLimits: tunnel.KeyLimits{Ports: 2},
		Logger:    testLogger(t),
	})
	a1, a2 := rawClient(t, srv, keyA), rawClient(t, srv, keyA)
	if ok, reason, err := a1.SendRequest("tcpip-forward", true, forwardPayload("localhost", 0)); !ok || err != nil {
		t.Fatalf("first -R: %q %v", reason, err)
	}
	if ok, reason, err := a2.SendRequest("udp-forward@pinhole", true, forwardPayload("localhost", 0)); !ok || err != nil {
		t.Fatalf("a -R /udp as the second port: %q %v", reason, err)
	}
	fp := ssh.FingerprintSHA256(keyA.PublicKey())
	want := "pinhole: key " + fp + " holds 2 remote-forward ports already, its limit (--max-ports-per-key 2); cancel one of its forwards, or ask the server's admin to raise it"
	for _, typ := range []string{"tcpip-forward", "udp-forward@pinhole"} {
		ok, reason, err := a1.SendRequest(typ, true, forwardPayload("localhost", 0))
		if ok || err != nil || string(reason) != want {
			t.Fatalf("a third port (%s): ok=%v reason %q err=%v, want %q", typ, ok, reason, err, want)
		}
	}
	if u := srv.srv.KeyUsage(fp); u.Ports != 2 || u.Connections != 2 {
		t.Fatalf("KeyUsage = %+v, want 2 ports over 2 connections", u)
	}
	// The UDP forward's connection leaves: its port is the key's again.
	a2.Close()
	deadline := time.Now().Add(5 * time.Second)
	for srv.srv.KeyUsage(fp).Ports != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("KeyUsage %+v 5 s after a connection left, want 1 port", srv.srv.KeyUsage(fp))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if ok, reason, err := a1.SendRequest("tcpip-forward", true, forwardPayload("localhost", 0)); !ok || err != nil {
		t.Fatalf("a port after one was freed: %q %v", reason, err)
	}

	b := rawClient(t, srv, keyB)
	for i := range 3 {
		if ok, reason, err := b.SendRequest("tcpip-forward", true, forwardPayload("localhost", 0)); !ok || err != nil {
			t.Fatalf("key B's port %d of its own 3: %q %v", i+1, reason, err)
		}
	}
	ok, reason, _ := b.SendRequest("tcpip-forward", true, forwardPayload("localhost", 0))
	if want := "holds 3 remote-forward ports already, its limit (pinhole-limits ports=3 in authorized_keys)"; ok || !strings.Contains(string(reason), want) {
		t.Fatalf("key B's 4th port: ok=%v %q, want a refusal containing %q", ok, reason, want)
	}
}

// TestKeyLimitRemoteStreams: the public connections of a -R count as the
// key's streams; one past the limit is closed unanswered, the open ones
// carry on, and the client keeps its forward.
func TestKeyLimitRemoteStreams(t *testing.T) {
	target := streamtest.NewTarget(t)
	key := newSigner(t)
	logs, log := newServerLog(t)
	srv := startServerConfig(t, nil, tunnel.ServerConfig{
		HostKeys:  []ssh.Signer{newSigner(t)},
		Authorize: keySet(t, authorizedLine(`pinhole-limits="streams=2"`, key.PublicKey())),
		Logger:    log,
	})
	cfg := clientConfig(t, srv.addr, srv.hostKey.PublicKey(), key)
	cfg.Remote = []spec.Forward{mustParse(t, spec.Remote, fmt.Sprintf("0:127.0.0.1:%d", target.Port()))}
	c := dialClient(t, cfg)
	addr := c.RemoteAddrs()[0]
	var held []net.Conn
	for range 2 {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		held = append(held, conn)
	}
	waitStreams(t, srv.srv, key, 2)
	over, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer over.Close()
	over.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := over.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("a public connection past the key's streams: read %d, %v; want it closed", n, err)
	}
	logs.waitFor(t, "per-key limit reached", 1)
	if !strings.Contains(logs.String(), "limit=streams max=2 own=true") || !strings.Contains(logs.String(), "forwarded-tcpip") {
		t.Errorf("the log line does not say which limit and what was refused:\n%s", logs)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := streamtest.Exchange(ctx, held[0], 3, 1<<20, 1<<20); err != nil {
		t.Fatalf("an open stream of the -R at the limit: %v", err)
	}
	held[0].Close()
	waitStreams(t, srv.srv, key, 1)
	again, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if err := streamtest.Exchange(ctx, again, 4, 1<<20, 1<<20); err != nil {
		t.Fatalf("a public connection once the key had room again: %v", err)
	}
}

// TestKeyLimitsIsolation: key A hammers its limits (more streams than it
// may hold, opened faster than it may) while key B moves checksummed data
// through its -L; A is refused naming each limit, B's data arrives whole
// and at no less than half the rate B had alone.
func TestKeyLimitsIsolation(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 2×16 MiB four times or more")
	}
	target := streamtest.NewTarget(t)
	hold := holdTarget(t)
	keyA, keyB := newSigner(t), newSigner(t)
	srv := startServerConfig(t, nil, tunnel.ServerConfig{
		HostKeys: []ssh.Signer{newSigner(t)},
		Authorize: keySet(t, authorizedLine(`pinhole-limits="streams=20,stream-rate=20"`, keyA.PublicKey())+
			authorizedLine("", keyB.PublicKey())),
		Logger: testLogger(t).With("side", "server"),
	})
	cfg := clientConfig(t, srv.addr, srv.hostKey.PublicKey(), keyB)
	cfg.Logger = nil
	cfg.Local = []spec.Forward{mustParse(t, spec.Local, fmt.Sprintf("127.0.0.1:0:127.0.0.1:%d", target.Port()))}
	b := dialClient(t, cfg)
	local := b.LocalAddrs()[0].String()
	const size = 16 << 20
	transfer := func(seed uint64) (float64, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		conn, err := net.Dial("tcp", local)
		if err != nil {
			return 0, err
		}
		defer conn.Close()
		start := time.Now()
		if err := streamtest.Exchange(ctx, conn, seed, size, size); err != nil {
			return 0, err
		}
		return 2 * size / time.Since(start).Seconds() / 1e6, nil
	}
	if _, err := transfer(1); err != nil { // warm up
		t.Fatal(err)
	}
	alone, err := transfer(2)
	if err != nil {
		t.Fatalf("B alone: %v", err)
	}

	// A: two connections and 8 workers that open streams to a target
	// that closes each at once, as fast as they can: far more than 20 a
	// second. Once the rate has refused them (or after 5 s) they pause
	// while A fills its 20 streams with streams that stay open, and then
	// go on: every open is one past its streams.
	var refusedStreams, refusedRate, opened atomic.Int64
	var other atomic.Value
	var paused atomic.Bool // while A fills its streams
	var quiet atomic.Bool  // while B measures its rate alone again
	stop := make(chan struct{})
	var wg sync.WaitGroup
	a := []*ssh.Client{rawClient(t, srv, keyA), rawClient(t, srv, keyA)}
	shut := closeTarget(t)
	hammerStart := time.Now()
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if paused.Load() || quiet.Load() {
					time.Sleep(5 * time.Millisecond)
					continue
				}
				conn, reason := openReason(a[w%2], shut)
				switch {
				case conn != nil:
					opened.Add(1)
					conn.Close()
				case strings.Contains(reason, "concurrent streams (pinhole-limits streams=20"):
					refusedStreams.Add(1)
				case strings.Contains(reason, "a second (pinhole-limits stream-rate=20"):
					refusedRate.Add(1)
				default:
					other.Store(reason)
				}
			}
		}()
	}
	filled := make(chan error, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for end := time.Now().Add(5 * time.Second); refusedRate.Load() == 0 && time.Now().Before(end); {
			select {
			case <-stop:
				filled <- errors.New("stopped before filling")
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
		paused.Store(true)
		deadline := time.Now().Add(20 * time.Second)
		for n := 0; n < 20; {
			conn, reason := openReason(a[n%2], hold)
			switch {
			case conn != nil:
				n++
				defer conn.Close()
			case time.Now().After(deadline):
				paused.Store(false)
				filled <- fmt.Errorf("%d of 20 streams held after 20 s: %s", n, reason)
				return
			default:
				time.Sleep(10 * time.Millisecond) // the churn's streams ending, or the bucket
			}
		}
		paused.Store(false)
		filled <- nil
		<-stop
	}()
	// B's transfers start once A is hammering, and go on at least until
	// A holds all its streams.
	time.Sleep(300 * time.Millisecond)
	// Other work on the machine moves B's rate more than A does: up to
	// three rounds, B alone (A's workers quiet, its streams idle) and
	// then beside A, until a round where B keeps half its rate.
	var rounds []string
	ratio, beside := 0.0, 0.0
	for i := range 3 {
		if i > 0 {
			quiet.Store(true)
			if alone, err = transfer(uint64(20 + i)); err != nil {
				t.Fatalf("B alone again: %v", err)
			}
			quiet.Store(false)
			time.Sleep(100 * time.Millisecond)
		}
		mbps, err := transfer(uint64(10 + i))
		if err != nil {
			t.Fatalf("B while A hammers: %v", err)
		}
		rounds = append(rounds, fmt.Sprintf("%.0f/%.0f", mbps, alone))
		if r := mbps / alone; r > ratio {
			ratio, beside = r, mbps
		}
		if ratio >= 0.5 {
			break
		}
	}
	var fillErr error
	select {
	case fillErr = <-filled:
	case <-time.After(30 * time.Second):
		fillErr = errors.New("filling did not end within 30 s")
	}
	time.Sleep(100 * time.Millisecond) // the workers against a full key
	close(stop)
	wg.Wait()
	if fillErr != nil {
		t.Errorf("A filling its streams: %v", fillErr)
	}
	secs := time.Since(hammerStart).Seconds()
	t.Logf("B beside A / alone, MB/s: %s (best %.2f×, %.0f MB/s); A in %.1f s: %d streams opened, %d refused by streams, %d by stream-rate (%.0f opens a second)",
		strings.Join(rounds, ", "), ratio, beside, secs, opened.Load(), refusedStreams.Load(), refusedRate.Load(),
		float64(opened.Load()+refusedStreams.Load()+refusedRate.Load())/secs)
	if r, ok := other.Load().(string); ok {
		t.Errorf("A got a refusal naming neither limit: %q", r)
	}
	if refusedStreams.Load() == 0 || refusedRate.Load() == 0 {
		t.Errorf("A was refused %d times by streams and %d by stream-rate; want both", refusedStreams.Load(), refusedRate.Load())
	}
	if ratio < 0.5 {
		t.Errorf("B beside A / alone, MB/s: %s: below half in every round", strings.Join(rounds, ", "))
	}
}

// TestKeyLimitNames: a key's pinhole-limits names=N reaches the name
// router in place of its cap, and names are not ports: a key at its one
// port still gets its names, and the other way round.
func TestKeyLimitNames(t *testing.T) {
	key := newSigner(t)
	srv := startServerConfig(t, nil, tunnel.ServerConfig{
		HostKeys:  []ssh.Signer{newSigner(t)},
		Authorize: keySet(t, authorizedLine(`pinhole-limits="names=2"`, key.PublicKey())),
		KeyLimits: tunnel.KeyLimits{Ports: 1},
		Names:     &vhost.Router{Domain: "example.test", MaxNamesPerKey: 1},
		Logger:    testLogger(t),
	})
	c := rawClient(t, srv, key)
	if ok, reason, err := c.SendRequest("tcpip-forward", true, forwardPayload("localhost", 0)); !ok || err != nil {
		t.Fatalf("the key's one port: %q %v", reason, err)
	}
	for _, name := range []string{"a", "b"} {
		if ok, reason, err := c.SendRequest("tcpip-forward", true, forwardPayload(name, 80)); !ok || err != nil {
			t.Fatalf("name %s of the key's own 2, beside its port: %q %v", name, reason, err)
		}
	}
	ok, reason, _ := c.SendRequest("tcpip-forward", true, forwardPayload("c", 80))
	if want := "the most it may (pinhole-limits names=2 in authorized_keys)"; ok || !strings.Contains(string(reason), want) {
		t.Fatalf("a third name: ok=%v %q, want a refusal containing %q", ok, reason, want)
	}
	if u := srv.srv.KeyUsage(ssh.FingerprintSHA256(key.PublicKey())); u.Ports != 1 {
		t.Errorf("KeyUsage = %+v, want 1 port: names are not ports", u)
	}
}

// TestKeyLimitNameStreams: a request to a name whose key is at its
// streams gets the router's 502, and the request holding the key's one
// stream is answered in full.
func TestKeyLimitNameStreams(t *testing.T) {
	release := make(chan struct{})
	svcLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	svc := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-release:
			case <-time.After(10 * time.Second):
			}
		}
		io.WriteString(w, "ok "+r.URL.Path)
	})}
	go svc.Serve(svcLn)
	defer svc.Close()

	key := newSigner(t)
	router := &vhost.Router{Domain: "example.test"}
	srv := startServerConfig(t, nil, tunnel.ServerConfig{
		HostKeys:  []ssh.Signer{newSigner(t)},
		Authorize: keySet(t, authorizedLine(`pinhole-limits="streams=1"`, key.PublicKey())),
		Names:     router,
		Logger:    testLogger(t),
	})
	web, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	front := &http.Server{Handler: router}
	go front.Serve(web)
	defer front.Close()

	cfg := clientConfig(t, srv.addr, srv.hostKey.PublicKey(), key)
	cfg.Remote = []spec.Forward{mustParse(t, spec.Remote, "myapp:80:"+svcLn.Addr().String())}
	dialClient(t, cfg)
	get := func(path string) (int, string, error) {
		req, _ := http.NewRequest("GET", "http://"+web.Addr().String()+path, nil)
		req.Host = "myapp.example.test"
		resp, err := (&http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}
	slow := make(chan string, 1)
	go func() {
		code, body, err := get("/slow")
		slow <- fmt.Sprint(code, " ", body, " ", err)
	}()
	waitStreams(t, srv.srv, key, 1)
	code, body, err := get("/fast")
	if err != nil || code != http.StatusBadGateway {
		t.Errorf("a request past the key's one stream: %d %q %v, want 502", code, body, err)
	}
	close(release)
	select {
	case got := <-slow:
		if got != "200 ok /slow <nil>" {
			t.Errorf("the request holding the key's stream: %s", got)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the request holding the key's stream did not end")
	}
}

// TestKeyLimitUDPFlows: the flows of a -R/udp (forwarded-udp@pinhole
// channels) and of a -L/udp count as the key's streams: with streams=2,
// two flows go through, a third source's datagrams are dropped with the
// limit in the log, and the open flows carry on.
func TestKeyLimitUDPFlows(t *testing.T) {
	echo := streamtest.NewUDPEcho(t)
	key := newSigner(t)
	logs, log := newServerLog(t)
	srv := startServerConfig(t, nil, tunnel.ServerConfig{
		HostKeys:  []ssh.Signer{newSigner(t)},
		Authorize: keySet(t, authorizedLine(`pinhole-limits="streams=2"`, key.PublicKey())),
		Logger:    log,
	})
	port := echo.LocalAddr().(*net.UDPAddr).Port
	cfg := clientConfig(t, srv.addr, srv.hostKey.PublicKey(), key)
	cfg.Local = []spec.Forward{mustParse(t, spec.Local, fmt.Sprintf("127.0.0.1:0:127.0.0.1:%d/udp", port))}
	cfg.Remote = []spec.Forward{mustParse(t, spec.Remote, fmt.Sprintf("0:127.0.0.1:%d/udp", port))}
	c := dialClient(t, cfg)
	_, rport, err := net.SplitHostPort(c.RemoteAddrs()[0])
	if err != nil {
		t.Fatalf("-R/udp not bound: %q", c.RemoteAddrs())
	}
	remote := net.JoinHostPort("127.0.0.1", rport)
	viaL := dialUDP(t, c.LocalAddrs()[0].String())
	viaR := dialUDP(t, remote)
	for name, f := range map[string]*net.UDPConn{"-L/udp": viaL, "-R/udp": viaR} {
		if err := roundTrip(f, []byte("hello "+name)); err != nil {
			t.Fatalf("the key's flow through %s: %v", name, err)
		}
	}
	waitStreams(t, srv.srv, key, 2)
	third := dialUDP(t, remote)
	third.Write([]byte("past the limit"))
	logs.waitFor(t, "per-key limit reached", 1)
	if !strings.Contains(logs.String(), "limit=streams max=2 own=true") || !strings.Contains(logs.String(), "forwarded-udp@pinhole") {
		t.Errorf("the log line does not say which limit and what was refused:\n%s", logs)
	}
	third.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if n, err := third.Read(make([]byte, 64)); err == nil {
		t.Errorf("a flow past the key's streams got %d bytes back", n)
	}
	for name, f := range map[string]*net.UDPConn{"-L/udp": viaL, "-R/udp": viaR} {
		if err := roundTrip(f, []byte("again "+name)); err != nil {
			t.Fatalf("the key's flow through %s after the refusal: %v", name, err)
		}
	}
}
