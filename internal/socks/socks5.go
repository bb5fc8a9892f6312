package socks

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strconv"
)

// SOCKS5, RFC 1928, with username/password authentication, RFC 1929.
const (
	socks5Version = 0x05

	methodNoAuth       = 0x00
	methodUserPass     = 0x02
	methodNoAcceptable = 0xff

	userPassVersion = 0x01

	cmdConnect      = 0x01
	cmdBind         = 0x02
	cmdUDPAssociate = 0x03

	atypIPv4   = 0x01
	atypDomain = 0x03
	atypIPv6   = 0x04
)

// socks5Request is a parsed SOCKS5 request.
type socks5Request struct {
	cmd  byte
	addr string // host:port; host is an IP literal or a name
}

// replyError is a request that can be parsed no further; the client gets
// code as its reply.
type replyError struct {
	code byte
	msg  string
}

func (e *replyError) Error() string { return "socks: " + e.msg }

// readSOCKS5Methods reads the client greeting: version and offered
// authentication methods.
func readSOCKS5Methods(r *bufio.Reader) ([]byte, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("socks: reading SOCKS5 greeting: %w", err)
	}
	if hdr[0] != socks5Version {
		return nil, fmt.Errorf("socks: SOCKS version %d, want 5", hdr[0])
	}
	methods := make([]byte, hdr[1])
	if _, err := io.ReadFull(r, methods); err != nil {
		return nil, fmt.Errorf("socks: reading SOCKS5 methods: %w", err)
	}
	return methods, nil
}

// readSOCKS5UserPass reads an RFC 1929 username/password request.
func readSOCKS5UserPass(r *bufio.Reader) (user, password string, err error) {
	ver, err := r.ReadByte()
	if err != nil {
		return "", "", fmt.Errorf("socks: reading SOCKS5 auth: %w", err)
	}
	if ver != userPassVersion {
		return "", "", fmt.Errorf("socks: SOCKS5 username/password version %d, want 1", ver)
	}
	if user, err = readLenString(r); err != nil {
		return "", "", fmt.Errorf("socks: reading SOCKS5 user name: %w", err)
	}
	if password, err = readLenString(r); err != nil {
		return "", "", fmt.Errorf("socks: reading SOCKS5 password: %w", err)
	}
	return user, password, nil
}

// readLenString reads a string prefixed by its one-byte length.
func readLenString(r byteReader) (string, error) {
	n, err := r.ReadByte()
	if err != nil {
		return "", err
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return "", err
	}
	return string(b), nil
}

// byteReader is what the SOCKS5 parsers read from: a *bufio.Reader over
// the client's connection, or a *bytes.Reader over a UDP datagram.
type byteReader interface {
	io.Reader
	io.ByteReader
}

// readSOCKS5Request reads a request: command and destination. An error
// that the client should hear about is a *replyError.
func readSOCKS5Request(r *bufio.Reader) (socks5Request, error) {
	var hdr [3]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return socks5Request{}, fmt.Errorf("socks: reading SOCKS5 request: %w", err)
	}
	if hdr[0] != socks5Version {
		return socks5Request{}, &replyError{repGeneralFailure, fmt.Sprintf("SOCKS5 request version %d, want 5", hdr[0])}
	}
	addr, err := readSOCKS5Addr(r)
	if err != nil {
		return socks5Request{}, err
	}
	return socks5Request{cmd: hdr[1], addr: addr}, nil
}

// readSOCKS5Addr reads ATYP, DST.ADDR and DST.PORT and returns host:port,
// the host an IP literal or a checked name.
func readSOCKS5Addr(r byteReader) (string, error) {
	atyp, err := r.ReadByte()
	if err != nil {
		return "", fmt.Errorf("socks: reading SOCKS5 address type: %w", err)
	}
	var host string
	switch atyp {
	case atypIPv4:
		var ip [4]byte
		if _, err := io.ReadFull(r, ip[:]); err != nil {
			return "", fmt.Errorf("socks: reading SOCKS5 address: %w", err)
		}
		host = netip.AddrFrom4(ip).String()
	case atypIPv6:
		var ip [16]byte
		if _, err := io.ReadFull(r, ip[:]); err != nil {
			return "", fmt.Errorf("socks: reading SOCKS5 address: %w", err)
		}
		host = netip.AddrFrom16(ip).String()
	case atypDomain:
		name, err := readLenString(r)
		if err != nil {
			return "", fmt.Errorf("socks: reading SOCKS5 host name: %w", err)
		}
		if host, err = checkHostName(name); err != nil {
			return "", &replyError{repGeneralFailure, err.Error()}
		}
	default:
		return "", &replyError{repAddressUnsupported, fmt.Sprintf("SOCKS5 address type %d not supported", atyp)}
	}
	var port [2]byte
	if _, err := io.ReadFull(r, port[:]); err != nil {
		return "", fmt.Errorf("socks: reading SOCKS5 port: %w", err)
	}
	return net.JoinHostPort(host, strconv.Itoa(int(binary.BigEndian.Uint16(port[:])))), nil
}

