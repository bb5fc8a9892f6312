package socks

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
)

// SOCKS4 and its SOCKS4a extension, which carries a host name for the proxy
// to resolve.
const (
	socks4Version = 0x04
	socks4Reply   = 0x00 // version byte of a reply

	socks4Granted  = 0x5a
	socks4Rejected = 0x5b

	// maxSOCKS4Field caps the NUL-terminated user id and host name.
	maxSOCKS4Field = 255
)

// socks4Request is a parsed SOCKS4 or SOCKS4a request.
type socks4Request struct {
	cmd  byte
	addr string // host:port; host is an IP literal or, for SOCKS4a, a name
}

// readSOCKS4Request reads a SOCKS4 or SOCKS4a request. The user id is read
// and ignored.
func readSOCKS4Request(r *bufio.Reader) (socks4Request, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return socks4Request{}, fmt.Errorf("socks: reading SOCKS4 request: %w", err)
	}
	if hdr[0] != socks4Version {
		return socks4Request{}, fmt.Errorf("socks: SOCKS version %d, want 4", hdr[0])
	}
	port := binary.BigEndian.Uint16(hdr[2:4])
	ip := netip.AddrFrom4([4]byte(hdr[4:8]))
	if _, err := readCString(r, maxSOCKS4Field); err != nil {
		return socks4Request{}, fmt.Errorf("socks: reading SOCKS4 user id: %w", err)
	}
	host := ip.String()
	if hdr[4] == 0 && hdr[5] == 0 && hdr[6] == 0 && hdr[7] != 0 {
		// SOCKS4a: 0.0.0.x, x > 0, means a host name follows.
		name, err := readCString(r, maxSOCKS4Field)
		if err != nil {
			return socks4Request{}, fmt.Errorf("socks: reading SOCKS4a host name: %w", err)
		}
		if host, err = checkHostName(name); err != nil {
			return socks4Request{}, fmt.Errorf("socks: SOCKS4a: %w", err)
		}
	}
	return socks4Request{cmd: hdr[1], addr: net.JoinHostPort(host, strconv.Itoa(int(port)))}, nil
}

// readCString reads a NUL-terminated string of at most limit bytes.
func readCString(r *bufio.Reader, limit int) (string, error) {
	var b []byte
	for len(b) <= limit {
		c, err := r.ReadByte()
		if err != nil {
			return "", err
		}
		if c == 0 {
			return string(b), nil
		}
		b = append(b, c)
	}
	return "", fmt.Errorf("longer than %d bytes", limit)
}

// appendSOCKS4Reply appends a reply with code rep (socks4Granted or
// socks4Rejected).
func appendSOCKS4Reply(b []byte, rep byte) []byte {
	return append(b, socks4Reply, rep, 0, 0, 0, 0, 0, 0)
}

// socks4 answers a SOCKS4 or SOCKS4a client.
func (hs *handshake) socks4() error {
	req, err := readSOCKS4Request(hs.br)
	if err != nil {
		return err
	}
	if hs.s.Credentials != nil {
		hs.c.Write(appendSOCKS4Reply(nil, socks4Rejected))
		return errors.New("socks: SOCKS4 refused because the proxy requires a password; use SOCKS5 or HTTP with a user name and password")
	}
	if req.cmd != cmdConnect {
		hs.c.Write(appendSOCKS4Reply(nil, socks4Rejected))
		return fmt.Errorf("socks: SOCKS4 command %d not supported", req.cmd)
	}
	t, err := hs.connect(req.addr)
	if err != nil {
		hs.c.Write(appendSOCKS4Reply(nil, socks4Rejected))
		return err
	}
	if _, err := hs.c.Write(appendSOCKS4Reply(nil, socks4Granted)); err != nil {
		t.Close()
		return fmt.Errorf("socks: writing to client: %w", err)
	}
	return hs.relay(t, req.addr)
}
