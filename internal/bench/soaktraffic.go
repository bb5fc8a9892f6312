package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// The soak's three kinds of traffic. Each loop ends when its context does
// and is bounded in count as well; every read and write has a deadline.

const (
	churnMaxEchoes = 8                      // echoes per churn connection: 1 to this
	churnMaxBytes  = 8 << 10                // bytes per echo: 1 to this
	churnPause     = 100 * time.Millisecond // the most between two echoes, and between connections
	churnDeadline  = 15 * time.Second       // for one whole churn connection

	bulkChunk    = 32 << 10
	bulkPattern  = 1 << 20 // bytes of random data the bulk stream cycles through
	bulkStride   = 40009   // a prime: consecutive chunks start at unaligned offsets
	bulkStall    = 30 * time.Second
	bulkRestarts = 100 // at most this many streams one after the other

	udpMinBytes = 16
	udpMaxBytes = 1200
	udpWait     = 500 * time.Millisecond // a reply not back by then is lost
)

// errWrongBytes marks data that came back other than it was sent.
var errWrongBytes = errors.New("wrong bytes")

// trafficCounts is what the soak's traffic did.
type trafficCounts struct {
	Conns, ConnsFailed, ConnsWrong int64 // churn connections done, failed, with wrong bytes
	Echoes                         int64 // checked echoes on them
	EchoedBytes                    int64

	BulkStreams, BulkFailed, BulkWrong int64 // streams ended, broken, with a wrong length or checksum
	BulkBytes                          int64 // sent, on streams that ended checked

	UDPSent, UDPOK, UDPLost, UDPWrong int64

	Errors []string // the first few, for the report
}

const maxErrors = 5

// DataErrors is the number of failures that fail the soak: churn
// connections that failed or carried wrong bytes, bulk streams that broke
// or arrived other than sent, and UDP datagrams that came back wrong.
// Lost datagrams are not among them: UDP may lose.
func (c trafficCounts) DataErrors() int64 {
	return c.ConnsFailed + c.ConnsWrong + c.BulkFailed + c.BulkWrong + c.UDPWrong
}

func (c *trafficCounts) note(kind string, err error) {
	if len(c.Errors) < maxErrors {
		c.Errors = append(c.Errors, kind+": "+err.Error())
	}
}

func (c trafficCounts) brief() string {
	return fmt.Sprintf("churn %d conns (%d failed, %d wrong), bulk streams %d failed, %d wrong, udp %d sent, %d lost, %d wrong",
		c.Conns, c.ConnsFailed, c.ConnsWrong, c.BulkFailed, c.BulkWrong, c.UDPSent, c.UDPLost, c.UDPWrong)
}

// churn is one churning connection: open, echo, check, close, again.
func (s *soak) churn(ctx context.Context, id int) {
	rng := rand.New(rand.NewPCG(uint64(id), 12))
	sent := make([]byte, churnMaxBytes)
	got := make([]byte, churnMaxBytes)
	// at most one connection a millisecond: a bound that never binds
	for range int(s.cfg.Duration/time.Millisecond) + 1 {
		s.gate.RLock()
		if ctx.Err() != nil {
			s.gate.RUnlock()
			return
		}
		echoes, n, err := churnOnce(ctx, s.f.echoPort, rng, sent, got)
		s.gate.RUnlock()
		if ctx.Err() != nil && !errors.Is(err, errWrongBytes) {
			return // cut by the end of the soak: not a failure
		}
		s.count(func(c *trafficCounts) {
			c.Conns++
			c.Echoes += int64(echoes)
			c.EchoedBytes += n
			switch {
			case errors.Is(err, errWrongBytes):
				c.ConnsWrong++
				c.note("churn", err)
			case err != nil:
				c.ConnsFailed++
				c.note("churn", err)
			}
		})
		if sleepCtx(ctx, time.Duration(rng.Int64N(int64(churnPause)))) != nil {
			return
		}
	}
}

