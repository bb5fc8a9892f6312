package tunnel_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/spec"
	"github.com/pinhole-dev/pinhole/internal/streamtest"
	"github.com/pinhole-dev/pinhole/internal/tunnel"
)

// udpTunnel starts a pinhole server and a client with one -L/udp and one
// -R/udp forward to target, and returns the two addresses to send to.
func udpTunnel(t *testing.T, target *net.UDPConn) (local, remote string) {
	t.Helper()
	clientKey := newSigner(t)
	srv := startServer(t, nil, newSigner(t), keySet(t, authorizedLine("", clientKey.PublicKey())))
	cfg := clientConfig(t, srv.addr, srv.hostKey.PublicKey(), clientKey)
	port := target.LocalAddr().(*net.UDPAddr).Port
	cfg.Local = []spec.Forward{mustParse(t, spec.Local, fmt.Sprintf("127.0.0.1:0:127.0.0.1:%d/udp", port))}
	cfg.Remote = []spec.Forward{mustParse(t, spec.Remote, fmt.Sprintf("0:127.0.0.1:%d/udp", port))}
	c := dialClient(t, cfg)
	if !c.UDP() {
		t.Fatal("a pinhole server does not report UDP support")
	}
	_, rport, err := net.SplitHostPort(c.RemoteAddrs()[0])
	if err != nil {
		t.Fatalf("-R/udp not bound: %q", c.RemoteAddrs())
	}
	return c.LocalAddrs()[0].String(), net.JoinHostPort("127.0.0.1", rport)
}

func dialUDP(t testing.TB, addr string) *net.UDPConn {
	t.Helper()
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp", nil, ua)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadBuffer(4 << 20)
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip sends p and waits for the same bytes back, retrying a lost
// datagram a few times (UDP gives no promise, even on loopback).
func roundTrip(c *net.UDPConn, p []byte) error {
	buf := make([]byte, 65535)
	for try := 0; try < 5; try++ {
		if _, err := c.Write(p); err != nil {
			return err
		}
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := c.Read(buf)
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			continue
		}
		if err != nil {
			return err
		}
		if !bytes.Equal(buf[:n], p) {
			return fmt.Errorf("got %d bytes back, want the %d sent", n, len(p))
		}
		return nil
	}
	return fmt.Errorf("no reply to a %d-byte datagram after 5 tries", len(p))
}

// TestUDPRequestResponse: datagrams of every size up to 60,000 bytes go
// through -L/udp and -R/udp and come back whole.
func TestUDPRequestResponse(t *testing.T) {
	echo := streamtest.NewUDPEcho(t)
	local, remote := udpTunnel(t, echo)
	for _, addr := range []struct{ name, addr string }{{"L", local}, {"R", remote}} {
		t.Run(addr.name, func(t *testing.T) {
			c := dialUDP(t, addr.addr)
			for _, size := range []int{0, 1, 64, 1200, 1500, 9000, 32 << 10, 60000} {
				p := make([]byte, size)
				for i := range p {
					p[i] = byte(i*7 + size)
				}
				if err := roundTrip(c, p); err != nil {
					t.Fatalf("%d-byte datagram: %v", size, err)
				}
			}
		})
	}
}

// TestUDPBurst: 10,000 datagrams of mixed sizes over 8 flows at once; each
// flow must get only its own replies, and at least 99% must come back.
//
// Each flow keeps up to window datagrams in flight. An unpaced blast
// measures the kernel's socket buffers rather than the relay: on this
// machine kind it loses up to a fifth of the datagrams going straight to
// the echo server on loopback, with no pinhole in the path (DIRECT=1 runs
// the test that way).
func TestUDPBurst(t *testing.T) {
	const flows, perFlow, window = 8, 1250, 64
	echo := streamtest.NewUDPEcho(t)
	local, _ := udpTunnel(t, echo)
	if os.Getenv("DIRECT") != "" {
		local = echo.LocalAddr().String()
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		received int
		errs     []error
	)
	for f := range flows {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := dialUDP(t, local)
			got := make([]bool, perFlow)
			n := 0
			inflight := make(chan struct{}, window)
			done := make(chan error, 1)
			go func() {
				buf := make([]byte, 65535)
				for n < perFlow {
					c.SetReadDeadline(time.Now().Add(3 * time.Second))
					m, err := c.Read(buf)
					if err != nil {
						done <- nil // the rest are lost
						return
					}
					if m < 8 || binary.BigEndian.Uint32(buf) != uint32(f) {
						done <- fmt.Errorf("flow %d got a datagram of another flow (%d bytes)", f, m)
						return
					}
					seq := binary.BigEndian.Uint32(buf[4:])
					if seq >= perFlow || got[seq] {
						done <- fmt.Errorf("flow %d: bad or repeated sequence %d", f, seq)
						return
					}
					got[seq] = true
					n++
					select {
					case <-inflight:
					default:
					}
				}
				done <- nil
			}()
			rng := rand.New(rand.NewPCG(uint64(f), 1))
			for seq := range perFlow {
				p := make([]byte, 8+rng.IntN(1400))
				binary.BigEndian.PutUint32(p, uint32(f))
				binary.BigEndian.PutUint32(p[4:], uint32(seq))
				select {
				case inflight <- struct{}{}:
				case <-time.After(500 * time.Millisecond): // a loss; go on
				}
				c.Write(p)
			}
			err := <-done
			mu.Lock()
			received += n
			if err != nil {
				errs = append(errs, err)
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	for _, err := range errs {
		t.Error(err)
	}
	sent := flows * perFlow
	t.Logf("%d of %d datagrams came back (%.2f%%)", received, sent, 100*float64(received)/float64(sent))
	if received*100 < sent*99 {
		t.Fatalf("only %d of %d datagrams came back; want at least 99%%", received, sent)
	}
}

// TestUDPPermits: permitopen and permitlisten govern /udp forwards as they
// do TCP ones.
func TestUDPPermits(t *testing.T) {
	echo := streamtest.NewUDPEcho(t)
	port := echo.LocalAddr().(*net.UDPAddr).Port
	clientKey := newSigner(t)
	opts := `permitopen="127.0.0.1:1",permitlisten="127.0.0.1:*"`
	srv := startServer(t, nil, newSigner(t), keySet(t, authorizedLine(opts, clientKey.PublicKey())))
	cfg := clientConfig(t, srv.addr, srv.hostKey.PublicKey(), clientKey)
	cfg.Remote = []spec.Forward{
		mustParse(t, spec.Remote, fmt.Sprintf("0:127.0.0.1:%d/udp", port)),           // asks for "localhost": refused
		mustParse(t, spec.Remote, fmt.Sprintf("127.0.0.1:0:127.0.0.1:%d/udp", port)), // allowed
	}
	c := dialClient(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.DialUDP(ctx, echo.LocalAddr().String()); !errors.Is(err, tunnel.ErrProhibited) {
		t.Fatalf("udp to a target outside permitopen: %v; want ErrProhibited", err)
	}
	remotes := c.RemoteAddrs()
	if remotes[0] != "" || remotes[1] == "" {
		t.Fatalf("remote udp forwards %q; want the first refused, the second bound", remotes)
	}
	_, rport, _ := net.SplitHostPort(remotes[1])
	if err := roundTrip(dialUDP(t, net.JoinHostPort("127.0.0.1", rport)), []byte("allowed")); err != nil {
		t.Fatalf("the allowed -R/udp: %v", err)
	}
}
