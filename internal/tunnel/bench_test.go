package tunnel_test

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/ssh"
	"github.com/pinhole-dev/pinhole/internal/ssh/knownhosts"

	"github.com/pinhole-dev/pinhole/internal/spec"
	"github.com/pinhole-dev/pinhole/internal/sshtest"
	"github.com/pinhole-dev/pinhole/internal/streamtest"
	"github.com/pinhole-dev/pinhole/internal/tunnel"
)

// benchUDP sets up an echo server behind a -L/udp forward.
func benchUDP(b *testing.B) string {
	echo := streamtest.NewUDPEcho(b)
	clientKey := newSigner(b)
	srv := startServer(b, nil, newSigner(b), keySet(b, authorizedLine("", clientKey.PublicKey())))
	cfg := clientConfig(b, srv.addr, srv.hostKey.PublicKey(), clientKey)
	cfg.Logger = nil
	cfg.UDPMaxFlows = 1 << 20 // BenchmarkUDPNewFlow opens a flow per round
	port := echo.LocalAddr().(*net.UDPAddr).Port
	cfg.Local = []spec.Forward{mustParse(b, spec.Local, fmt.Sprintf("127.0.0.1:0:127.0.0.1:%d/udp", port))}
	c := dialClient(b, cfg)
	return c.LocalAddrs()[0].String()
}

