package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pinhole-dev/pinhole/internal/relay"
)

// The in-process clients: each measurement talks to a forwarder's local
// port, behind which the benchmark's own echo servers answer. Every
// blocking call has a deadline, and ctx ending sets one at once, so a
// forwarder that stops answering fails its cell instead of hanging the run.

const requestSize = 64 // bytes in each request and response

// dialTCP connects to 127.0.0.1:port and returns the connection with ctx's
// deadline set on it; ctx ending later makes every read and write fail.
func dialTCP(ctx context.Context, port int, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, "tcp", loopback(port))
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	return c, nil
}

// closeOnDone makes every blocked read and write on c return once ctx
// ends; the returned stop undoes that.
func closeOnDone(ctx context.Context, c net.Conn) (stop func() bool) {
	return context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
}

// timeRoundTrips calls roundTrip again and again for d and returns how long
// each one that came back took, and the time it all took. A round trip
// that reports lost (a UDP datagram that did not come back) is counted and
// not timed; an error ends it all.
func timeRoundTrips(ctx context.Context, d time.Duration, roundTrip func() (lost bool, err error)) (rtts []time.Duration, elapsed time.Duration, lost int, err error) {
	rtts = make([]time.Duration, 0, 1<<16)
	began := time.Now()
	end := began.Add(d)
	for now := began; now.Before(end) && ctx.Err() == nil; {
		l, err := roundTrip()
		if err != nil {
			return nil, 0, lost, err
		}
		next := time.Now()
		if l {
			lost++
		} else {
			rtts = append(rtts, next.Sub(now))
		}
		now = next
	}
	if err := ctx.Err(); err != nil {
		return nil, 0, lost, err
	}
	slices.Sort(rtts)
	return rtts, time.Since(began), lost, nil
}

// rateAndPercentiles turns timed round trips into the table's figures:
// round trips per second, p50 and p99 in µs.
func rateAndPercentiles(rtts []time.Duration, elapsed time.Duration) []float64 {
	return []float64{
		float64(len(rtts)) / elapsed.Seconds(),
		micros(percentile(rtts, 50)),
		micros(percentile(rtts, 99)),
	}
}

// tcpRequestResponse sends a 64-byte request over one connection through
// port and waits for its echo, one after the other, for d.
func tcpRequestResponse(ctx context.Context, port int, d time.Duration) ([]float64, string, error) {
	c, err := dialTCP(ctx, port, 5*time.Second)
	if err != nil {
		return nil, "", err
	}
	defer c.Close()
	defer closeOnDone(ctx, c)()
	req := make([]byte, requestSize)
	resp := make([]byte, requestSize)
	roundTrip := func() (bool, error) {
		if _, err := c.Write(req); err != nil {
			return false, err
		}
		_, err := io.ReadFull(c, resp)
		return false, err
	}
	for range 50 { // the first exchanges warm up both forwarder ends
		if _, err := roundTrip(); err != nil {
			return nil, "", err
		}
	}
	rtts, elapsed, _, err := timeRoundTrips(ctx, d, roundTrip)
	if err != nil {
		return nil, "", err
	}
	return rateAndPercentiles(rtts, elapsed), "", nil
}

