// Package control is the local control socket of a running pinhole: a
// unix socket, mode 0600 in a directory of mode 0700, that answers
// `pinhole status`, `pinhole reload` and `pinhole stop NAME` with HTTP/1.1
// (docs/watching.md):
//
//	GET  /v1/status          one observe.Snapshot, JSON
//	POST /v1/reload          reload the config (pinhole up); the result in words
//	POST /v1/stop?name=NAME  drain and stop one tunnel (pinhole up)
//
// Only the user who runs the process (and root) may connect: the file's
// mode says so, and on Linux each connection's peer credentials are
// checked as well.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/pinhole-dev/pinhole/internal/observe"
)

// Handler is what a process answers on its control socket.
type Handler struct {
	// Snapshot is what the process does now. Required.
	Snapshot func() observe.Snapshot
	// Reload reloads the config as SIGHUP does and says what changed.
	// nil: the process has nothing to reload this way.
	Reload func(ctx context.Context) (string, error)
	// Stop drains and stops the tunnel called name. nil: the process
	// has no tunnels to stop one by one.
	Stop func(ctx context.Context, name string) (string, error)
}

// WatchEvery is how often pinhole status --watch asks for a snapshot.
const WatchEvery = time.Second

// ErrInUse is Listen's error for a socket that a live process serves.
var ErrInUse = errors.New("control: another pinhole answers on this socket")

// Dir is the directory of the control sockets: $RUNTIME_DIRECTORY when
// systemd sets it (RuntimeDirectory=), else $XDG_RUNTIME_DIR/pinhole,
// else state (pinhole's state directory).
func Dir(getenv func(string) string, state string) string {
	if rd, _, _ := strings.Cut(getenv("RUNTIME_DIRECTORY"), ":"); filepath.IsAbs(rd) {
		return rd
	}
	if x := getenv("XDG_RUNTIME_DIR"); filepath.IsAbs(x) {
		return filepath.Join(x, "pinhole")
	}
	return state
}

// Listen opens the control socket at path, making its directory (mode
// 0700) if need be. A socket file that refuses connections (left by a
// process that was killed) is replaced; one a live process serves, even
// one too busy to take a connection now, is ErrInUse; any other file is
// left alone and an error.
func Listen(path string) (net.Listener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	if err := checkDir(dir); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("control: %s is in the way and is not a socket (%v): move it away, or give another place with --control PATH", path, fi.Mode().Type())
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		switch {
		case err == nil:
			c.Close()
			return nil, fmt.Errorf("%w: %s", ErrInUse, path)
		case !errors.Is(err, errConnRefused):
			// Someone listens but did not take the connection (a full
			// backlog answers EAGAIN): the socket is theirs to keep.
			return nil, fmt.Errorf("%w: %s (it did not take a connection: %v)", ErrInUse, path, err)
		}
		// Refused: nobody listens, the file was left by a process that
		// was killed.
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("control: a stale socket is in the way: %w (remove %s, or give another place with --control PATH)", err, path)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		if len(path) > 100 {
			return nil, fmt.Errorf("control: %w (a unix socket's path must be shorter than 108 bytes; give a shorter one with --control PATH)", err)
		}
		return nil, fmt.Errorf("control: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control: %w", err)
	}
	return &ownerListener{Listener: ln}, nil
}

// checkDir refuses a directory that others may write to: they could
// replace the socket with their own.
func checkDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("control: %s may be written by others (mode %v): make it 0700 (chmod 700 %s) or give another place with --control PATH", dir, fi.Mode().Perm(), dir)
	}
	if uid, other := ownerOf(fi); other {
		return fmt.Errorf("control: %s belongs to user %d, not to you: give another place with --control PATH", dir, uid)
	}
	return nil
}

// ownerListener accepts only connections from this process's user or
// root, where the system tells (peercred_linux.go).
type ownerListener struct{ net.Listener }

func (l *ownerListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if peerAllowed(c) {
			return c, nil
		}
		c.Close()
	}
}

// Serve answers h on ln until ctx ends, then closes ln (removing the
// socket file) and returns nil; or it returns ln's error.
func Serve(ctx context.Context, ln net.Listener, h Handler) error {
	srv := &http.Server{
		Handler:           h.mux(),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	stop := context.AfterFunc(ctx, func() { srv.Close() })
	defer stop()
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

func (h Handler) mux() *http.ServeMux {
	shared := &observe.Sampler{Take: h.Snapshot, Keep: time.Second}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(shared.Sample())
	})
	mux.HandleFunc("POST /v1/reload", func(w http.ResponseWriter, r *http.Request) {
		if h.Reload == nil {
			http.Error(w, "this pinhole has no config file to reload: pinhole up and pinhole server -c FILE reload theirs", http.StatusNotImplemented)
			return
		}
		answer(w, h.Reload)(r.Context())
	})
	mux.HandleFunc("POST /v1/stop", func(w http.ResponseWriter, r *http.Request) {
		if h.Stop == nil {
			http.Error(w, "this pinhole has no tunnels to stop one by one: that is pinhole up's; stop the process itself with SIGTERM", http.StatusNotImplemented)
			return
		}
		name := r.URL.Query().Get("name")
		answer(w, func(ctx context.Context) (string, error) { return h.Stop(ctx, name) })(r.Context())
	})
	return mux
}

// answer writes what f says: its text, or its error as a 409.
func answer(w http.ResponseWriter, f func(context.Context) (string, error)) func(context.Context) {
	return func(ctx context.Context) {
		msg, err := f(ctx)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err != nil {
			w.WriteHeader(http.StatusConflict)
			fmt.Fprintln(w, err)
			return
		}
		fmt.Fprintln(w, msg)
	}
}
