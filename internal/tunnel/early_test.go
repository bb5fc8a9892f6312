package tunnel_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/spec"
	"github.com/pinhole-dev/pinhole/internal/ssh"
	"github.com/pinhole-dev/pinhole/internal/tunnel"
)

// logBuffer keeps a test server's log lines so a test can look for one,
// and passes them to the test log too.
type logBuffer struct {
	t  testing.TB
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *logBuffer) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *logBuffer) count(s string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Count(w.b.String(), s)
}

// gate is a Listen whose listeners hand out each accepted connection only
// once the test says it has written to it (wrote), or after 10 s: what the
// test writes right after connecting is then there when pinhole looks for
// early data, however slow the machine. Connections are gated one at a
// time, in order.
type gate struct{ written chan struct{} }

func newGate() *gate { return &gate{written: make(chan struct{}, 1)} }

func (g *gate) listen(network, addr string) (net.Listener, error) {
	ln, err := net.Listen(network, addr)
	return gatedListener{ln, g}, err
}

// wrote lets the connection accepted next go (g may be nil).
func (g *gate) wrote() {
	if g != nil {
		g.written <- struct{}{}
	}
}

type gatedListener struct {
	net.Listener
	g *gate
}

func (l gatedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		select {
		case <-l.g.written:
		case <-time.After(10 * time.Second):
		}
	}
	return c, err
}