// BenchmarkUDPRoundTrip: one 64-byte request and its reply on an
// established flow through -L/udp; reports the p50 and p99 round trip.
func BenchmarkUDPRoundTrip(b *testing.B) {
	c := dialUDP(b, benchUDP(b))
	p := make([]byte, 64)
	if err := roundTrip(c, p); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 2048)
	var rtts []time.Duration
	b.ResetTimer()
	for b.Loop() {
		began := time.Now()
		c.Write(p)
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(buf); err != nil {
			b.Fatal(err)
		}
		rtts = append(rtts, time.Since(began))
	}
	slices.Sort(rtts)
	b.ReportMetric(float64(rtts[len(rtts)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(rtts[len(rtts)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkUDPNewFlow: the first datagram of a new flow (a new source
// port) and its reply: the channel-open round trip one channel per flow
// costs.
func BenchmarkUDPNewFlow(b *testing.B) {
	addr := benchUDP(b)
	ua, _ := net.ResolveUDPAddr("udp", addr)
	p := make([]byte, 64)
	buf := make([]byte, 2048)
	b.ResetTimer()
	for b.Loop() {
		c, err := net.DialUDP("udp", nil, ua)
		if err != nil {
			b.Fatal(err)
		}
		c.Write(p)
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(buf); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

// discardSink listens on loopback and reads every connection to its end.
func discardSink(b *testing.B) net.Listener {
	sink, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sink.Close() })
	go func() {
		for {
			c, err := sink.Accept()
			if err != nil {
				return
			}
			go func() {
				io.Copy(io.Discard, c)
				c.Close()
			}()
		}
	}()
	return sink
}

// BenchmarkTCPThroughput: one stream through -L, pinhole client to
// pinhole server in this process, to a sink. b.SetBytes makes go test
// print MB/s. Profile with -cpuprofile.
func BenchmarkTCPThroughput(b *testing.B) {
	sink := discardSink(b)
	clientKey := newSigner(b)
	srv := startServer(b, nil, newSigner(b), keySet(b, authorizedLine("", clientKey.PublicKey())))
	cfg := clientConfig(b, srv.addr, srv.hostKey.PublicKey(), clientKey)
	cfg.Logger = nil
	cfg.Local = []spec.Forward{mustParse(b, spec.Local, "127.0.0.1:0:"+sink.Addr().String())}
	c := dialClient(b, cfg)
	conn, err := net.Dial("tcp", c.LocalAddrs()[0].String())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	for b.Loop() {
		if _, err := conn.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIdleConnMemory holds 2,000 idle connections through -L, both
// pinhole ends in this process, and reports the Go heap and stacks in use
// per connection (the probe's own sockets included). Run it with
// -benchtime 1x: each round holds its own 2,000.
func BenchmarkIdleConnMemory(b *testing.B) {
	const n = 2000
	sink, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	var mu sync.Mutex
	var far []net.Conn
	go func() {
		for {
			c, err := sink.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("x")) // proves the path end to end, then idles
			mu.Lock()
			far = append(far, c)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range far {
			c.Close()
		}
	}()
	clientKey := newSigner(b)
	srv := startServer(b, nil, newSigner(b), keySet(b, authorizedLine("", clientKey.PublicKey())))
	cfg := clientConfig(b, srv.addr, srv.hostKey.PublicKey(), clientKey)
	cfg.Logger = nil
	cfg.Local = []spec.Forward{mustParse(b, spec.Local, "127.0.0.1:0:"+sink.Addr().String())}
	c := dialClient(b, cfg)
	for b.Loop() {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		heap, stack := ms.HeapInuse, ms.StackInuse
		conns := make([]net.Conn, 0, n)
		for range n {
			conn, err := net.Dial("tcp", c.LocalAddrs()[0].String())
			if err != nil {
				b.Fatal(err)
			}
			if _, err := conn.Read(make([]byte, 1)); err != nil {
				b.Fatal(err)
			}
			conns = append(conns, conn)
		}
		time.Sleep(500 * time.Millisecond)
		runtime.GC()
		runtime.ReadMemStats(&ms)
		b.ReportMetric(float64(ms.HeapInuse-heap)/n/1000, "heap-kB/conn")
		b.ReportMetric(float64(ms.StackInuse-stack)/n/1000, "stack-kB/conn")
		for _, conn := range conns {
			conn.Close()
		}
	}
}

// BenchmarkOpenSSHToPinhole: one stream from OpenSSH's ssh -L into a
// pinhole server in this process, to a sink here: the server's receive
// path, which is where x/crypto is slow. Profile with -cpuprofile.
// BENCH_SSH_ARGS adds ssh flags, e.g. "-c aes128-gcm@openssh.com" (OpenSSH
// picks chacha20-poly1305 first, which x/crypto runs in generic Go).
func BenchmarkOpenSSHToPinhole(b *testing.B) {
	sshtest.Need(b, sshtest.SSHPath)
	sink := discardSink(b)
	key := sshtest.NewKey(b, b.TempDir(), "client")
	srv := startServer(b, nil, newSigner(b), keySet(b, authorizedLine("", key.Public)))
	o := sshtest.SSHOptions{
		Addr: srv.addr, User: "bench", Key: key, Args: strings.Fields(os.Getenv("BENCH_SSH_ARGS")),
		KnownHosts: knownhosts.Line([]string{srv.addr}, srv.hostKey.PublicKey()) + "\n",
	}
	_, port := sshtest.StartSSHForward(b, o, func(p int) []string {
		return []string{"-L", fmt.Sprintf("127.0.0.1:%d:%s", p, sink.Addr())}
	}, nil)
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, 1<<20)
	b.SetBytes(int64(len(buf)))
	b.ResetTimer()
	for b.Loop() {
		if _, err := conn.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNewConn: what the benchmark's conns measures, in this process:
// 8 workers each connect through -L, send 64 bytes, read them back from an
// echo server and close. Both pinhole ends run here, so -cpuprofile shows
// the whole cost of one connection.
func BenchmarkNewConn(b *testing.B) {
	echo := streamtest.NewEcho(b)
	clientKey := newSigner(b)
	// Info to nowhere, as pinhole's CLI logs: Debug calls cost what they cost there.
	log := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo}))
	srv := startServerConfig(b, nil, tunnel.ServerConfig{
		HostKeys:  []ssh.Signer{newSigner(b)},
		Authorize: keySet(b, authorizedLine("", clientKey.PublicKey())),
		Logger:    log,
	})
	cfg := clientConfig(b, srv.addr, srv.hostKey.PublicKey(), clientKey)
	cfg.Logger = log
	cfg.Local = []spec.Forward{mustParse(b, spec.Local, "127.0.0.1:0:"+echo.Addr())}
	addr := dialClient(b, cfg).LocalAddrs()[0].String()
	b.SetParallelism(4) // 8 workers on 2 CPUs
	b.RunParallel(func(pb *testing.PB) {
		p := make([]byte, 64)
		for pb.Next() {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				b.Error(err)
				return
			}
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := conn.Write(p); err == nil {
				_, err = io.ReadFull(conn, p)
			}
			conn.Close()
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
}
