// Package relay copies bytes between two connections in both directions,
// keeping half-close: when one side stops sending, the other side is told
// with CloseWrite and the opposite direction goes on until it ends too.
package relay

import (
	"errors"
	"io"
	"net"
	"sync"
)

// bufSize is the copy buffer size: one SSH channel packet.
const bufSize = 32 << 10

var bufPool = sync.Pool{New: func() any { b := make([]byte, bufSize); return &b }}

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
	wg.Add(1)
	go func() {
		defer wg.Done()
		bToA, errBA = copyHalf(a, b, shut)
	}()
	aToB, err = copyHalf(b, a, shut)
	wg.Wait()
	shut()
	if err == nil {
		err = errBA
	}
	return aToB, bToA, err
}

// copyHalf copies src to dst, then half-closes dst. On an error it calls shut
// so that the opposite direction stops as well.
func copyHalf(dst io.Writer, src io.Reader, shut func()) (int64, error) {
	n, err := Copy(dst, src)
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

// Copy copies src to dst until EOF. Between two TCP connections it is io.Copy,
// so Linux splices the bytes in the kernel; otherwise it uses a pooled buffer.
func Copy(dst io.Writer, src io.Reader) (int64, error) {
	if _, ok := dst.(*net.TCPConn); ok {
		if _, ok := src.(*net.TCPConn); ok {
			return io.Copy(dst, src)
		}
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	return io.CopyBuffer(onlyWriter{dst}, onlyReader{src}, *bp)
}

// onlyWriter and onlyReader hide ReadFrom and WriteTo so io.CopyBuffer uses
// the pooled buffer instead of allocating one of its own.
type onlyWriter struct{ io.Writer }

type onlyReader struct{ io.Reader }
