package tunnel

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/ssh"
)

// mute is an ssh.Conn whose peer never answers a request.
type mute struct {
	ssh.Conn
	closed chan struct{}
	once   atomic.Bool
}

func (m *mute) SendRequest(string, bool, []byte) (bool, []byte, error) {
	<-m.closed
	return false, nil, ssh.ErrNoAuth
}

func (m *mute) Close() error {
	if m.once.CompareAndSwap(false, true) {
		close(m.closed)
	}
	return nil
}

// TestKeepaliveCountsData: a peer that answers no keepalive but keeps
// sending data is alive; once its data stops, count intervals close it.
func TestKeepaliveCountsData(t *testing.T) {
	m := &mute{closed: make(chan struct{})}
	var reads atomic.Uint64
	sending := atomic.Bool{}
	sending.Store(true)
	go func() {
		for sending.Load() {
			reads.Add(1)
			time.Sleep(5 * time.Millisecond)
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	const interval = 20 * time.Millisecond
	go func() {
		keepalive(ctx, m, interval, 3, reads.Load, slog.New(slog.DiscardHandler), nil)
		close(done)
	}()
	select {
	case <-done:
		t.Fatal("keepalive closed a connection whose peer was sending data")
	case <-time.After(20 * interval):
	}
	sending.Store(false)
	stopped := time.Now()
	select {
	case <-done:
		if d := time.Since(stopped); d < 2*interval {
			t.Fatalf("closed %v after the data stopped, before 3 intervals could pass", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("keepalive did not close a silent peer")
	}
	if !m.once.Load() {
		t.Fatal("keepalive returned without closing the connection")
	}
}
