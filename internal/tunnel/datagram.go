package tunnel

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pinhole-dev/pinhole/internal/ssh"

	"github.com/pinhole-dev/pinhole/internal/relay"
)

// pinhole's UDP extension (docs/protocol.md): datagrams ride in a channel,
// one channel per flow, each datagram framed by a 2-byte big-endian length.
const (
	chanDirectUDP    = "direct-udp@pinhole"
	chanForwardedUDP = "forwarded-udp@pinhole"
	reqUDPForward    = "udp-forward@pinhole"
	reqCancelUDP     = "cancel-udp-forward@pinhole"
)

// errDatagramSize is returned for a datagram too large to carry.
var errDatagramSize = fmt.Errorf("tunnel: datagram larger than %d bytes", relay.MaxDatagram)

var frameBufs = sync.Pool{New: func() any { b := make([]byte, 2+relay.MaxDatagram); return &b }}

// datagramConn is a channel that carries datagrams: each Write sends one,
// each Read returns one, whole.
type datagramConn struct {
	ch           ssh.Channel
	r            *bufio.Reader
	wmu          sync.Mutex
	laddr, raddr net.Addr
	deadline     deadline

	// written and read, when set, count the datagrams' bytes each way
	// (counted); end runs once at Close.
	written, read *atomic.Int64
	end           func()
	closeOnce     sync.Once
}

func newDatagramConn(ch ssh.Channel, laddr, raddr net.Addr) *datagramConn {
	return &datagramConn{ch: ch, r: bufio.NewReaderSize(ch, 4096), laddr: laddr, raddr: raddr}
}

// counted makes d a flow of m, the far end being the target when
// farIsTarget: Writes count toward it, Reads from it (or the other way
// round), and the flow stays open in m until Close.
func (d *datagramConn) counted(m *meter, farIsTarget bool) *datagramConn {
	d.written, d.read = &m.fromTarget, &m.toTarget
	if farIsTarget {
		d.written, d.read = &m.toTarget, &m.fromTarget
	}
	d.end = m.open(true)
	return d
}

// Read returns the next datagram. If p is too short the datagram is
// discarded, not truncated, and io.ErrShortBuffer is returned.
func (d *datagramConn) Read(p []byte) (int, error) {
	n, err := readFrame(d.r, p)
	if n > 0 && d.read != nil {
		d.read.Add(int64(n))
	}
	if err != nil && !errors.Is(err, io.ErrShortBuffer) {
		if d.deadline.passed() {
			err = os.ErrDeadlineExceeded
		}
		return 0, err
	}
	return n, err
}

// readFrame reads one length-prefixed datagram into p.
func readFrame(r *bufio.Reader, p []byte) (int, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, err
	}
	n := int(binary.BigEndian.Uint16(hdr[:]))
	if n > len(p) {
		if _, err := r.Discard(n); err != nil {
			return 0, io.ErrUnexpectedEOF
		}
		return 0, io.ErrShortBuffer
	}
	if _, err := io.ReadFull(r, p[:n]); err != nil {
		return 0, io.ErrUnexpectedEOF
	}
	return n, nil
}

// Write sends p as one datagram.
func (d *datagramConn) Write(p []byte) (int, error) {
	if len(p) > relay.MaxDatagram {
		return 0, errDatagramSize
	}
	bp := frameBufs.Get().(*[]byte)
	defer frameBufs.Put(bp)
	frame := (*bp)[:2+len(p)]
	binary.BigEndian.PutUint16(frame, uint16(len(p)))
	copy(frame[2:], p)
	d.wmu.Lock()
	_, err := d.ch.Write(frame)
	d.wmu.Unlock()
	if err != nil {
		if d.deadline.passed() {
			err = os.ErrDeadlineExceeded
		}
		return 0, err
	}
	if d.written != nil {
		d.written.Add(int64(len(p)))
	}
	return len(p), nil
}

func (d *datagramConn) Close() error {
	if d.end != nil {
		d.closeOnce.Do(d.end)
	}
	return d.ch.Close()
}

func (d *datagramConn) LocalAddr() net.Addr  { return d.laddr }
func (d *datagramConn) RemoteAddr() net.Addr { return d.raddr }

// SetDeadline works as chanConn's: a passed deadline closes the flow.
func (d *datagramConn) SetDeadline(t time.Time) error {
	d.deadline.set(t, func() { d.ch.Close() })
	return nil
}

func (d *datagramConn) SetReadDeadline(t time.Time) error  { return d.SetDeadline(t) }
func (d *datagramConn) SetWriteDeadline(t time.Time) error { return d.SetDeadline(t) }

// pipeDatagrams relays datagrams between a channel's datagramConn and a
// connected UDP socket until either ends, then closes both. Idle expiry is
// the job of the end that holds the flow table; closing the channel ends
// this side.
func pipeDatagrams(dc *datagramConn, udp net.Conn) {
	relay.SetBuffers(udp)
	var once sync.Once
	shut := func() {
		once.Do(func() {
			dc.Close()
			udp.Close()
		})
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer shut()
		buf := make([]byte, relay.MaxDatagram)
		for {
			n, err := udp.Read(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue // ICMP port unreachable and the like: keep the flow
			}
			if _, err := dc.Write(buf[:n]); err != nil {
				return
			}
		}
	}()
	buf := make([]byte, relay.MaxDatagram)
	for {
		n, err := dc.Read(buf)
		if errors.Is(err, io.ErrShortBuffer) {
			continue
		}
		if err != nil {
			break
		}
		udp.Write(buf[:n])
	}
	shut()
	wg.Wait()
}
