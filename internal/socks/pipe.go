package socks

import (
	"io"
	"net"
	"sync"
)

// copyBufferSize is the buffer of a copy that cannot splice.
const copyBufferSize = 32 << 10

// closeWriter is a connection that can stop sending while it still reads,
// such as *net.TCPConn.
type closeWriter interface {
	CloseWrite() error
}

// pipe copies a to b and b to a until both directions are done, then
// closes both. When one side reports EOF the other is half-closed with
// CloseWrite and the opposite direction goes on; an error, or a side that
// cannot half-close, ends both directions. It returns the bytes copied each
// way.
func pipe(a, b net.Conn) (aToB, bToA int64) {
	var wg sync.WaitGroup
	var once sync.Once
	shut := func() {
		once.Do(func() {
			a.Close()
			b.Close()
		})
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		bToA = copyHalf(a, b, shut)
	}()
	aToB = copyHalf(b, a, shut)
	wg.Wait()
	shut()
	return aToB, bToA
}

// copyHalf copies src to dst, then half-closes dst, or calls shut if it
// cannot.
func copyHalf(dst, src net.Conn, shut func()) int64 {
	var n int64
	var err error
	_, dstTCP := dst.(*net.TCPConn)
	_, srcTCP := src.(*net.TCPConn)
	if dstTCP && srcTCP {
		n, err = io.Copy(dst, src) // splices on Linux
	} else {
		// Hide ReaderFrom and WriterTo so that the buffer is ours.
		buf := make([]byte, copyBufferSize)
		n, err = io.CopyBuffer(struct{ io.Writer }{dst}, struct{ io.Reader }{src}, buf)
	}
	if err != nil {
		shut()
		return n
	}
	if cw, ok := dst.(closeWriter); ok && cw.CloseWrite() == nil {
		return n
	}
	shut()
	return n
}