// earlySetup runs a pinhole server whose log it keeps, a target served by
// handle, and a client with -L to it, its listener gated by g (if not
// nil); it returns the -L address.
func earlySetup(t *testing.T, g *gate, handle func(net.Conn)) (string, *logBuffer) {
	t.Helper()
	target := serveTarget(t, handle)
	hostKey, userKey := newSigner(t), newSigner(t)
	logs := &logBuffer{t: t}
	srv := startServerConfig(t, nil, tunnel.ServerConfig{
		HostKeys:  []ssh.Signer{hostKey},
		Authorize: keySet(t, authorizedLine("", userKey.PublicKey())),
		Logger:    slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	cfg := clientConfig(t, srv.addr, hostKey.PublicKey(), userKey)
	cfg.Local = []spec.Forward{mustParse(t, spec.Local, "127.0.0.1:0:"+target.Addr().String())}
	if g != nil {
		cfg.Listen = g.listen
	}
	c := dialClient(t, cfg)
	return c.LocalAddrs()[0].String(), logs
}

// echoOnce connects to addr, writes req at once, opens g and wants req
// echoed.
func echoOnce(t *testing.T, addr string, g *gate, req []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write(req)
	g.wrote()
	got := make([]byte, len(req))
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(conn, got); err != nil || !bytes.Equal(got, req) {
		t.Fatalf("echo: %q, %v; want %q", got, err, req)
	}
}

func TestEarlyData(t *testing.T) {
	g := newGate()
	addr, logs := earlySetup(t, g, func(c net.Conn) { io.Copy(c, c) })
	for i := range 3 {
		echoOnce(t, addr, g, []byte(strings.Repeat("GET / HTTP/1.1\r\n", i+1)))
	}
	if n := logs.count("type=direct-tcpip-early@pinhole"); n != 3 {
		t.Errorf("%d of 3 connections opened with early data", n)
	}
}

// A target that speaks first gets a plain direct-tcpip open, at once.
func TestEarlyDataServerFirst(t *testing.T) {
	addr, logs := earlySetup(t, nil, func(c net.Conn) {
		c.Write([]byte("220 ready\r\n"))
		io.Copy(c, c)
	})
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	banner := make([]byte, 11)
	if _, err := io.ReadFull(conn, banner); err != nil || string(banner) != "220 ready\r\n" {
		t.Fatalf("banner %q, %v", banner, err)
	}
	conn.Write([]byte("QUIT\r\n"))
	reply := make([]byte, 6)
	if _, err := io.ReadFull(conn, reply); err != nil || string(reply) != "QUIT\r\n" {
		t.Fatalf("echo %q, %v", reply, err)
	}
	if logs.count("type=direct-tcpip-early@pinhole") != 0 || logs.count("type=direct-tcpip ") != 1 {
		t.Errorf("want one plain direct-tcpip open; server log:\n%s", logs.b.String())
	}
}

// More than the early data's limit, written at once: the first part goes
// in the open, the rest as channel data, and the target gets every byte
// in order.
func TestEarlyDataLarge(t *testing.T) {
	sums := make(chan [32]byte, 1)
	g := newGate()
	addr, logs := earlySetup(t, g, func(c net.Conn) {
		h := sha256.New()
		io.Copy(h, c)
		var sum [32]byte
		h.Sum(sum[:0])
		sums <- sum
	})
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 300<<10)
	for i := range data {
		data[i] = byte(i * 31 / 7)
	}
	// The first 8 KiB, then the rest once the gate is open: 300 KiB may be
	// more than the socket takes before pinhole accepts it.
	if _, err := conn.Write(data[:8<<10]); err != nil {
		t.Fatal(err)
	}
	g.wrote()
	if _, err := conn.Write(data[8<<10:]); err != nil {
		t.Fatal(err)
	}
	conn.(*net.TCPConn).CloseWrite()
	select {
	case sum := <-sums:
		if sum != sha256.Sum256(data) {
			t.Fatal("the target got different bytes")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the target did not get the end of the data")
	}
	conn.Close()
	if n := logs.count("type=direct-tcpip-early@pinhole"); n != 1 {
		t.Errorf("%d opens with early data, want 1", n)
	}
}

// A pinhole server from before early data refuses the channel type: the
// client sends the bytes as the channel's first data instead, and stops
// offering early data on that connection.
func TestEarlyDataOldServer(t *testing.T) {
	target := echoTarget(t)
	hostKey, userKey := newSigner(t), newSigner(t)
	cfg := &ssh.ServerConfig{
		ServerVersion: "SSH-2.0-pinhole_0.0",
		PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
			if !bytes.Equal(k.Marshal(), userKey.PublicKey().Marshal()) {
				return nil, io.EOF
			}
			return nil, nil
		},
	}
	cfg.AddHostKey(hostKey)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	old := &oldPeer{}
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		_, chans, reqs, err := ssh.NewServerConn(nc, cfg)
		if err != nil {
			return
		}
		go ssh.DiscardRequests(reqs)
		old.serve(chans, "direct-tcpip", target.Addr().String())
	}()

	ccfg := clientConfig(t, ln.Addr().String(), hostKey.PublicKey(), userKey)
	ccfg.Local = []spec.Forward{mustParse(t, spec.Local, "127.0.0.1:0:"+target.Addr().String())}
	g := newGate()
	ccfg.Listen = g.listen
	addr := dialClient(t, ccfg).LocalAddrs()[0].String()
	for i := range 2 {
		echoOnce(t, addr, g, []byte("hello, old server "+strconv.Itoa(i)))
	}
	old.check(t, "direct-tcpip-early@pinhole", "direct-tcpip", "direct-tcpip")
}

// oldPeer plays a pinhole end from before early data: it takes channels
// of one type only and relays each to a target, refuses every other type
// as unknown, and keeps the types it was asked for.
type oldPeer struct {
	mu     sync.Mutex
	opened []string
}

func (o *oldPeer) serve(chans <-chan ssh.NewChannel, chanType, target string) {
	for ch := range chans {
		o.mu.Lock()
		o.opened = append(o.opened, ch.ChannelType())
		o.mu.Unlock()
		if ch.ChannelType() != chanType {
			ch.Reject(ssh.UnknownChannelType, "unknown channel type")
			continue
		}
		tc, err := net.Dial("tcp", target)
		if err != nil {
			ch.Reject(ssh.ConnectionFailed, err.Error())
			continue
		}
		c, reqs, err := ch.Accept()
		if err != nil {
			tc.Close()
			continue
		}
		go ssh.DiscardRequests(reqs)
		go func() { io.Copy(tc, c); tc.(*net.TCPConn).CloseWrite() }()
		go func() { io.Copy(c, tc); c.CloseWrite(); tc.Close() }()
	}
}

