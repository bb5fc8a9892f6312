package tunnel_test

import (
	"bufio"
	"bytes"
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
	"github.com/pinhole-dev/pinhole/internal/streamtest"
)

// emfileChild is the environment variable that makes
// TestLocalForwardSurvivesEMFILE the child half: a tunnel in a process
// with few file descriptors.
const emfileChild = "PINHOLE_TEST_EMFILE_CHILD"

// TestLocalForwardSurvivesEMFILE: a -L forward in a process that runs out
// of file descriptors keeps its listener and accepts again once some are
// free, saying so once per episode. The tunnel runs in a child process
// with RLIMIT_NOFILE lowered, so that this process's own limit is not
// touched; the target runs here.
func TestLocalForwardSurvivesEMFILE(t *testing.T) {
	if target := os.Getenv(emfileChild); target != "" {
		emfileTunnel(t, target)
		return
	}
	if testing.Short() {
		t.Skip("starts a child process")
	}
	echo := streamtest.NewEcho(t)
	cmd := exec.Command(os.Args[0], "-test.run=^TestLocalForwardSurvivesEMFILE$", "-test.v")
	cmd.Env = append(os.Environ(), emfileChild+"="+echo.Addr())
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

// emfileTunnel is the child: a server and a client with one -L to target,
// in a process limited to 64 file descriptors. It prints LADDR and runs
// until stdin closes.
func emfileTunnel(t *testing.T, target string) {
	clientKey := newSigner(t)
	srv := startServer(t, nil, newSigner(t), keySet(t, authorizedLine("", clientKey.PublicKey())))
	cfg := clientConfig(t, srv.addr, srv.hostKey.PublicKey(), clientKey)
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
