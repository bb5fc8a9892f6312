package cli

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/ssh"
)

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is Main running in the background, as the binary would.
type proc struct {
	cancel context.CancelFunc
	lines  chan string // stdout, line by line
	stderr *syncBuffer
	code   chan int
}

func start(t *testing.T, args ...string) *proc {
	t.Helper()
	return startReload(t, nil, args...)
}

// startReload is start with a reload channel, as SIGHUP feeds under Run.
func startReload(t *testing.T, reload <-chan struct{}, args ...string) *proc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	p := &proc{cancel: cancel, lines: make(chan string, 100), stderr: new(syncBuffer), code: make(chan int, 1)}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	go func() {
		code := mainReload(ctx, reload, args, pw, p.stderr)
		pw.Close()
		p.code <- code
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-p.code:
		case <-time.After(20 * time.Second):
			t.Errorf("pinhole %s did not stop within 20 s of its context ending", args[0])
			pprof.Lookup("goroutine").WriteTo(os.Stderr, 2)
		}
		if t.Failed() {
			t.Logf("stderr of pinhole %s:\n%s", strings.Join(args, " "), p.stderr)
		}
	})
	return p
}

// waitLine returns the submatches of the first stdout line matching re.
func (p *proc) waitLine(t *testing.T, re string) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(20 * time.Second)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				t.Fatalf("stdout ended before a line matching %q; stderr:\n%s", re, p.stderr)
			}
			if m := rx.FindStringSubmatch(line); m != nil {
				return m
			}
		case <-deadline:
			t.Fatalf("no stdout line matching %q within 20 s; stderr:\n%s", re, p.stderr)
		}
	}
}

// run runs Main to the end and returns its exit code and output.
func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out, errOut syncBuffer
	code = Main(ctx, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// writeKey writes a new ed25519 private key in OpenSSH format and returns
// its path and public key.
func writeKey(t *testing.T, dir, name string) (string, ssh.PublicKey) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	data := pem.EncodeToMemory(block)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(data)
	if err != nil {
		t.Fatal(err)
	}
	return path, signer.PublicKey()
}
