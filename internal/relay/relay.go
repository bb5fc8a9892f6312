// Package relay copies bytes between two connections in both directions,
// keeping half-close: when one side stops sending, the other side is told
// with CloseWrite and the opposite direction goes on until it ends too.
package relay

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"github.com/pinhole-dev/pinhole/internal/rawio"
)

// bufSize is the copy buffer size: one SSH channel packet as pinhole's
// SSH fork accepts them (128 KiB; a peer that takes 32 KiB gets four).
const bufSize = 128 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

// tcpSink is a source that copies itself into a TCP connection with no
// goroutine of ours: pinhole's SSH channels write arriving data into the
// socket from the connection's read loop (internal/ssh/sink.go). done runs
// once, possibly on that read loop, and must not block.
type tcpSink interface {
	StartWriteToTCP(c *net.TCPConn, count *atomic.Int64, done func(n int64, err error)) error
}

// closeWriter is a connection that can stop sending while it still reads:
// *net.TCPConn, *net.UnixConn and ssh.Channel all are.
type closeWriter interface {
	CloseWrite() error
}

// Pipe copies a to b and b to a until both directions have ended, then closes
// both. A direction ends at EOF (the other side is half-closed and the
// opposite direction goes on) or at an error (both sides are closed at once,
// which ends the other direction too). It returns the bytes copied each way
// and the first error other than EOF or a use of a closed connection.
func Pipe(a, b io.ReadWriteCloser) (aToB, bToA int64, err error) {
	return PipeCount(a, b, nil, nil)
}

// PipeCount is Pipe that also adds the bytes to countAB (a to b) and
// countBA (b to a) as they move, not only at the end, so that a reader of
// the counts sees a long transfer progress. Either may be nil, and one
// count may be shared by many pipes.
func PipeCount(a, b io.ReadWriteCloser, countAB, countBA *atomic.Int64) (aToB, bToA int64, err error) {
	var (
		wg       sync.WaitGroup
		errBA    error
		closeAll sync.Once
	)
	shut := func() {
		closeAll.Do(func() {
			a.Close()
			b.Close()
		})
	}
	if tcp, ok := a.(*net.TCPConn); ok {
		if sink, ok := b.(tcpSink); ok {
			return pipeSink(tcp, b, sink, shut, countAB, countBA)
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		bToA, errBA = copyHalf(a, b, shut, countBA)
	}()
	aToB, err = copyHalf(b, a, shut, countAB)
	wg.Wait()
	shut()
	if err == nil {
		err = errBA
	}
	return aToB, bToA, err
}

// pipeSink is Pipe for a source b that copies itself into the TCP
// connection a: one goroutine per pair instead of two, which is most of what
// an idle forwarded connection costs.
func pipeSink(a *net.TCPConn, b io.ReadWriteCloser, sink tcpSink, shut func(), countAB, countBA *atomic.Int64) (aToB, bToA int64, err error) {
	type result struct {
		n   int64
		err error
	}
	done := make(chan result, 1)
	err = sink.StartWriteToTCP(a, countBA, func(n int64, err error) {
		// On the SSH read loop, maybe: nothing here may block. An
		// error closes a, which ends the copy the other way too, and
		// that copy's end closes b.
		if err != nil {
			a.Close()
		} else if cerr := a.CloseWrite(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
			a.Close()
		}
		done <- result{n, err}
	})
	if err != nil {
		shut()
		return 0, 0, err
	}
	aToB, err = copyHalf(b, a, shut, countAB)
	r := <-done
	shut()
	if err == nil && !errors.Is(r.err, net.ErrClosed) {
		err = r.err
	}
	return aToB, r.n, err
}

// copyHalf copies src to dst, adding to count, then half-closes dst. On an
// error it calls shut so that the opposite direction stops as well.
func copyHalf(dst io.Writer, src io.Reader, shut func(), count *atomic.Int64) (int64, error) {
	n, err := copyCount(dst, src, count)
	if err != nil {
		shut()
		if errors.Is(err, net.ErrClosed) {
			err = nil
		}
		return n, err
	}
	if cw, ok := dst.(closeWriter); ok {
		if cerr := cw.CloseWrite(); cerr != nil && !errors.Is(cerr, net.ErrClosed) && !errors.Is(cerr, io.EOF) {
			shut()
		}
	} else {
		shut()
	}
	return n, nil
}

// idleBufSize is what a direction holds while it waits for data;
// drainedBelow is the read size under which the big buffer goes back.
const (
	idleBufSize  = 512
	drainedBelow = 4 << 10
)

// Copy copies src to dst until EOF. Between two TCP connections it is io.Copy,
// so Linux splices the bytes in the kernel. Otherwise it waits for data with
// a small buffer and takes a 128 KiB one from a pool only while data keeps
// coming, so an idle connection holds 512 bytes per direction, not 128 KiB.
// A TCP connection on one side is read or written through rawio.
func Copy(dst io.Writer, src io.Reader) (int64, error) {
	return copyCount(dst, src, nil)
}

// copyCount is Copy that adds each write's bytes to count (nil: none); a
// kernel splice between two TCP connections adds its total at the end.
func copyCount(dst io.Writer, src io.Reader, count *atomic.Int64) (int64, error) {
	srcTCP, srcOK := src.(*net.TCPConn)
	dstTCP, dstOK := dst.(*net.TCPConn)
	switch {
	case srcOK && dstOK:
		n, err := io.Copy(dst, src)
		if count != nil {
			count.Add(n)
		}
		return n, err
	case srcOK:
		src = rawio.NewReader(srcTCP)
	case dstOK:
		dst = rawio.NewWriter(dstTCP)
	}
	var (
		written int64
		small   = make([]byte, idleBufSize)
		big     *[]byte // from bufPool while data moves
	)
	defer func() {
		if big != nil {
			bufPool.Put(big)
		}
	}()
	for {
		buf := small
		if big != nil {
			buf = *big
		}
		n, rerr := src.Read(buf)
		if n > 0 {
			w, werr := dst.Write(buf[:n])
			written += int64(w)
			if count != nil {
				count.Add(int64(w))
			}
			if werr != nil {
				return written, werr
			}
			if w != n {
				return written, io.ErrShortWrite
			}
		}
		if rerr == io.EOF {
			return written, nil
		}
		if rerr != nil {
			return written, rerr
		}
		// A full small read means more is waiting: take the big buffer. A
		// read far short of it means the source has drained: give it back
		// before waiting. (Under load TCP reads often come back a little
		// short; flipping on every one of those costs throughput.)
		switch {
		case big == nil && n == len(buf):
			big = bufPool.Get().(*[]byte)
		case big != nil && n < drainedBelow:
			bufPool.Put(big)
			big = nil
		}
	}
}

// onlyWriter and onlyReader hide ReadFrom and WriteTo so io.CopyBuffer uses
// the pooled buffer instead of allocating one of its own.
type onlyWriter struct{ io.Writer }

type onlyReader struct{ io.Reader }
