package transport

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/tunnel"
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

// TestPassthroughRaw: a ClientHello whose SNI the Passthrough takes goes,
// every byte from the hello on, to its serve: the client completes TLS
// with the service's own certificate, not the Dispatcher's, and the
// connection counts toward the HTTP limits until it closes.
func TestPassthroughRaw(t *testing.T) {
	dir := t.TempDir()
	svcCert, _, err := LoadOrCreateSelfSigned(dir+"/svc.pem", []string{"secure.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	svcLeaf, _ := x509.ParseCertificate(svcCert.Certificate[0])
	pool := x509.NewCertPool()
	pool.AddCert(svcLeaf)
	s := startShared(t, func(_ *tunnel.ServerConfig, d *Dispatcher) {
		d.Passthrough = func(name string) func(net.Conn) {
			if name != "secure.example.test" {
				return nil
			}
			return func(c net.Conn) {
				defer c.Close()
				tc := tls.Server(c, &tls.Config{Certificates: []tls.Certificate{svcCert}})
				io.Copy(tc, tc) // echo, inside the service's TLS
			}
		}
	})
	c, err := tls.Dial("tcp", s.addr, &tls.Config{ServerName: "secure.example.test", RootCAs: pool})
	if err != nil {
		t.Fatalf("TLS to the service through the shared port: %v", err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if got := c.ConnectionState().PeerCertificates[0]; !got.Equal(svcLeaf) {
		t.Errorf("the certificate is %v's, want the service's", got.Subject)
	}
	io.WriteString(c, "ping")
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Errorf("echo: %q, %v", buf, err)
	}
	if n := s.d.httpOpen(); n != 1 {
		t.Errorf("%d connections counted as HTTP during the passthrough, want 1", n)
	}
	c.Close()
	waitFor(t, "the passthrough uncounted", func() bool { return s.d.httpOpen() == 0 })
	// Another name still ends TLS here, with the Dispatcher's certificate.
	o, err := tls.Dial("tcp", s.addr, &tls.Config{ServerName: "localhost", RootCAs: s.pool, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatalf("another name: %v", err)
	}
	o.Close()
}

// BenchmarkReadClientHello is the cost the Dispatcher adds to every TLS
// connection by reading its ClientHello before answering.
func BenchmarkReadClientHello(b *testing.B) {
	raw := helloBytes(b, "myapp.example.test", "h2", "http/1.1")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := readClientHello(bufio.NewReaderSize(bytes.NewReader(raw), 4096)); err != nil {
			b.Fatal(err)
		}
	}
}