// newConnections runs workers that each connect through port, send 64
// bytes, read the echo and close, again and again for d, and returns
// connections per second.
func newConnections(ctx context.Context, port int, d time.Duration, workers int) ([]float64, string, error) {
	var ok, failed atomic.Int64
	var firstErr error
	var once sync.Once
	began := time.Now()
	end := began.Add(d)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			buf := make([]byte, requestSize)
			for time.Now().Before(end) && ctx.Err() == nil {
				if err := connectEchoClose(ctx, port, buf); err != nil {
					failed.Add(1)
					once.Do(func() { firstErr = err })
					continue
				}
				ok.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(began)
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	if ok.Load() == 0 {
		return nil, "", fmt.Errorf("bench: no connection worked: %w", firstErr)
	}
	note := ""
	if n := failed.Load(); n > 0 {
		note = fmt.Sprintf("%d of %d connections failed, the first with: %v", n, n+ok.Load(), firstErr)
	}
	return []float64{float64(ok.Load()) / elapsed.Seconds()}, note, nil
}

func connectEchoClose(ctx context.Context, port int, buf []byte) error {
	c, err := dialTCP(ctx, port, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(buf); err != nil {
		return err
	}
	_, err = io.ReadFull(c, buf)
	return err
}

// openHeld opens n connections through port, parallel at a time, each
// proven by one byte echoed back, and returns those that worked, how many
// did not and the first error.
func openHeld(ctx context.Context, port, n, parallel int) (held []net.Conn, failed int, firstErr error) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := make(chan struct{}, n)
	for range n {
		next <- struct{}{}
	}
	close(next)
	for range parallel {
		wg.Go(func() {
			one := []byte{'x'}
			for range next {
				c, err := dialTCP(ctx, port, 10*time.Second)
				if err == nil {
					c.SetDeadline(time.Now().Add(10 * time.Second))
					err = echoOne(c, one)
				}
				mu.Lock()
				if err != nil {
					failed++
					if firstErr == nil {
						firstErr = err
					}
					if c != nil {
						c.Close()
					}
				} else {
					held = append(held, c)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return held, failed, firstErr
}

// echoOne sends b and reads it back.
func echoOne(c net.Conn, b []byte) error {
	if _, err := c.Write(b); err != nil {
		return err
	}
	got := make([]byte, len(b))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if string(got) != string(b) {
		return fmt.Errorf("bench: sent %q, %q came back", b, got)
	}
	return nil
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		c.Close()
	}
}

// idleMemory holds n connections open through port, each proven by one
// echoed byte, and returns how much the resident memory of the
// forwarder's processes grew, in kB per connection.
func idleMemory(ctx context.Context, port, n int, pids func() ([]int, error)) ([]float64, string, error) {
	rss := func() (int64, error) {
		ps, err := pids()
		if err != nil {
			return 0, err
		}
		return totalRSS(ps)
	}
	before, err := rss()
	if err != nil {
		return nil, "", err
	}
	held, failed, firstErr := openHeld(ctx, port, n, 8)
	defer closeAll(held)
	if len(held) == 0 {
		return nil, "", fmt.Errorf("bench: no connection could be held: %w", firstErr)
	}
	// Let both ends finish what each new connection started (channel
	// confirmations, goroutines parking) before reading their memory.
	select {
	case <-time.After(time.Second):
	case <-ctx.Done():
		return nil, "", ctx.Err()
	}
	during, err := rss()
	if err != nil {
		return nil, "", err
	}
	note := ""
	if failed > 0 {
		note = fmt.Sprintf("%d of %d connections failed, the first with: %v", failed, n, firstErr)
	}
	return []float64{float64(during-before) / float64(len(held))}, note, nil
}

// holdMany opens n connections through port, 32 at a time, each proven by
// one echoed byte, and once all are open checks that the forwarder has
// closed none of them: it returns how many were held.
//
// The check sends nothing: OpenSSH's ssh looks at every channel for each
// event, so 10,000 more round trips through it would take minutes.
func holdMany(ctx context.Context, port, n int) ([]float64, string, error) {
	held, failed, firstErr := openHeld(ctx, port, n, 32)
	defer closeAll(held)
	alive := 0
	for _, c := range held {
		c.SetDeadline(time.Time{}) // the one set when it opened may have passed
		if err := stillOpen(c); err != nil {
			failed++
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		alive++
	}
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	note := ""
	if failed > 0 {
		note = fmt.Sprintf("%d of %d connections failed, the first with: %v", failed, n, firstErr)
	}
	return []float64{float64(alive)}, note, nil
}

// dialUDP returns a UDP socket connected to 127.0.0.1:port, with socket
// buffers that hold a burst.
func dialUDP(port int) (*net.UDPConn, error) {
	c, err := net.DialUDP("udp", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		return nil, err
	}
	relay.SetBuffers(c) // as the echo server's (newUDPEcho)
	return c, nil
}

// udpLossWait is how long a UDP request waits for its reply before it
// counts as lost.
const udpLossWait = 500 * time.Millisecond

// udpRequestResponse sends 64-byte datagrams through port on one flow, each
// after the previous reply, for d: datagrams per second, p50 and p99 in µs.
// A reply that does not come within udpLossWait counts as lost.
func udpRequestResponse(ctx context.Context, port int, d time.Duration) ([]float64, string, error) {
	c, err := dialUDP(port)
	if err != nil {
		return nil, "", err
	}
	defer c.Close()
	defer closeOnDone(ctx, c)()
	req := make([]byte, requestSize)
	resp := make([]byte, 2048)
	var seq uint64
	roundTrip := func() (bool, error) {
		seq++
		binary.BigEndian.PutUint64(req, seq)
		if _, err := c.Write(req); err != nil {
			return false, err
		}
		c.SetReadDeadline(time.Now().Add(udpLossWait))
		for {
			n, err := c.Read(resp)
			if errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil {
				return true, nil
			}
			if err != nil {
				return false, err
			}
			if n == requestSize && binary.BigEndian.Uint64(resp) == seq {
				return false, nil
			}
			// a late reply to a request already counted as lost
		}
	}
	// The first datagram opens the flow (a channel through the tunnel).
	if lost, err := roundTrip(); err != nil || lost {
		return nil, "", fmt.Errorf("bench: the first datagram through the forward did not come back (%v)", err)
	}
	rtts, elapsed, lost, err := timeRoundTrips(ctx, d, roundTrip)
	if err != nil {
		return nil, "", err
	}
	note := ""
	if lost > 0 {
		note = fmt.Sprintf("%d of %d datagrams lost", lost, lost+len(rtts))
	}
	return rateAndPercentiles(rtts, elapsed), note, nil
}

// burstPace is how a flow of udpBurst sends: with at most window
// datagrams awaiting their echo, or, with perMilli set, perMilli datagrams
// each millisecond whatever comes back (no flow control, as a game or a
// camera sends).
type burstPace struct {
	window, perMilli int
}

// udpBurst sends total datagrams of 64 to 1400 bytes through port over
// flows flows, each flow paced by pace, and returns the percentage that
// did not come back.
func udpBurst(ctx context.Context, port, total, flows int, pace burstPace) ([]float64, string, error) {
	perFlow := total / flows
	var received atomic.Int64
	errs := make(chan error, flows)
	var wg sync.WaitGroup
	for f := range flows {
		wg.Go(func() {
			n, err := burstFlow(ctx, port, uint32(f), perFlow, pace)
			received.Add(int64(n))
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return nil, "", err
		}
	}
	sent := perFlow * flows
	return []float64{100 * float64(sent-int(received.Load())) / float64(sent)}, "", nil
}

// burstFlow is one flow of udpBurst: it returns how many of its n
// datagrams came back.
func burstFlow(ctx context.Context, port int, flow uint32, n int, pace burstPace) (int, error) {
	c, err := dialUDP(port)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	defer closeOnDone(ctx, c)()

	inflight := make(chan struct{}, pace.window) // unused when paced by time
	got := make([]bool, n)
	count := 0
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 64<<10)
		for count < n {
			// Replies stop coming: the rest are lost.
			c.SetReadDeadline(time.Now().Add(time.Second))
			m, err := c.Read(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil {
				break
			}
			if err != nil {
				done <- err
				return
			}
			if m < 8 || binary.BigEndian.Uint32(buf) != flow {
				done <- fmt.Errorf("bench: flow %d got a datagram of another flow (%d bytes)", flow, m)
				return
			}
			seq := binary.BigEndian.Uint32(buf[4:])
			if seq >= uint32(n) || got[seq] {
				done <- fmt.Errorf("bench: flow %d got sequence number %d twice or out of range", flow, seq)
				return
			}
			got[seq] = true
			count++
			select {
			case <-inflight:
			default:
			}
		}
		done <- nil
	}()

	rng := rand.New(rand.NewPCG(uint64(flow), 2))
	p := make([]byte, 1400)
	began := time.Now()
	for seq := range n {
		if pace.perMilli > 0 {
			if d := time.Until(began.Add(time.Duration(seq/pace.perMilli) * time.Millisecond)); d > 0 {
				time.Sleep(d)
			}
		} else {
			select {
			case inflight <- struct{}{}:
			case <-time.After(200 * time.Millisecond):
				// No reply for a while: what is in flight is lost;
				// start the window afresh.
				for len(inflight) > 0 {
					<-inflight
				}
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			break
		}
		size := 64 + rng.IntN(1400-64+1)
		binary.BigEndian.PutUint32(p, flow)
		binary.BigEndian.PutUint32(p[4:], uint32(seq))
		if _, err := c.Write(p[:size]); err != nil {
			return 0, err
		}
	}
	if err := <-done; err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return count, nil
}
