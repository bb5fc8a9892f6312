package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/coder/websocket"
)

// Dialer makes the connection a pinhole client speaks SSH over, to an
// Endpoint: a TCP connection for ssh://, TLS around it for tls://, a
// WebSocket for ws:// and wss://, each through a proxy when Proxy names
// one. The zero value dials directly and checks certificates against the
// system's roots.
type Dialer struct {
	// Dial makes the TCP connection: to the server, or to the proxy.
	// nil means a net.Dialer.
	Dial DialFunc
	// Proxy names the proxy to reach an endpoint through (ParseProxy,
	// ProxyFromEnv); nil, or a nil URL, means none.
	Proxy func(Endpoint) (*url.URL, error)
	// TLS checks the server's certificate for tls:// and wss://.
	TLS ClientTLS
}

// DialEndpoint connects to e and returns the byte stream SSH goes over.
// Closing it closes everything underneath.
func (d *Dialer) DialEndpoint(ctx context.Context, e Endpoint) (net.Conn, error) {
	dial := dialOrDefault(d.Dial)
	if d.Proxy != nil {
		u, err := d.Proxy(e)
		if err != nil {
			return nil, err
		}
		if u != nil {
			if dial, err = ProxyDialer(u, dial); err != nil {
				return nil, err
			}
		}
	}
	c, err := dial(ctx, "tcp", e.Addr())
	if err != nil {
		return nil, err
	}
	switch e.Scheme {
	case SSH:
		return c, nil
	case TLS:
		bc := newBatchConn(c, true)
		tc, err := d.handshake(ctx, bc, e, ALPN)
		if err != nil {
			return nil, err
		}
		return newWriterConn(tc, bc), nil
	case WS:
		bc := newBatchConn(c, true)
		ws, err := dialWebSocket(ctx, bc, e)
		if err != nil {
			return nil, err
		}
		return newWriterConn(ws, bc), nil
	case WSS:
		bc := newBatchConn(c, true)
		tc, err := d.handshake(ctx, bc, e, "http/1.1")
		if err != nil {
			return nil, err
		}
		framed := newBatchConn(tc, false) // the WebSocket's 4 KiB flushes, into one TLS write
		ws, err := dialWebSocket(ctx, framed, e)
		if err != nil {
			return nil, err
		}
		return newWriterConn(ws, framed, bc), nil
	}
	c.Close()
	return nil, fmt.Errorf("transport: unknown scheme %q", e.Scheme)
}

// DialContext is DialEndpoint for a URL, or for a host:port (raw SSH):
// the tunnel.ClientConfig.Dial of a client whose Target is a URL.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	var e Endpoint
	if IsURL(addr) {
		var err error
		if e, err = ParseURL(addr); err != nil {
			return nil, err
		}
	} else {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, fmt.Errorf("transport: %w", err)
		}
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("transport: port %q: %w", port, err)
		}
		e = Endpoint{Scheme: SSH, Host: host, Port: uint16(n)}
	}
	return d.DialEndpoint(ctx, e)
}

func (d *Dialer) handshake(ctx context.Context, c net.Conn, e Endpoint, alpn string) (*tls.Conn, error) {
	cfg, err := d.TLS.config(e.Host, alpn)
	if err != nil {
		c.Close()
		return nil, err
	}
	tc := tls.Client(c, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		c.Close()
		var verr *tls.CertificateVerificationError
		if errors.As(err, &verr) {
			return nil, fmt.Errorf("%w: %s: %w (a server with a self-signed certificate: pass --tls-fingerprint with the fingerprint it printed; a private CA: --tls-ca FILE)", ErrCertificate, e.Addr(), verr.Err)
		}
		if errors.Is(err, ErrCertificate) {
			return nil, err
		}
		return nil, fmt.Errorf("transport: TLS to %s: %w", e.Addr(), err)
	}
	return tc, nil
}

// dialWebSocket opens a WebSocket over c, which is already connected
// (and inside TLS for wss), and returns it as a byte stream: each Write
// is one binary message.
func dialWebSocket(ctx context.Context, c net.Conn, e Endpoint) (net.Conn, error) {
	var used bool
	once := func(context.Context, string, string) (net.Conn, error) {
		if used {
			return nil, errors.New("transport: a WebSocket dials once")
		}
		used = true
		return c, nil
	}
	host := e.Host
	if e.Port != DefaultPort(e.Scheme) {
		host = net.JoinHostPort(e.Host, strconv.Itoa(int(e.Port)))
	} else if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	// The request goes over c as it is: plain HTTP, whether or not c is
	// a TLS conn, so that the TLS (with its certificate check) is ours.
	u := "http://" + host + e.Path
	tr := &http.Transport{DialContext: once, DisableKeepAlives: true, Proxy: nil, ForceAttemptHTTP2: false}
	ws, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{
		HTTPClient: &http.Client{Transport: tr, CheckRedirect: noRedirects},
	})
	if err != nil {
		c.Close()
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, fmt.Errorf("transport: %s answered %s to the WebSocket request for %s: is the path right (pinhole server's is %s) and is it pinhole server or a proxy to it?", e.Addr(), cleanStatus(resp.Status), e.Path, DefaultPath)
		}
		return nil, fmt.Errorf("transport: WebSocket to %s: %w", e, err)
	}
	return newWSConn(context.Background(), ws, c), nil
}

func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
