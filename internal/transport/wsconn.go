package transport

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// wsConn is a WebSocket as the byte stream SSH goes over, each Write one
// binary message: websocket.NetConn, without its cost per frame.
//
// NetConn hands the WebSocket a context that can be canceled (its
// deadlines cancel it), and for such a context coder/websocket arms a
// context.AfterFunc around every frame header and payload it reads and
// every frame it writes: about 200 bytes of garbage each, some 1.5 kB per
// forwarded connection opened (a channel open, its confirmation, the
// first bytes each way), which at pinhole's GOGC stays resident until the
// next collection. wsConn passes context.Background, whose Done is nil,
// so nothing is armed.
//
// Its deadlines are those of under, the connection the WebSocket is
// framed on, so they move under a read or write in progress, as a TCP
// conn's do. A read or write that times out closes the WebSocket, as
// NetConn's does (a frame may be cut in the middle). Closing ctx, if it
// can be, closes the WebSocket too, at once: the Dispatcher's Close.
type wsConn struct {
	ws    *websocket.Conn
	under net.Conn
	stop  func() bool // ctx's AfterFunc

	rmu sync.Mutex // one Read at a time: ws has one reader
	r   io.Reader  // the message being read, nil between messages
	eof bool       // the peer closed normally
}

// newWSConn returns ws as a byte stream over under, the connection it
// was dialed or accepted on, until ctx ends.
func newWSConn(ctx context.Context, ws *websocket.Conn, under net.Conn) *wsConn {
	ws.SetReadLimit(-1) // a message is a write of the SSH layer, of any size
	c := &wsConn{ws: ws, under: under, stop: func() bool { return false }}
	if ctx.Done() != nil {
		c.stop = context.AfterFunc(ctx, func() { ws.CloseNow() })
	}
	return c
}

func (c *wsConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		if c.eof {
			return 0, io.EOF
		}
		if c.r == nil {
			typ, r, err := c.ws.Reader(context.Background())
			if err != nil {
				switch websocket.CloseStatus(err) {
				case websocket.StatusNormalClosure, websocket.StatusGoingAway:
					c.eof = true
					return 0, io.EOF
				}
				return 0, c.failed(err)
			}
			if typ != websocket.MessageBinary {
				c.ws.Close(websocket.StatusUnsupportedData, "SSH travels in binary messages")
				return 0, errors.New("transport: a WebSocket text message, where SSH travels in binary ones")
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if err == io.EOF {
			c.r, err = nil, nil // the next message goes on
		}
		if err != nil {
			return n, c.failed(err)
		}
		if n > 0 {
			return n, nil
		}
	}
}

func (c *wsConn) Write(p []byte) (int, error) {
	if err := c.ws.Write(context.Background(), websocket.MessageBinary, p); err != nil {
		return 0, c.failed(err)
	}
	return len(p), nil
}

// failed closes the WebSocket when err is a timeout, which may have cut
// a frame, and returns err.
func (c *wsConn) failed(err error) error {
	if isTimeout(err) {
		c.ws.CloseNow()
	}
	return err
}

// Close sends a close frame and waits (5 s at most) for the peer's.
func (c *wsConn) Close() error {
	c.stop()
	return c.ws.Close(websocket.StatusNormalClosure, "")
}

func (c *wsConn) LocalAddr() net.Addr                { return c.under.LocalAddr() }
func (c *wsConn) RemoteAddr() net.Addr               { return c.under.RemoteAddr() }
func (c *wsConn) SetDeadline(t time.Time) error      { return c.under.SetDeadline(t) }
func (c *wsConn) SetReadDeadline(t time.Time) error  { return c.under.SetReadDeadline(t) }
func (c *wsConn) SetWriteDeadline(t time.Time) error { return c.under.SetWriteDeadline(t) }