// churnOnce opens a connection through port, sends 1 to churnMaxEchoes
// messages of random bytes, each after the echo of the one before, checks
// each echo byte for byte and closes. It returns the echoes checked and
// their bytes.
func churnOnce(ctx context.Context, port int, rng *rand.Rand, sent, got []byte) (echoes int, bytes_ int64, err error) {
	c, err := dialLoopback(ctx, port)
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	defer closeOnDone(ctx, c)()
	c.SetDeadline(time.Now().Add(churnDeadline))
	rounds := 1 + rng.IntN(churnMaxEchoes)
	for i := range rounds {
		if i > 0 {
			if err := sleepCtx(ctx, time.Duration(rng.Int64N(int64(churnPause)))); err != nil {
				return echoes, bytes_, err
			}
		}
		n := 1 + rng.IntN(len(sent))
		fillRandom(rng, sent[:n])
		if _, err := c.Write(sent[:n]); err != nil {
			return echoes, bytes_, err
		}
		if _, err := io.ReadFull(c, got[:n]); err != nil {
			return echoes, bytes_, err
		}
		if !bytes.Equal(sent[:n], got[:n]) {
			return echoes, bytes_, fmt.Errorf("%w: an echo of %d bytes differs from what was sent at byte %d", errWrongBytes, n, firstDiff(sent[:n], got[:n]))
		}
		echoes++
		bytes_ += int64(n)
	}
	return echoes, bytes_, nil
}

func fillRandom(rng *rand.Rand, b []byte) {
	for len(b) >= 8 {
		binary.LittleEndian.PutUint64(b, rng.Uint64())
		b = b[8:]
	}
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// bulk runs the bulk stream until ctx ends, starting another when one
// breaks. hard bounds the checking of the last stream once ctx has ended.
func (s *soak) bulk(ctx, hard context.Context) {
	pattern := make([]byte, bulkPattern+bulkChunk)
	fillRandom(rand.New(rand.NewPCG(1, 2)), pattern)
	for range bulkRestarts {
		if ctx.Err() != nil {
			return
		}
		n, err := bulkStream(ctx, hard, s.f.iperfPort, s.cfg.BulkRate, pattern, &s.bulkSent)
		s.count(func(c *trafficCounts) {
			c.BulkStreams++
			switch {
			case errors.Is(err, errWrongBytes):
				c.BulkWrong++
				c.note("bulk", err)
			case err != nil:
				c.BulkFailed++
				c.note("bulk", err)
			default:
				c.BulkBytes += n
			}
		})
		if err != nil && sleepCtx(ctx, time.Second) != nil {
			return
		}
	}
}

// pace returns how long to wait before sending more, having sent sent
// bytes since began, to keep to rate bytes per second.
func pace(began, now time.Time, sent int64, rate float64) time.Duration {
	due := began.Add(time.Duration(float64(sent) / rate * float64(time.Second)))
	return max(due.Sub(now), 0)
}

// bulkStream sends pattern's bytes through port at rate until ctx ends,
// then half-closes and compares the length and CRC-32 that the sink
// reports with what was sent. It returns the bytes sent, and adds them to
// progress as it goes.
func bulkStream(ctx, hard context.Context, port int, rate float64, pattern []byte, progress *atomic.Int64) (int64, error) {
	c, err := dialLoopback(hard, port)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	defer closeOnDone(hard, c)()
	crc := crc32.NewIEEE()
	var sent int64
	off := 0
	began := time.Now()
	for ctx.Err() == nil {
		if sleepCtx(ctx, pace(began, time.Now(), sent, rate)) != nil {
			break
		}
		chunk := pattern[off : off+bulkChunk]
		off = (off + bulkStride) % bulkPattern
		c.SetWriteDeadline(time.Now().Add(bulkStall))
		n, err := c.Write(chunk)
		crc.Write(chunk[:n])
		sent += int64(n)
		progress.Add(int64(n))
		if err != nil {
			return sent, fmt.Errorf("after %d bytes: %w", sent, err)
		}
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return sent, err
	}
	c.SetDeadline(time.Now().Add(bulkStall))
	var summary [12]byte
	if _, err := io.ReadFull(c, summary[:]); err != nil {
		return sent, fmt.Errorf("after %d bytes, waiting for the sink's checksum: %w", sent, err)
	}
	gotLen, gotCRC := binary.BigEndian.Uint64(summary[:]), binary.BigEndian.Uint32(summary[8:])
	if int64(gotLen) != sent || gotCRC != crc.Sum32() {
		return sent, fmt.Errorf("%w: sent %d bytes with CRC-32 %08x, the sink got %d bytes with %08x", errWrongBytes, sent, crc.Sum32(), gotLen, gotCRC)
	}
	return sent, nil
}

// bulkSink reads each connection to its end and then writes back the
// length (8 bytes) and CRC-32 (4 bytes) of what it read, big-endian.
type bulkSink struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	done  bool
}

