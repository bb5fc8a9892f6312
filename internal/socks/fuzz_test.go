package socks

import (
	"bufio"
	"bytes"
	"errors"
	"github.com/pinhole-dev/pinhole/internal/httphop"
	"net"
	"strings"
	"testing"
)

// checkAddr fails if addr, from a parser, is not host:port.
func checkAddr(t *testing.T, addr string) {
	t.Helper()
	if _, _, err := net.SplitHostPort(addr); err != nil {
		t.Errorf("parser returned address %q: %v", addr, err)
	}
}

// FuzzSOCKS5 reads a client's greeting, its username and password when
// auth says the proxy asks for them (as socks5 does when Credentials are
// set), and its request, in the order the handshake reads them.
func FuzzSOCKS5(f *testing.F) {
	f.Add(false, []byte("\x05\x01\x00\x05\x01\x00\x01\x7f\x00\x00\x01\x00\x50"))
	f.Add(true, []byte("\x05\x01\x02\x01\x05alice\x06s3cret\x05\x01\x00\x03\x0bexample.com\x01\xbb"))
	f.Add(false, []byte("\x05\x02\x00\x02\x05\x03\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x35"))
	f.Add(false, []byte("\x05\x00\x05\x01\x00\x03\x00\x00\x00"))
	f.Add(false, []byte("\x05\x01\x00\x05\x01\x00\x03\x09127.0.0.1\x00\x50"))
	f.Add(false, []byte("\x05\x01\x00\x05\x01\x00\x07"))
	f.Fuzz(func(t *testing.T, auth bool, data []byte) {
		r := bufio.NewReader(bytes.NewReader(data))
		methods, err := readSOCKS5Methods(r)
		if err != nil {
			return
		}
		if len(methods) > 255 {
			t.Fatalf("%d methods", len(methods))
		}
		if auth {
			user, password, err := readSOCKS5UserPass(r)
			if err != nil {
				return
			}
			if len(user) > 255 || len(password) > 255 {
				t.Fatalf("user name of %d bytes, password of %d", len(user), len(password))
			}
		}
		req, err := readSOCKS5Request(r)
		var re *replyError
		if errors.As(err, &re) {
			if re.code == repSucceeded {
				t.Fatal("replyError with code 0")
			}
			return
		}
		if err != nil {
			return
		}
		checkAddr(t, req.addr)
		// The address parsed encodes, as a UDP header, to one that
		// parses the same.
		if again, _, err := parseUDPDatagram(appendUDPHeader(nil, req.addr)); err != nil || again != req.addr {
			t.Fatalf("%q re-encoded parses as %q, %v", req.addr, again, err)
		}
		// A reply for any bound address must be well formed too.
		if b := appendSOCKS5Reply(nil, 0, nil); len(b) != 10 {
			t.Fatalf("reply %x", b)
		}
	})
}

func FuzzSOCKS4(f *testing.F) {
	f.Add([]byte("\x04\x01\x00\x50\x7f\x00\x00\x01user\x00"))
	f.Add([]byte("\x04\x01\x00\x50\x00\x00\x00\x01\x00example.com\x00"))
	f.Add([]byte("\x04\x02\x00\x50\x00\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := readSOCKS4Request(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			return
		}
		checkAddr(t, req.addr)
		host, _, _ := net.SplitHostPort(req.addr)
		if len(host) > maxSOCKS4Field {
			t.Fatalf("host of %d bytes accepted", len(host))
		}
	})
}

func FuzzHTTPRequest(f *testing.F) {
	f.Add([]byte("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"))
	f.Add([]byte("GET http://example.com/a?b HTTP/1.1\r\nHost: example.com\r\nProxy-Authorization: Basic YTpi\r\n\r\n"))
	f.Add([]byte("POST http://[::1]:8080/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"))
	f.Add([]byte("GET / HTTP/1.0\r\n\r\n"))
	f.Add([]byte("GET https://example.com/ HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReader(&capReader{r: bytes.NewReader(data), n: 4 << 10})
		req, err := readHTTPRequest(r)
		var he *httpError
		if errors.As(err, &he) {
			if he.code < 400 || he.code > 599 || strings.ContainsAny(he.msg, "\r\n") && he.code != 400 {
				t.Fatalf("bad httpError %d %q", he.code, he.msg)
			}
			return
		}
		if err != nil {
			return
		}
		if req.Method == "CONNECT" {
			checkAddr(t, req.URL.Host)
			return
		}
		if req.URL.Scheme != "http" || req.URL.Host == "" {
			t.Fatalf("accepted %q", req.URL)
		}
		h := req.Header.Clone()
		httphop.Remove(h)
		if h.Get("Proxy-Authorization") != "" || h.Get("Connection") != "" {
			t.Fatal("hop-by-hop header left")
		}
	})
}
