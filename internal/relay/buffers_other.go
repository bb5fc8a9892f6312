//go:build !linux

package relay

// setBuffers asks for size bytes of receive and send buffer on c, as far
// as the system allows; what it gave is not read back here, and it is
// never reported capped.
func setBuffers(c any, size int) Buffers {
	var b Buffers
	if s, ok := c.(interface{ SetReadBuffer(int) error }); ok && s.SetReadBuffer(size) == nil {
		b.Read = size
	}
	if s, ok := c.(interface{ SetWriteBuffer(int) error }); ok && s.SetWriteBuffer(size) == nil {
		b.Write = size
	}
	return b
}
