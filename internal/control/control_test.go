package control

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/observe"
)

func serve(t *testing.T, path string, h Handler) {
	t.Helper()
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, h) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the socket file stays after Serve: %v", err)
		}
	})
}

func TestListenAndAsk(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	path := filepath.Join(dir, "up.sock")
	n := 0
	serve(t, path, Handler{
		Snapshot: func() observe.Snapshot {
			n++
			return observe.Snapshot{Role: "client", Time: time.Now(), Totals: observe.Counters{BytesToTarget: int64(1000 * n)}}
		},
		Reload: func(context.Context) (string, error) { return "reloaded: 1 started", nil },
		Stop: func(_ context.Context, name string) (string, error) {
			if name != "one" {
				return "", errors.New("no running tunnel " + name)
			}
			return "stopping one", nil
		},
	})
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("the socket's directory: %v %v; want mode 0700", fi.Mode(), err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the socket: %v %v; want mode 0600", fi.Mode(), err)
	}
	ctx := t.Context()
	c := Client{Path: path}
	s1, err := c.Status(ctx)
	if err != nil || s1.Role != "client" || s1.RateSeconds != 0 {
		t.Fatalf("Status: %+v, %v; want the snapshot, no rates yet", s1, err)
	}
	time.Sleep(50 * time.Millisecond)
	s2, err := c.Status(ctx)
	if err != nil || s2.RateSeconds <= 0 || s2.Totals.RateToTarget <= 0 {
		t.Errorf("second Status: %+v, %v; want rates since the first", s2, err)
	}
	if msg, err := c.Reload(ctx); msg != "reloaded: 1 started" || err != nil {
		t.Errorf("Reload: %q, %v", msg, err)
	}
	if msg, err := c.Stop(ctx, "one"); msg != "stopping one" || err != nil {
		t.Errorf("Stop one: %q, %v", msg, err)
	}
	if _, err := c.Stop(ctx, "two"); err == nil || err.Error() != "no running tunnel two" {
		t.Errorf("Stop two: %v; want the handler's error", err)
	}

	// A second process on the same path is refused; the first goes on.
	if _, err := Listen(path); !errors.Is(err, ErrInUse) {
		t.Errorf("Listen on a live socket: %v; want ErrInUse", err)
	}
}

func TestNotSupported(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.sock")
	serve(t, path, Handler{Snapshot: func() observe.Snapshot { return observe.Snapshot{Role: "client"} }})
	c := Client{Path: path}
	if _, err := c.Reload(t.Context()); err == nil || !strings.Contains(err.Error(), "no config file to reload") {
		t.Errorf("Reload of a process without one: %v", err)
	}
	if _, err := c.Stop(t.Context(), "x"); err == nil || !strings.Contains(err.Error(), "no tunnels to stop") {
		t.Errorf("Stop of a process without tunnels: %v", err)
	}
}

func TestStaleAndUnsafe(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "server.sock")
	// A socket file left by a process that was killed: nobody answers.
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := (Client{Path: path}).Status(t.Context()); !errors.Is(err, ErrNoProcess) {
		t.Errorf("Status of a stale socket: %v; want ErrNoProcess", err)
	}
	serve(t, path, Handler{Snapshot: func() observe.Snapshot { return observe.Snapshot{Role: "server"} }})
	if s, err := (Client{Path: path}).Status(t.Context()); err != nil || s.Role != "server" {
		t.Errorf("Status after a stale socket was replaced: %+v %v", s, err)
	}
	if got := Sockets(dir); len(got) != 1 || got[0] != path {
		t.Errorf("Sockets(%s) = %v; want [%s]", dir, got, path)
	}

	open := filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(open, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(open, 0o777)
	if _, err := Listen(filepath.Join(open, "x.sock")); err == nil || !strings.Contains(err.Error(), "may be written by others") {
		t.Errorf("Listen in a world-writable directory: %v; want a refusal", err)
	}
}

// TestNotASocket: a file at the path that is not a socket is an error
// that names it, and stays as it was.
func TestNotASocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notes.txt")
	if err := os.WriteFile(path, []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Listen(path)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Listen on a regular file: %v; want an error naming it as not a socket", err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "mine" {
		t.Errorf("the regular file after Listen: %q %v; want it untouched", b, err)
	}
}

func TestDir(t *testing.T) {
	env := map[string]string{}
	get := func(k string) string { return env[k] }
	if d := Dir(get, "/state"); d != "/state" {
		t.Errorf("Dir with nothing set = %q; want the state directory", d)
	}
	env["XDG_RUNTIME_DIR"] = "/run/user/1000"
	if d := Dir(get, "/state"); d != "/run/user/1000/pinhole" {
		t.Errorf("Dir = %q; want $XDG_RUNTIME_DIR/pinhole", d)
	}
	env["RUNTIME_DIRECTORY"] = "/run/pinhole:/run/other"
	if d := Dir(get, "/state"); d != "/run/pinhole" {
		t.Errorf("Dir = %q; want systemd's RuntimeDirectory", d)
	}
}
