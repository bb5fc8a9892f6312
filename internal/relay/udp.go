package relay

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// MaxDatagram is the largest UDP payload carried: 65,535 bytes less the
// 8-byte UDP header (IPv4 allows 65,507; IPv6 65,527).
const MaxDatagram = 65527

// PacketListener is what a UDPForwarder reads from and answers on: a
// *net.UDPConn bound to the forward's local address.
type PacketListener interface {
	ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error)
	WriteToUDPAddrPort(b []byte, addr netip.AddrPort) (int, error)
	Close() error
}

// UDPForwarder relays datagrams arriving on a listener to a flow per source
// address, each flow a datagram connection opened by Dial (through a tunnel,
// or a plain UDP socket), and sends each flow's replies back to its own
// source. Idle flows expire; the number of flows is capped. A datagram that
// cannot be carried (no flow can be opened, or the flow's queue is full) is
// dropped and counted, never truncated.
type UDPForwarder struct {
	// Dial opens the flow for a new source. The returned conn must keep
	// datagram boundaries: each Write sends one datagram, each Read returns
	// one. It is called with a context that ends when the forwarder closes.
	Dial func(ctx context.Context, src netip.AddrPort) (net.Conn, error)
	// Admit, if set, says whether a datagram from a new source may open a
	// flow; one it refuses is dropped (counted as Refused) before a flow,
	// a goroutine or a log line is spent on it. It must not block: it
	// runs in the listener's read loop.
	Admit func(src netip.AddrPort) bool
	// IdleTimeout ends a flow with no datagram either way for this long.
	// 0 means 60 s.
	IdleTimeout time.Duration
	// MaxFlows caps the flows at once; a datagram from a new source past
	// the cap is dropped. 0 means 1024.
	MaxFlows int
	// QueueBytes is how many bytes of datagrams may wait for one flow's
	// connection (while it opens, or while the tunnel is slower than the
	// sender). 0 means 1 MiB.
	QueueBytes int
	// Logger gets a line per flow opened and closed. nil discards.
	Logger *slog.Logger

	n     udpCounts // datagrams and drops (udpstats.go)
	mu    sync.Mutex
	flows map[netip.AddrPort]*flow
	wg    sync.WaitGroup
}

// Dropped reports how many datagrams were dropped so far.
func (f *UDPForwarder) Dropped() uint64 { return f.n.stats().Dropped() }

// Flows reports how many flows are open now.
func (f *UDPForwarder) Flows() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.flows)
}

type flow struct {
	src    netip.AddrPort
	queue  chan []byte
	queued atomic.Int64 // bytes in queue
	last   atomic.Int64 // unix nanoseconds of the last datagram either way
	once   sync.Once
	done   chan struct{}
}

func (fl *flow) touch() { fl.last.Store(time.Now().UnixNano()) }

func (fl *flow) close() {
	fl.once.Do(func() {
		close(fl.done)
	})
}

// Serve reads datagrams from l until ctx ends or l fails, then closes every
// flow, waits for them and returns. It closes l when ctx ends.
func (f *UDPForwarder) Serve(ctx context.Context, l PacketListener) error {
	idle := f.IdleTimeout
	if idle <= 0 {
		idle = 60 * time.Second
	}
	log := f.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if b := SetBuffers(l); b.Capped {
		log.Warn("udp: the kernel gave this socket smaller buffers than asked for: a burst larger than them is lost; raise net.core.rmem_max and wmem_max (sysctl -w net.core.rmem_max=8388608 net.core.wmem_max=8388608) or run as root",
			"laddr", laddr(l), "read_buffer", b.Read, "write_buffer", b.Write, "asked", SocketBuffer)
	}
	ctx, cancel := context.WithCancel(ctx)
	f.mu.Lock()
	f.flows = make(map[netip.AddrPort]*flow)
	f.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()

	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		f.expire(ctx, idle, log)
	}()

	buf := make([]byte, MaxDatagram+1)
	var err error
	for {
		var n int
		var src netip.AddrPort
		n, src, err = l.ReadFromUDPAddrPort(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil {
				continue
			}
			break
		}
		if n > MaxDatagram {
			f.n.tooBig.Add(1)
			continue
		}
		f.n.datagrams.Add(1)
		f.deliver(ctx, l, src, buf[:n], log)
	}
	cancel()
	f.mu.Lock()
	for _, fl := range f.flows {
		fl.close()
	}
	f.mu.Unlock()
	f.wg.Wait()
	log.Info("udp: forward closed", "laddr", laddr(l), "datagrams", f.n.datagrams.Load(), "dropped", f.Dropped())
	if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// deliver queues one datagram on its source's flow, opening the flow first
