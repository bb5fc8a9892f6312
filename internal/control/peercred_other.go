//go:build !linux

package control

import "net"

// peerAllowed leaves the check to the socket's mode (0600) and its
// directory's (0700), where the system gives no peer credentials here.
func peerAllowed(net.Conn) bool { return true }