// check wants the channel types asked for so far to be want, in order.
func (o *oldPeer) check(t *testing.T, want ...string) {
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	if strings.Join(o.opened, " ") != strings.Join(want, " ") {
		t.Errorf("channel opens %q, want %q", o.opened, want)
	}
}

// serveTarget is a TCP server for the length of the test that runs handle
// for each connection and then closes it.
func serveTarget(t *testing.T, handle func(net.Conn)) net.Listener {
	t.Helper()
	target, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { target.Close() })
	go func() {
		for {
			c, err := target.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return target
}

// echoTarget is a TCP echo server for the length of the test.
func echoTarget(t *testing.T) net.Listener {
	return serveTarget(t, func(c net.Conn) { io.Copy(c, c) })
}

// remoteSetup runs an echo target and a pinhole server whose remote
// forwards are gated by the gate it returns, with a host key and a user key
// it lets in.
func remoteSetup(t *testing.T) (target net.Listener, srv *server, g *gate, hostKey, userKey ssh.Signer) {
	target = echoTarget(t)
	g = newGate()
	hostKey, userKey = newSigner(t), newSigner(t)
	srv = startServerConfig(t, nil, tunnel.ServerConfig{
		HostKeys:  []ssh.Signer{hostKey},
		Authorize: keySet(t, authorizedLine("", userKey.PublicKey())),
		Listen:    g.listen,
		Logger:    testLogger(t).With("side", "server"),
	})
	return target, srv, g, hostKey, userKey
}

// -R: the server carries what a connection to its remote-forward port has
// already sent in forwarded-tcpip-early@pinhole, and the client writes it
// to the target before confirming.
func TestEarlyDataRemote(t *testing.T) {
	target, srv, g, hostKey, userKey := remoteSetup(t)
	logs := &logBuffer{t: t}
	cfg := clientConfig(t, srv.addr, hostKey.PublicKey(), userKey)
	cfg.Remote = []spec.Forward{mustParse(t, spec.Remote, "0:"+target.Addr().String())}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c := dialClient(t, cfg)
	_, port, err := net.SplitHostPort(c.RemoteAddrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		echoOnce(t, net.JoinHostPort("127.0.0.1", port), g, []byte(strings.Repeat("GET / HTTP/1.1\r\n", i+1)))
	}
	if n := logs.count("type=forwarded-tcpip-early@pinhole"); n != 3 {
		t.Errorf("%d of 3 forwarded connections opened with early data", n)
	}
}

// -R to a pinhole client from before early data, which refuses the channel
// type: the server sends the bytes as the channel's first data instead,
// and stops offering early data to that client.
func TestEarlyDataRemoteOldClient(t *testing.T) {
	target, srv, g, hostKey, userKey := remoteSetup(t)
	nc, err := net.Dial("tcp", srv.addr)
	if err != nil {
		t.Fatal(err)
	}
	conn, chans, reqs, err := ssh.NewClientConn(nc, srv.addr, &ssh.ClientConfig{
		User:            "old",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(userKey)},
		HostKeyCallback: ssh.FixedHostKey(hostKey.PublicKey()),
		ClientVersion:   "SSH-2.0-pinhole_0.0",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	go ssh.DiscardRequests(reqs)
	ok, reply, err := conn.SendRequest("tcpip-forward", true, ssh.Marshal(struct {
		Host string
		Port uint32
	}{"127.0.0.1", 0}))
	if err != nil || !ok {
		t.Fatalf("tcpip-forward: %v, %v", ok, err)
	}
	port := binary.BigEndian.Uint32(reply)
	old := &oldPeer{}
	go old.serve(chans, "forwarded-tcpip", target.Addr().String())
	for i := range 2 {
		echoOnce(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))), g, []byte("hello, old client "+strconv.Itoa(i)))
	}
	old.check(t, "forwarded-tcpip-early@pinhole", "forwarded-tcpip", "forwarded-tcpip")
}
