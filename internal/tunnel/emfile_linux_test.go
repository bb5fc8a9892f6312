package tunnel_test

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/spec"
	"github.com/pinhole-dev/pinhole/internal/ssh"
	"github.com/pinhole-dev/pinhole/internal/streamtest"
)

// emfileChild is the environment variable that makes
// TestLocalForwardSurvivesEMFILE the child half: a tunnel in a process
// with few file descriptors.
const emfileChild = "PINHOLE_TEST_EMFILE_CHILD"

// TestLocalForwardSurvivesEMFILE: a -L forward in a process that runs out
// of file descriptors keeps its listener and accepts again once some are
// free, saying so once per episode. The client runs in a child process
// with RLIMIT_NOFILE lowered, so that this process's own limit is not
// touched; the server and the target run here. (With the server in the
// child too, its dial to the target needed a second descriptor per
// connection, and a loaded machine could hand the first free one to the
// accept and leave the dial at EMFILE.)
func TestLocalForwardSurvivesEMFILE(t *testing.T) {
	if env := os.Getenv(emfileChild); env != "" {
		emfileTunnel(t, env)
		return
	}
	if testing.Short() {
		t.Skip("starts a child process")
	}
	echo := streamtest.NewEcho(t)
	seed := make([]byte, ed25519.SeedSize)
	rand.Read(seed)
	clientKey, err := ssh.NewSignerFromKey(ed25519.NewKeyFromSeed(seed))
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, nil, newSigner(t), keySet(t, authorizedLine("", clientKey.PublicKey())))
	hostKey := base64.StdEncoding.EncodeToString(srv.hostKey.PublicKey().Marshal())
	cmd := exec.Command(os.Args[0], "-test.run=^TestLocalForwardSurvivesEMFILE$", "-test.v")
	cmd.Env = append(os.Environ(), emfileChild+"="+strings.Join([]string{echo.Addr(), srv.addr, hostKey, hex.EncodeToString(seed)}, " "))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var (
		mu  sync.Mutex
		log bytes.Buffer
	)
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			mu.Lock()
			log.WriteString(line + "\n")
			mu.Unlock()
			if a, ok := strings.CutPrefix(line, "LADDR "); ok {
				addrc <- a
			}
		}
	}()
	defer func() {
		stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}()
	t.Cleanup(func() {
		if t.Failed() {
			mu.Lock()
			t.Logf("the child's log:\n%s", log.String())
			mu.Unlock()
		}
	})
	logged := func(s string) bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Contains(log.String(), s)
	}
	var laddr string
	select {
	case laddr = <-addrc:
	case <-time.After(30 * time.Second):
		t.Fatal("the child printed no -L address")
	}

	// Hold connections until the child cannot accept any more.
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := 0; i < 200 && !logged("accept failed"); i++ {
		c, err := net.Dial("tcp", laddr)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		held = append(held, c)
		time.Sleep(5 * time.Millisecond)
	}
	waitFor(t, 5*time.Second, "the child to log EMFILE", func() bool { return logged("accept failed") })
	// One waiting in the listen queue, not yet accepted.
	waiting, err := net.Dial("tcp", laddr)
	if err != nil {
		t.Fatal(err)
	}
	defer waiting.Close()
	for _, c := range held {
		c.Close()
	}
	held = nil
	// The waiting connection is accepted and carried once fds free up.
	msg := []byte("after EMFILE")
	waiting.SetDeadline(time.Now().Add(15 * time.Second))
	go waiting.Write(msg)
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(waiting, got); err != nil || !bytes.Equal(got, msg) {
		t.Fatalf("the connection queued during EMFILE: %q, %v", got, err)
	}
	if err := echoThrough(laddr, []byte("new")); err != nil {
		t.Fatalf("a new connection after EMFILE: %v", err)
	}
	waitFor(t, 5*time.Second, "the child to log the end of the episode", func() bool { return logged("accepting again") })
	mu.Lock()
	n := strings.Count(log.String(), "accept failed")
	mu.Unlock()
	if n != 1 {
		t.Errorf("%d 'accept failed' lines for one episode, want 1", n)
	}
}

// emfileTunnel is the child: a client with one -L to the target, in a
// process limited to 64 file descriptors. env is "TARGET SERVER HOSTKEY
// SEED": the host key base64 in wire form, the client's ed25519 seed in
// hex. It prints LADDR and runs until stdin closes.
func emfileTunnel(t *testing.T, env string) {
	f := strings.Fields(env)
	if len(f) != 4 {
		t.Fatalf("%s=%q: want 4 fields", emfileChild, env)
	}
	target, addr := f[0], f[1]
	wire, err := base64.StdEncoding.DecodeString(f[2])
	if err != nil {
		t.Fatal(err)
	}
	hostKey, err := ssh.ParsePublicKey(wire)
	if err != nil {
		t.Fatal(err)
	}
	seed, err := hex.DecodeString(f[3])
	if err != nil || len(seed) != ed25519.SeedSize {
		t.Fatalf("seed %q: %v", f[3], err)
	}
	clientKey, err := ssh.NewSignerFromKey(ed25519.NewKeyFromSeed(seed))
	if err != nil {
		t.Fatal(err)
	}
	cfg := clientConfig(t, addr, hostKey, clientKey)
	cfg.Local = []spec.Forward{mustParse(t, spec.Local, "127.0.0.1:0:"+target)}
	c := dialClient(t, cfg)
	lim := syscall.Rlimit{Cur: 64, Max: 64}
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	lim.Max = old.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("LADDR %s\n", c.LocalAddrs()[0])
	io.Copy(io.Discard, os.Stdin)
}
