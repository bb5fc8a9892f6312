package transport

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"time"
)

// clientHello is what Unwrap learns from a TLS ClientHello before it
// answers: where the client is going, and what it would speak there.
type clientHello struct {
	ServerName string   // SNI, "" when the client sent none
	ALPN       []string // the client's ALPN protocols, in its order
}

// errHelloRead stops crypto/tls once it has parsed a ClientHello.
var errHelloRead = errors.New("transport: ClientHello read")

// readClientHello parses the TLS ClientHello at the start of br without
// consuming it: every byte stays in br, for the TLS server that answers
// or for the service a passthrough hands the connection to. crypto/tls
// itself is the parser: a server over a conn that only peeks into br and
// drops what is written, stopped by GetConfigForClient as soon as it has
// the hello. A hello larger than br's buffer is an error.
func readClientHello(br *bufio.Reader) (clientHello, error) {
	var (
		hello clientHello
		got   bool
	)
	cfg := &tls.Config{GetConfigForClient: func(chi *tls.ClientHelloInfo) (*tls.Config, error) {
		hello = clientHello{ServerName: chi.ServerName, ALPN: slices.Clone(chi.SupportedProtos)}
		got = true
		return nil, errHelloRead
	}}
	err := tls.Server(&helloConn{br: br}, cfg).Handshake()
	if got {
		return hello, nil
	}
	return clientHello{}, fmt.Errorf("transport: not a TLS ClientHello: %w", err)
}

// helloConn reads what br holds without consuming it, and writes nowhere.
type helloConn struct {
	br  *bufio.Reader
	off int
}

func (c *helloConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	// At least one byte past what was read, waiting for it if need be;
	// then all that is buffered.
	if _, err := c.br.Peek(c.off + 1); err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return 0, errors.New("transport: a TLS ClientHello larger than the read buffer")
		}
		return 0, err
	}
	b, _ := c.br.Peek(c.br.Buffered())
	n := copy(p, b[c.off:])
	c.off += n
	return n, nil
}

func (c *helloConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *helloConn) Close() error                     { return nil }
func (c *helloConn) LocalAddr() net.Addr              { return dispatchAddr{} }
func (c *helloConn) RemoteAddr() net.Addr             { return dispatchAddr{} }
func (c *helloConn) SetDeadline(time.Time) error      { return nil }
func (c *helloConn) SetReadDeadline(time.Time) error  { return nil }
func (c *helloConn) SetWriteDeadline(time.Time) error { return nil }

// passConn is a TLS connection handed whole, its ClientHello unread, to
// a passthrough: reads come through the batchConn's buffer, which holds
// the hello; CloseWrite half-closes the socket.
type passConn struct{ *batchConn }

func (c passConn) CloseWrite() error {
	if cw, ok := c.batchConn.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}
