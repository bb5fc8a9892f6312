package faultlab

import (
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// queueLimit is how many packets one direction of the delay line holds at
// most; more are dropped, as a full netem queue drops them. At 25 ms it
// holds a path of about 800 MB/s of 1500-byte packets.
const queueLimit = 16384

// line is one direction of the delay line: it reads packets from in,
// impairs them and writes them to out.
type line struct {
	in, out *os.File
	q       chan packet
	done    chan struct{}
	once    sync.Once

	mu  sync.Mutex
	imp Impairment

	passed, dropped atomic.Uint64
}

type packet struct {
	b   []byte
	due time.Time
}

func newLine(in, out *os.File) *line {
	return &line{in: in, out: out, q: make(chan packet, queueLimit), done: make(chan struct{})}
}

func (l *line) set(imp Impairment) {
	l.mu.Lock()
	l.imp = imp
	l.mu.Unlock()
}

func (l *line) impairment() Impairment {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.imp
}

func (l *line) close() { l.once.Do(func() { close(l.done) }) }

// read takes each packet the kernel routes out of in and drops it, writes
// it at once, or queues it for write, until in is closed.
func (l *line) read() {
	buf := make([]byte, 65536)
	for {
		n, err := l.in.Read(buf)
		if err != nil {
			return
		}
		imp := l.impairment()
		if imp.Loss > 0 && rand.Float64()*100 < imp.Loss {
			l.dropped.Add(1)
			continue
		}
		if imp.Delay <= 0 || (imp.Reorder > 0 && rand.Float64()*100 < imp.Reorder) {
			l.send(buf[:n])
			continue
		}
		select {
		case l.q <- packet{b: append([]byte(nil), buf[:n]...), due: time.Now().Add(imp.Delay)}:
		default:
			l.dropped.Add(1)
		}
	}
}

// write sends each queued packet once it is due, until the line closes.
func (l *line) write() {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		var p packet
		select {
		case p = <-l.q:
		case <-l.done:
			return
		}
		if d := time.Until(p.due); d > 0 {
			t.Reset(d)
			select {
			case <-t.C:
			case <-l.done:
				return
			}
		}
		l.send(p.b)
	}
}

func (l *line) send(b []byte) {
	if _, err := l.out.Write(b); err != nil {
		l.dropped.Add(1)
		return
	}
	l.passed.Add(1)
}
