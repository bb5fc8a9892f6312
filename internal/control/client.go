package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/pinhole-dev/pinhole/internal/observe"
)

// Client talks to the control socket at Path.
type Client struct {
	Path string
}

func (c Client) http() *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", c.Path)
		},
		DisableKeepAlives: true,
	}}
}

// ErrNoProcess means nothing answers on the socket.
var ErrNoProcess = errors.New("control: no pinhole answers on this socket")

func (c Client) do(ctx context.Context, method, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://pinhole"+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.http().Do(req)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, errConnRefused) {
			return nil, fmt.Errorf("%w (%s)", ErrNoProcess, c.Path)
		}
		return nil, fmt.Errorf("control: %s: %w", c.Path, err)
	}
	return resp, nil
}

// Status is one snapshot.
func (c Client) Status(ctx context.Context) (observe.Snapshot, error) {
	var s observe.Snapshot
	resp, err := c.do(ctx, http.MethodGet, "/v1/status")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("control: %s: %s", c.Path, resp.Status)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&s); err != nil {
		return s, fmt.Errorf("control: %s: %w", c.Path, err)
	}
	return s, nil
}

// Reload asks the process to reload its config.
func (c Client) Reload(ctx context.Context) (string, error) {
	return c.post(ctx, "/v1/reload")
}

// Stop asks the process to drain and stop the tunnel called name.
func (c Client) Stop(ctx context.Context, name string) (string, error) {
	return c.post(ctx, "/v1/stop?name="+url.QueryEscape(name))
}

func (c Client) post(ctx context.Context, path string) (string, error) {
	resp, err := c.do(ctx, http.MethodPost, path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	msg := strings.TrimSpace(string(b))
	if resp.StatusCode != http.StatusOK {
		return "", errors.New(msg)
	}
	return msg, nil
}

// Sockets are the control sockets in dir, by name.
func Sockets(dir string) []string {
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		if e.Type()&os.ModeSocket != 0 && strings.HasSuffix(e.Name(), ".sock") {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	slices.Sort(out)
	return out
}
