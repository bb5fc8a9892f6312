package tunnel

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"

	"github.com/pinhole-dev/pinhole/internal/ssh"
)

// Early data (pinhole only; docs/protocol.md): a -L connection whose
// client has already written when pinhole accepts it (an HTTP request, a
// TLS ClientHello) opens a direct-tcpip-early@pinhole channel that carries
// those bytes, up to maxEarly, in the open itself. The server dials the
// target, writes them and then confirms, so the first request is on its
// way one round trip through the tunnel sooner: the client does not wait
// for the confirmation before sending it. Only what is already there is
// taken; a client that waits for the server to speak first (SSH, SMTP,
// MySQL) gets a plain direct-tcpip open at once.
const chanDirectTCPIPEarly = "direct-tcpip-early@pinhole"

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

// openDirect opens a direct-tcpip channel for p on l. Early data goes in
// the open when the server is pinhole; to a pinhole server from before
// early data (which refuses the channel type) it goes as the channel's
// first data, and l stops trying.
func (l *link) openDirect(p channelOpen, early []byte) (ssh.Channel, error) {
	if len(early) > 0 && l.early.Load() {
		e := channelOpenEarly{Host: p.Host, Port: p.Port, OriginHost: p.OriginHost, OriginPort: p.OriginPort, Early: early}
		ch, err := l.openChannel(chanDirectTCPIPEarly, e.open(), ssh.Marshal(e))
		var oe *OpenError
		if !errors.As(err, &oe) || oe.Reason != ssh.UnknownChannelType {
			return ch, err
		}
		l.early.Store(false)
	}
	ch, err := l.openChannel(chanDirectTCPIP, p, ssh.Marshal(p))
	if err == nil && len(early) > 0 {
		if _, err = ch.Write(early); err != nil {
			ch.Close()
			return nil, err
		}
	}
	return ch, err
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
		n, err = readNow(fd, *bp)
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

// parseOpen reads the payload of a direct-tcpip, direct-udp@pinhole or
// direct-tcpip-early@pinhole open (chanType): the target, the originator
// and, for the last, the early data.
func parseOpen(chanType string, payload []byte) (channelOpen, []byte, error) {
	if chanType != chanDirectTCPIPEarly {
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
