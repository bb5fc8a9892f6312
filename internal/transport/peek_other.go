//go:build !linux

package transport

import (
	"errors"
	"net"
)

// peekTCP is MSG_PEEK on Linux; elsewhere the first byte is read through
// a buffer (peekBuffered).
func peekTCP(c *net.TCPConn) (byte, error) { return 0, errors.ErrUnsupported }

// peekTCPNow is peekTCP without waiting, on Linux.
func peekTCPNow(c *net.TCPConn) (byte, error) { return 0, errors.ErrUnsupported }