func newBulkSink() (*bulkSink, error) {
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	s := &bulkSink{ln: ln, conns: make(map[net.Conn]struct{})}
	s.wg.Go(s.serve)
	return s, nil
}

// Port returns the port the sink accepts on.
func (s *bulkSink) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

func (s *bulkSink) serve() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(5 * time.Millisecond)
			continue
		}
		s.mu.Lock()
		if s.done {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Go(func() { s.drain(c) })
	}
}

func (s *bulkSink) drain(c net.Conn) {
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	crc := crc32.NewIEEE()
	var n int64
	buf := make([]byte, 64<<10)
	for {
		c.SetReadDeadline(time.Now().Add(bulkStall))
		m, err := c.Read(buf)
		crc.Write(buf[:m])
		n += int64(m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return
		}
	}
	var summary [12]byte
	binary.BigEndian.PutUint64(summary[:], uint64(n))
	binary.BigEndian.PutUint32(summary[8:], crc.Sum32())
	c.SetWriteDeadline(time.Now().Add(bulkStall))
	c.Write(summary[:])
}

// Close stops the sink and its connections and waits for them. It is
// idempotent.
func (s *bulkSink) Close() error {
	s.mu.Lock()
	var err error
	if !s.done {
		s.done = true
		err = s.ln.Close()
		for c := range s.conns {
			c.Close()
		}
	}
	s.mu.Unlock()
	s.wg.Wait()
	return err
}

// udp runs the UDP flow: UDPRate datagrams a second on one socket, each
// of random size with its sequence number and CRC-32, each waited for
// until udpWait and checked.
func (s *soak) udp(ctx context.Context) {
	c, err := dialUDP(s.f.udpPort)
	if err != nil {
		s.count(func(tc *trafficCounts) { tc.UDPWrong++; tc.note("udp", err) })
		return
	}
	defer c.Close()
	defer closeOnDone(ctx, c)()
	rng := rand.New(rand.NewPCG(3, 4))
	req := make([]byte, udpMaxBytes)
	resp := make([]byte, 64<<10)
	tick := time.NewTicker(time.Second / time.Duration(s.cfg.UDPRate))
	defer tick.Stop()
	for seq := uint64(1); seq <= uint64(s.cfg.Duration.Seconds()+1)*uint64(s.cfg.UDPRate); seq++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		n := udpMinBytes + rng.IntN(udpMaxBytes-udpMinBytes+1)
		fillRandom(rng, req[12:n])
		binary.BigEndian.PutUint64(req, seq)
		binary.BigEndian.PutUint32(req[8:], crc32.ChecksumIEEE(req[12:n]))
		if _, err := c.Write(req[:n]); err != nil {
			if ctx.Err() != nil {
				return
			}
			s.count(func(tc *trafficCounts) { tc.UDPSent++; tc.UDPWrong++; tc.note("udp", err) })
			continue
		}
		ok, err := udpReply(c, seq, req[:n], resp)
		if ctx.Err() != nil {
			return
		}
		s.count(func(tc *trafficCounts) {
			tc.UDPSent++
			switch {
			case err != nil:
				tc.UDPWrong++
				tc.note("udp", err)
			case ok:
				tc.UDPOK++
			default:
				tc.UDPLost++
			}
		})
	}
}

// udpReply waits for the echo of req, whose sequence number is seq,
// skipping late echoes of earlier datagrams. It returns false when none
// came within udpWait, and an error for an echo that differs from req.
func udpReply(c *net.UDPConn, seq uint64, req, resp []byte) (bool, error) {
	c.SetReadDeadline(time.Now().Add(udpWait))
	for range 1 << 16 { // late echoes to skip: bounded by what can be in flight
		m, err := c.Read(resp)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if m >= 12 && binary.BigEndian.Uint64(resp) < seq {
			continue // the echo of a datagram already counted as lost
		}
		if !bytes.Equal(resp[:m], req) {
			return false, fmt.Errorf("%w: datagram %d of %d bytes came back as %d bytes, differing at byte %d", errWrongBytes, seq, len(req), m, firstDiff(req, resp[:m]))
		}
		return true, nil
	}
	return false, errors.New("too many late echoes")
}
