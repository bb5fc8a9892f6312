package ssh

import (
	"bytes"
	"encoding/binary"
	"testing"

	"golang.org/x/crypto/chacha20"
	"golang.org/x/crypto/poly1305"
)

// referenceChaChaPacket builds an OpenSSH chacha20-poly1305 packet with
// package chacha20's generic code, as upstream x/crypto/ssh does, so the
// fork's, on github.com/aead's assembly, can be checked against it.
func referenceChaChaPacket(t *testing.T, key []byte, seq uint32, payload []byte, pad []byte) []byte {
	t.Helper()
	nonce := make([]byte, 12)
	binary.BigEndian.PutUint32(nonce[8:], seq)
	s, err := chacha20.NewUnauthenticatedCipher(key[:32], nonce)
	if err != nil {
		t.Fatal(err)
	}
	var polyKey, discard [32]byte
	s.XORKeyStream(polyKey[:], polyKey[:])
	s.XORKeyStream(discard[:], discard[:])
	pkt := make([]byte, 4, 4+1+len(payload)+len(pad)+16)
	binary.BigEndian.PutUint32(pkt, uint32(1+len(payload)+len(pad)))
	ls, err := chacha20.NewUnauthenticatedCipher(key[32:], nonce)
	if err != nil {
		t.Fatal(err)
	}
	ls.XORKeyStream(pkt, pkt)
	pkt = append(pkt, byte(len(pad)))
	pkt = append(pkt, payload...)
	pkt = append(pkt, pad...)
	s.XORKeyStream(pkt[4:], pkt[4:])
	var mac [16]byte
	poly1305.Sum(&mac, pkt, &polyKey)
	return append(pkt, mac[:]...)
}

// zeroReader gives the padding: zeros, so the reference can match it.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func TestChaChaMatchesGeneric(t *testing.T) {
	key := make([]byte, 64)
	for i := range key {
		key[i] = byte(i * 7)
	}
	for _, size := range []int{0, 1, 3, 15, 16, 63, 64, 65, 255, 256, 1000, 32768, 65536 + 17, 200000} {
		for _, seq := range []uint32{0, 1, 0xfffffffe} {
			payload := bytes.Repeat([]byte{byte(size), 0x5a, byte(seq)}, size/3+1)[:size]
			pc, err := newChaCha20Cipher(key, nil, nil, DirectionAlgorithms{})
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := pc.writeCipherPacket(seq, &out, zeroReader{}, payload); err != nil {
				t.Fatalf("size %d: write: %v", size, err)
			}
			padding := 8 - (1+size)%8
			if padding < 4 {
				padding += 8
			}
			want := referenceChaChaPacket(t, key, seq, payload, make([]byte, padding))
			if !bytes.Equal(out.Bytes(), want) {
				t.Fatalf("size %d seq %d: packet differs from the generic ChaCha20 one", size, seq)
			}
			rc, err := newChaCha20Cipher(key, nil, nil, DirectionAlgorithms{})
			if err != nil {
				t.Fatal(err)
			}
			if size == 0 {
				continue // readCipherPacket refuses an empty packet, as upstream does
			}
			got, err := rc.readCipherPacket(seq, bytes.NewReader(want))
			if err != nil {
				t.Fatalf("size %d seq %d: read: %v", size, seq, err)
			}
			if !bytes.Equal(got, payload) {
				t.Fatalf("size %d seq %d: read back differs", size, seq)
			}
		}
	}
}

// FuzzChaChaPacket feeds readCipherPacket arbitrary bytes, which must give
// an error or a payload and never a panic, and checks that any payload
// survives writeCipherPacket and readCipherPacket under any sequence
// number.
func FuzzChaChaPacket(f *testing.F) {
	key := make([]byte, 64)
	for i := range key {
		key[i] = byte(i * 13)
	}
	f.Add([]byte("hello"), uint32(0))
	f.Add(bytes.Repeat([]byte{0xff}, 300), uint32(0xffffffff))
	f.Fuzz(func(t *testing.T, data []byte, seq uint32) {
		rc, err := newChaCha20Cipher(key, nil, nil, DirectionAlgorithms{})
		if err != nil {
			t.Fatal(err)
		}
		rc.readCipherPacket(seq, bytes.NewReader(data))

		wc, err := newChaCha20Cipher(key, nil, nil, DirectionAlgorithms{})
		if err != nil {
			t.Fatal(err)
		}
		var pkt bytes.Buffer
		if err := wc.writeCipherPacket(seq, &pkt, zeroReader{}, data); err != nil {
			t.Fatal(err)
		}
		if len(data) == 0 {
			return // readCipherPacket refuses an empty packet, as upstream does
		}
		got, err := rc.readCipherPacket(seq, bytes.NewReader(pkt.Bytes()))
		if err != nil {
			t.Fatalf("read back: %v", err)
		}
		if !bytes.Equal(got, data) {
			t.Fatal("read back differs")
		}
		// Any flipped bit fails the MAC.
		b := pkt.Bytes()
		b[len(b)/2] ^= 1
		if _, err := rc.readCipherPacket(seq, bytes.NewReader(b)); err == nil {
			t.Fatal("a packet with a flipped bit was accepted")
		}
	})
}
