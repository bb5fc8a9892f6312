package tunnel

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pinhole-dev/pinhole/internal/rawio"
	"github.com/pinhole-dev/pinhole/internal/ssh"
)

// Early data (pinhole only; docs/protocol.md): a forwarded connection
// whose client has already written when pinhole accepts it (an HTTP
// request, a TLS ClientHello) opens its channel with those bytes, up to
// maxEarly, in the open itself: direct-tcpip-early@pinhole for -L,
// forwarded-tcpip-early@pinhole for -R. The far end dials the target,
// writes them and then confirms, so the first request is on its way one
// round trip through the tunnel sooner: the near end does not wait for the
// confirmation before sending it. Only what is already there is taken; a
// client that waits for the server to speak first (SSH, SMTP, MySQL) gets a
// plain open at once.
const (
	chanDirectTCPIPEarly    = "direct-tcpip-early@pinhole"
	chanForwardedTCPIPEarly = "forwarded-tcpip-early@pinhole"
)

// maxEarly bounds the early data: a fresh TCP socket takes it without
// blocking, and it fits in any SSH packet.
const maxEarly = 16 << 10

// channelOpenEarly is direct-tcpip's payload followed by the early data as
// an SSH string.
type channelOpenEarly struct {
	Host       string
	Port       uint32
	OriginHost string
	OriginPort uint32
	Early      []byte
}

func (e channelOpenEarly) open() channelOpen {
	return channelOpen{Host: e.Host, Port: e.Port, OriginHost: e.OriginHost, OriginPort: e.OriginPort}
}

// openEarly opens a channel of plainType for p through open. Early data
// goes in the open as earlyType while offer holds; to a pinhole peer from
// before early data (which refuses the type) it goes as the channel's
// first data, and offer is cleared so the connection stops trying.
func openEarly(open func(chanType string, p channelOpen, payload []byte) (ssh.Channel, error), plainType, earlyType string, p channelOpen, early []byte, offer *atomic.Bool) (ssh.Channel, error) {
	if len(early) > 0 && offer.Load() {
		e := channelOpenEarly{Host: p.Host, Port: p.Port, OriginHost: p.OriginHost, OriginPort: p.OriginPort, Early: early}
		ch, err := open(earlyType, p, ssh.Marshal(e))
		if !unknownType(err) {
			return ch, err
		}
		offer.Store(false)
	}
	ch, err := open(plainType, p, ssh.Marshal(p))
	if err == nil && len(early) > 0 {
		if _, err = ch.Write(early); err != nil {
			ch.Close()
			return nil, err
		}
	}
	return ch, err
}

// unknownType reports whether err is a refusal of the channel type.
func unknownType(err error) bool {
	var oe *OpenError
	var oce *ssh.OpenChannelError
	return errors.As(err, &oe) && oe.Reason == ssh.UnknownChannelType ||
		errors.As(err, &oce) && oce.Reason == ssh.UnknownChannelType
}

// writeEarly writes early data to target, just dialed as c, before the
// channel is confirmed. On failure it closes c and returns the reason to
// refuse the channel with.
func writeEarly(c net.Conn, target string, early []byte) error {
	if len(early) == 0 {
		return nil
	}
	c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := c.Write(early)
	c.SetWriteDeadline(time.Time{})
	if err != nil {
		c.Close()
		return fmt.Errorf("connected to %s but could not send the first bytes to it: %w", target, err)
	}
	return nil
}

var earlyBufs = sync.Pool{New: func() any { b := make([]byte, maxEarly); return &b }}

// readEarly returns what conn's peer has written so far, up to maxEarly,
// without waiting for more: nil when nothing is there (or conn is not a
// socket). The caller gives the buffer back with putEarly.
func readEarly(conn net.Conn) []byte {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	bp := earlyBufs.Get().(*[]byte)
	var n int
	raw.Read(func(fd uintptr) bool {
		n, err = rawio.ReadOnce(fd, *bp)
		return true // one try: never wait for data
	})
	if err != nil || n <= 0 {
		earlyBufs.Put(bp)
		return nil
	}
	return (*bp)[:n]
}

func putEarly(b []byte) {
	if cap(b) == maxEarly {
		b = b[:maxEarly]
		earlyBufs.Put(&b)
	}
}

// parseOpen reads the payload of a channel open of chanType that carries a
// channelOpen (direct-tcpip, forwarded-tcpip and pinhole's UDP ones), or,
// for the two early types, a channelOpenEarly.
func parseOpen(chanType string, payload []byte) (channelOpen, []byte, error) {
	if chanType != chanDirectTCPIPEarly && chanType != chanForwardedTCPIPEarly {
		var p channelOpen
		err := ssh.Unmarshal(payload, &p)
		return p, nil, err
	}
	var e channelOpenEarly
	if err := ssh.Unmarshal(payload, &e); err != nil {
		return channelOpen{}, nil, err
	}
	if len(e.Early) > maxEarly {
		return channelOpen{}, nil, fmt.Errorf("%d bytes of early data, more than %d", len(e.Early), maxEarly)
	}
	return e.open(), e.Early, nil
}
