// Package transport carries pinhole's SSH stream over more than raw TCP:
// inside TLS, inside WebSocket (plain or over TLS), and out through HTTP
// CONNECT and SOCKS5 proxies, so that a tunnel leaves networks that let out
// only HTTPS.
//
// The client side is a Dialer: given an Endpoint (ssh://, tls://, ws:// or
// wss://, from ParseURL) it returns the net.Conn the SSH client speaks
// over. The server side is a Dispatcher: it looks at the first bytes of
// each accepted connection and hands raw SSH, SSH inside TLS and SSH inside
// WebSocket to the SSH server, and everything else to an http.Handler.
// docs/protocol.md ("One port for SSH, TLS and WebSocket") is the wire
// format.
//
// The package knows nothing of SSH beyond its first four bytes: what it
// returns is a byte stream, and the host-key check stays with the SSH
// layer, under the name the caller chose (tunnel.ClientConfig.Addr).
package transport

import (
	"context"
	"net"
)

// DialFunc opens a connection, as net.Dialer.DialContext does. It is the
// type of tunnel.ClientConfig.Dial.
type DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

func dialOrDefault(d DialFunc) DialFunc {
	if d != nil {
		return d
	}
	return new(net.Dialer).DialContext
}
