package tunnel

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

// frames encodes datagrams as they travel in a UDP channel.
func frames(dgrams ...[]byte) []byte {
	var b bytes.Buffer
	for _, d := range dgrams {
		binary.Write(&b, binary.BigEndian, uint16(len(d)))
		b.Write(d)
	}
	return b.Bytes()
}

func TestReadFrame(t *testing.T) {
	big := bytes.Repeat([]byte{1}, 60000)
	r := bufio.NewReader(bytes.NewReader(frames([]byte("a"), nil, big, []byte("too long for the buffer"), []byte("after"))))
	buf := make([]byte, 65535)
	for _, want := range [][]byte{[]byte("a"), {}, big} {
		n, err := readFrame(r, buf)
		if err != nil || !bytes.Equal(buf[:n], want) {
			t.Fatalf("readFrame = %d bytes, %v; want %d bytes", n, err, len(want))
		}
	}
	if _, err := readFrame(r, buf[:5]); !errors.Is(err, io.ErrShortBuffer) {
		t.Fatalf("a frame longer than the buffer: %v; want io.ErrShortBuffer", err)
	}
	if n, err := readFrame(r, buf); err != nil || string(buf[:n]) != "after" {
		t.Fatalf("the frame after a discarded one: %q, %v", buf[:n], err)
	}
	if _, err := readFrame(r, buf); err != io.EOF {
		t.Fatalf("at the end: %v; want io.EOF", err)
	}
	r = bufio.NewReader(bytes.NewReader(frames([]byte("cut short"))[:5]))
	if _, err := readFrame(r, buf); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("a truncated frame: %v; want io.ErrUnexpectedEOF", err)
	}
}

// FuzzReadFrame: any bytes from the peer give whole frames or an error,
// never a panic; each frame is the bytes its header covers, in order, and
// one longer than the buffer is skipped whole.
func FuzzReadFrame(f *testing.F) {
	f.Add(frames([]byte("hello"), nil))
	f.Add(frames(make([]byte, 1025), []byte("after")))
	f.Add([]byte{0xff, 0xff, 1, 2})
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, data []byte) {
		r := bufio.NewReader(bytes.NewReader(data))
		buf := make([]byte, 1024)
		rest := data // what the frames still to read come from
		for {
			n, err := readFrame(r, buf)
			if err != nil && !errors.Is(err, io.ErrShortBuffer) {
				if len(rest) >= 2 && 2+int(binary.BigEndian.Uint16(rest)) <= len(rest) {
					t.Fatalf("%v with a whole frame left: %x", err, rest)
				}
				return
			}
			if len(rest) < 2 {
				t.Fatalf("a frame from %x", rest)
			}
			size := int(binary.BigEndian.Uint16(rest))
			if errors.Is(err, io.ErrShortBuffer) {
				if size <= len(buf) {
					t.Fatalf("frame of %d bytes refused by a %d-byte buffer", size, len(buf))
				}
			} else if n != size || !bytes.Equal(buf[:n], rest[2:2+size]) {
				t.Fatalf("frame %x; want %x", buf[:n], rest[2:2+size])
			}
			rest = rest[2+size:]
		}
	})
}