// if it is new.
func (f *UDPForwarder) deliver(ctx context.Context, l PacketListener, src netip.AddrPort, b []byte, log *slog.Logger) {
	f.mu.Lock()
	fl := f.flows[src]
	if fl == nil {
		if f.Admit != nil && !f.Admit(src) {
			f.mu.Unlock()
			f.n.refused.Add(1)
			return
		}
		max := f.MaxFlows
		if max <= 0 {
			max = 1024
		}
		if len(f.flows) >= max {
			f.mu.Unlock()
			f.n.noFlow.Add(1)
			log.Debug("udp: flow cap reached; datagram dropped", "peer", src, "flows", max)
			return
		}
		fl = &flow{src: src, queue: make(chan []byte, queueSlots), done: make(chan struct{})}
		fl.touch()
		f.flows[src] = fl
		f.n.flows.Add(1)
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.run(ctx, l, fl, log)
		}()
	}
	f.mu.Unlock()
	fl.touch()
	limit := int64(f.QueueBytes)
	if limit <= 0 {
		limit = 1 << 20
	}
	if fl.queued.Load()+int64(len(b)) > limit {
		f.n.queueFull.Add(1)
		return
	}
	select {
	case fl.queue <- append([]byte(nil), b...):
		fl.queued.Add(int64(len(b)))
	default:
		f.n.queueFull.Add(1)
	}
}

// queueSlots bounds a flow's queue in datagrams; QueueBytes bounds it in
// bytes.
const queueSlots = 4096

// run dials a flow, then sends its queue and returns its replies until it
// is closed (idle, or the forwarder stops) or its connection fails.
func (f *UDPForwarder) run(ctx context.Context, l PacketListener, fl *flow, log *slog.Logger) {
	defer func() {
		f.mu.Lock()
		if f.flows[fl.src] == fl {
			delete(f.flows, fl.src)
		}
		f.mu.Unlock()
		fl.close()
	}()
	conn, err := f.Dial(ctx, fl.src)
	if err != nil {
		n := len(fl.queue)
		f.n.failed.Add(uint64(n))
		log.Info("udp: cannot open flow; datagrams dropped", "peer", fl.src, "err", err, "dropped", n)
		return
	}
	SetBuffers(conn) // a plain UDP socket's: replies wait there in a burst
	log.Debug("udp: flow open", "peer", fl.src)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, MaxDatagram)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				fl.close()
				return
			}
			fl.touch()
			if _, err := l.WriteToUDPAddrPort(buf[:n], fl.src); err == nil {
				f.n.replies.Add(1)
			}
		}
	}()
	for {
		select {
		case <-fl.done:
			conn.Close()
			wg.Wait()
			log.Debug("udp: flow closed", "peer", fl.src)
			return
		case b := <-fl.queue:
			fl.queued.Add(-int64(len(b)))
			if _, err := conn.Write(b); err != nil {
				f.n.failed.Add(1)
			}
		}
	}
}

// expire closes flows idle for longer than idle.
func (f *UDPForwarder) expire(ctx context.Context, idle time.Duration, log *slog.Logger) {
	tick := time.NewTicker(min(idle/4, 5*time.Second))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			f.mu.Lock()
			for _, fl := range f.flows {
				if now.Sub(time.Unix(0, fl.last.Load())) > idle {
					fl.close()
				}
			}
			f.mu.Unlock()
		}
	}
}

// SocketBuffer is the kernel buffer asked for each way on UDP sockets: a
// burst of datagrams waits there while the relay catches up. quic-go asks
// for 7 MiB for the same reason.
const SocketBuffer = 8 << 20

// Buffers is what the kernel gave a socket, in bytes of payload and
// overhead as the kernel counts them (half of what getsockopt reports).
type Buffers struct {
	Read, Write int
	// Capped: the kernel gave less than SocketBuffer one way or both:
	// the process may not force past net.core.rmem_max / wmem_max (it
	// lacks CAP_NET_ADMIN), and those are lower.
	Capped bool
}

// SetBuffers asks for SocketBuffer bytes of kernel send and receive
// buffer on a UDP socket (a *net.UDPConn, or a net.Conn dialled over
// UDP), best effort: past net.core.rmem_max and wmem_max where the
// process may (SO_RCVBUFFORCE, SO_SNDBUFFORCE: root), up to them where
// not. It reports what the kernel gave; the zero Buffers when c is no
// socket.
func SetBuffers(c any) Buffers {
	return setBuffers(c, SocketBuffer)
}

// laddr is l's local address for the log, when it has one.
func laddr(l any) string {
	if a, ok := l.(interface{ LocalAddr() net.Addr }); ok {
		return a.LocalAddr().String()
	}
	return ""
}
