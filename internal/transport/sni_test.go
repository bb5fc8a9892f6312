package transport

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"slices"
	"testing"
	"time"
)

// writeOnlyConn keeps what is written to it; reads fail.
type writeOnlyConn struct {
	helloConn
	buf bytes.Buffer
}

func (c *writeOnlyConn) Write(p []byte) (int, error) { return c.buf.Write(p) }
func (c *writeOnlyConn) Read([]byte) (int, error)    { return 0, io.ErrUnexpectedEOF }

// helloBytes is the ClientHello crypto/tls's client sends for serverName,
// offering alpn.
func helloBytes(t testing.TB, serverName string, alpn ...string) []byte {
	t.Helper()
	c := &writeOnlyConn{}
	tls.Client(c, &tls.Config{ServerName: serverName, NextProtos: alpn, InsecureSkipVerify: true}).Handshake()
	if c.buf.Len() == 0 {
		t.Fatal("no ClientHello written")
	}
	return c.buf.Bytes()
}

func TestReadClientHello(t *testing.T) {
	for _, tc := range []struct {
		name, sni string
		alpn      []string
	}{
		{"sni and alpn", "myapp.example.test", []string{"h2", "http/1.1"}},
		{"sni only", "myapp.example.test", nil},
		{"neither", "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := helloBytes(t, tc.sni, tc.alpn...)
			// What follows the hello stays unread too.
			in := append(slices.Clone(raw), "after"...)
			br := bufio.NewReaderSize(bytes.NewReader(in), batchBufSize)
			hello, err := readClientHello(br)
			if err != nil {
				t.Fatal(err)
			}
			if hello.ServerName != tc.sni || !slices.Equal(hello.ALPN, tc.alpn) {
				t.Errorf("got %q %q, want %q %q", hello.ServerName, hello.ALPN, tc.sni, tc.alpn)
			}
			if rest, _ := io.ReadAll(br); !bytes.Equal(rest, in) {
				t.Errorf("readClientHello consumed bytes: %d left of %d", len(rest), len(in))
			}
		})
	}
}

func TestReadClientHelloErrors(t *testing.T) {
	raw := helloBytes(t, "myapp.example.test")
	for _, tc := range []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"http", []byte("GET / HTTP/1.1\r\n\r\n")},
		{"truncated", raw[:len(raw)/2]},
		{"record of another type", append([]byte{0x17}, raw[1:]...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := readClientHello(bufio.NewReader(bytes.NewReader(tc.in))); err == nil {
				t.Error("no error")
			}
		})
	}
	// A hello that does not fit the buffer is an error, not a wait.
	if _, err := readClientHello(bufio.NewReaderSize(bytes.NewReader(raw), 16)); err == nil {
		t.Error("a hello larger than the buffer: no error")
	}
}

// TestReadClientHelloWaitsForBytes: a hello that arrives in pieces is
// read whole, and one that stops coming meets the conn's deadline.
func TestReadClientHelloWaitsForBytes(t *testing.T) {
	raw := helloBytes(t, "myapp.example.test", "h2")
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() {
		for _, p := range [][]byte{raw[:3], raw[3:10], raw[10:]} {
			a.Write(p)
			time.Sleep(5 * time.Millisecond)
		}
	}()
	hello, err := readClientHello(bufio.NewReader(b))
	if err != nil || hello.ServerName != "myapp.example.test" {
		t.Fatalf("%+v, %v", hello, err)
	}

	c, d := net.Pipe()
	defer c.Close()
	defer d.Close()
	go c.Write(raw[:20])
	d.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	done := make(chan error, 1)
	go func() {
		_, err := readClientHello(bufio.NewReader(d))
		done <- err
	}()
	select {
	case err := <-done:
		if !isTimeout(err) {
			t.Errorf("a stalled hello: %v, want a timeout", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a stalled hello was not bounded by the deadline")
	}
}

// FuzzClientHello: readClientHello never panics, and never consumes a
// byte, whatever it is given.
func FuzzClientHello(f *testing.F) {
	f.Add(helloBytes(f, "myapp.example.test", "h2", "http/1.1"))
	f.Add(helloBytes(f, ""))
	f.Add([]byte{0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00})
	f.Add([]byte("SSH-2.0-x\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(in), batchBufSize)
		hello, err := readClientHello(br)
		if err == nil && len(in) == 0 {
			t.Fatalf("a hello %+v from nothing", hello)
		}
		if rest, _ := io.ReadAll(br); !bytes.Equal(rest, in) {
			t.Fatalf("consumed bytes: %d left of %d", len(rest), len(in))
		}
	})
}