// appendSOCKS5Reply appends a reply with code rep and bound address bnd,
// which may be nil.
func appendSOCKS5Reply(b []byte, rep byte, bnd net.Addr) []byte {
	ap := netip.AddrPortFrom(netip.IPv4Unspecified(), 0)
	switch a := bnd.(type) {
	case *net.TCPAddr:
		ap = a.AddrPort()
	case *net.UDPAddr:
		ap = a.AddrPort()
	}
	ip := ap.Addr().Unmap()
	b = append(b, socks5Version, rep, 0)
	if ip.Is4() {
		b = append(b, atypIPv4)
	} else {
		b = append(b, atypIPv6)
	}
	b = append(b, ip.AsSlice()...)
	return binary.BigEndian.AppendUint16(b, ap.Port())
}

// socks5 answers a SOCKS5 client.
func (hs *handshake) socks5() error {
	methods, err := readSOCKS5Methods(hs.br)
	if err != nil {
		return err
	}
	want := byte(methodNoAuth)
	if hs.s.Credentials != nil {
		want = methodUserPass
	}
	if !slices.Contains(methods, want) {
		hs.c.Write([]byte{socks5Version, methodNoAcceptable})
		if want == methodUserPass {
			return errors.New("socks: SOCKS5 client does not offer username/password authentication; configure a proxy user and password in the client")
		}
		return errors.New("socks: SOCKS5 client offers no method the proxy accepts")
	}
	if _, err := hs.c.Write([]byte{socks5Version, want}); err != nil {
		return fmt.Errorf("socks: writing to client: %w", err)
	}
	if want == methodUserPass {
		user, password, err := readSOCKS5UserPass(hs.br)
		if err != nil {
			return err
		}
		if !hs.s.Credentials.Valid(user, password) {
			hs.c.Write([]byte{userPassVersion, 0x01})
			return errors.New("socks: SOCKS5 authentication failed: wrong user name or password")
		}
		if _, err := hs.c.Write([]byte{userPassVersion, 0x00}); err != nil {
			return fmt.Errorf("socks: writing to client: %w", err)
		}
	}

	req, err := readSOCKS5Request(hs.br)
	if re, ok := errors.AsType[*replyError](err); ok {
		hs.c.Write(appendSOCKS5Reply(nil, re.code, nil))
		return err
	}
	if err != nil {
		return err
	}
	switch req.cmd {
	case cmdConnect:
		t, err := hs.connect(req.addr)
		if err != nil {
			hs.c.Write(appendSOCKS5Reply(nil, classify(err), nil))
			return err
		}
		if _, err := hs.c.Write(appendSOCKS5Reply(nil, repSucceeded, t.LocalAddr())); err != nil {
			t.Close()
			return fmt.Errorf("socks: writing to client: %w", err)
		}
		return hs.relay(t, req.addr)
	case cmdUDPAssociate:
		return hs.udpAssociate(req.addr)
	case cmdBind:
		// BIND has no use through a tunnel.
		fallthrough
	default:
		hs.c.Write(appendSOCKS5Reply(nil, repCommandUnsupported, nil))
		return fmt.Errorf("socks: SOCKS5 command %d not supported", req.cmd)
	}
}

// checkHostName checks a host name sent by a client, which may also be an
// IP literal, and returns it as the host part of an address for Dial.
func checkHostName(name string) (string, error) {
	if ip, err := netip.ParseAddr(name); err == nil {
		if ip.Zone() != "" {
			return "", fmt.Errorf("host %q has an IPv6 zone", name)
		}
		return ip.String(), nil
	}
	if name == "" || len(name) > 255 {
		return "", fmt.Errorf("host name of %d bytes", len(name))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_') {
			return "", fmt.Errorf("host name %q has a character %q that a host name cannot have", name, c)
		}
	}
	return name, nil
}
