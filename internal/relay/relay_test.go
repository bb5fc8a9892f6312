package relay

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/streamtest"
)

// TestPipeHalfClose: a client sends a request and half-closes; the reply,
// sent only after the server saw EOF, must still arrive whole.
func TestPipeHalfClose(t *testing.T) {
	for _, tc := range []struct {
		name string
		wrap bool // hide *net.TCPConn so the pooled-buffer path runs
	}{{"splice", false}, {"buffer", true}} {
		t.Run(tc.name, func(t *testing.T) {
			client, relayA := streamtest.TCPPair(t)
			relayB, server := streamtest.TCPPair(t)
			var a, b io.ReadWriteCloser = relayA, relayB
			if tc.wrap {
				a, b = wrapped{relayA}, wrapped{relayB}
			}
			done := make(chan error, 1)
			go func() { _, _, err := Pipe(a, b); done <- err }()

			req := make([]byte, 1<<20)
			rand.Read(req)
			go func() {
				client.Write(req)
				client.CloseWrite()
			}()
			got, err := io.ReadAll(server)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, req) {
				t.Fatalf("server got %d bytes, want the %d sent", len(got), len(req))
			}
			reply := []byte("reply after EOF")
			server.Write(reply)
			server.Close()
			client.SetReadDeadline(time.Now().Add(10 * time.Second))
			back, err := io.ReadAll(client)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(back, reply) {
				t.Fatalf("client got %q, want %q", back, reply)
			}
			if err := <-done; err != nil {
				t.Fatalf("Pipe: %v", err)
			}
		})
	}
}

// wrapped keeps CloseWrite but hides the concrete type.
type wrapped struct{ *net.TCPConn }

func (w wrapped) Read(p []byte) (int, error)  { return w.TCPConn.Read(p) }
func (w wrapped) Write(p []byte) (int, error) { return w.TCPConn.Write(p) }

// chunkReader returns its data in reads of the given sizes, in turn.
type chunkReader struct {
	data  []byte
	sizes []int
	i     int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := min(r.sizes[r.i%len(r.sizes)], len(p), len(r.data))
	r.i++
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

// TestCopyBufferSwitch: however the reads come, small or full, every byte
// arrives in order as the copy moves between its idle and big buffers.
func TestCopyBufferSwitch(t *testing.T) {
	data := make([]byte, 3<<20)
	rand.Read(data)
	for _, sizes := range [][]int{
		{1}, {idleBufSize}, {idleBufSize, bufSize, 100}, {bufSize}, {idleBufSize, drainedBelow - 1, bufSize, 7},
	} {
		t.Run(fmt.Sprint(sizes), func(t *testing.T) {
			var out bytes.Buffer
			n, err := Copy(&out, &chunkReader{data: data, sizes: sizes})
			if err != nil || n != int64(len(data)) || !bytes.Equal(out.Bytes(), data) {
				t.Fatalf("Copy = %d, %v; bytes equal: %v", n, err, bytes.Equal(out.Bytes(), data))
			}
		})
	}
}

// TestPipeCount: the running counts end equal to what Pipe returns, each
// way, on the splice path and the buffered one, and add to what a shared
// count held before.
func TestPipeCount(t *testing.T) {
	for _, tc := range []struct {
		name string
		wrap bool
	}{{"splice", false}, {"buffer", true}} {
		t.Run(tc.name, func(t *testing.T) {
			client, relayA := streamtest.TCPPair(t)
			relayB, server := streamtest.TCPPair(t)
			var a, b io.ReadWriteCloser = relayA, relayB
			if tc.wrap {
				a, b = wrapped{relayA}, wrapped{relayB}
			}
			var ab, ba atomic.Int64
			ab.Store(7)
			type result struct{ ab, ba int64 }
			done := make(chan result, 1)
			go func() { x, y, _ := PipeCount(a, b, &ab, &ba); done <- result{x, y} }()
			up, down := make([]byte, 300<<10), make([]byte, 70<<10)
			go func() { client.Write(up); client.CloseWrite() }()
			if got, err := io.ReadAll(server); err != nil || len(got) != len(up) {
				t.Fatalf("server got %d bytes (%v), want %d", len(got), err, len(up))
			}
			server.Write(down)
			server.Close()
			if got, err := io.ReadAll(client); err != nil || len(got) != len(down) {
				t.Fatalf("client got %d bytes (%v), want %d", len(got), err, len(down))
			}
			r := <-done
			if r.ab != int64(len(up)) || r.ba != int64(len(down)) {
				t.Fatalf("Pipe returned %d and %d, want %d and %d", r.ab, r.ba, len(up), len(down))
			}
			if ab.Load() != 7+r.ab || ba.Load() != r.ba {
				t.Fatalf("counts %d and %d, want %d and %d", ab.Load(), ba.Load(), 7+r.ab, r.ba)
			}
		})
	}
}
