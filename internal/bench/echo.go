package bench

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/pinhole-dev/pinhole/internal/relay"
)

// tcpEcho writes back whatever each connection sends, on its own goroutine
// with a small buffer, so that 10,000 idle connections cost little here.
// (Not io.Copy: between two TCP sockets it would splice, which keeps a
// pipe, two more descriptors, per idle connection.)
type tcpEcho struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	done  bool
}

// newTCPEcho starts an echo server on ln, which it owns from then on.
func newTCPEcho(ln net.Listener) *tcpEcho {
	e := &tcpEcho{ln: ln, conns: make(map[net.Conn]struct{})}
	e.wg.Go(e.serve)
	return e
}

func (e *tcpEcho) serve() {
	for {
		c, err := e.ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(5 * time.Millisecond) // EMFILE and the like: the client sees a failure
			continue
		}
		e.mu.Lock()
		if e.done {
			e.mu.Unlock()
			c.Close()
			return
		}
		e.conns[c] = struct{}{}
		e.mu.Unlock()
		e.wg.Go(func() { e.echo(c) })
	}
}

func (e *tcpEcho) echo(c net.Conn) {
	defer func() {
		e.mu.Lock()
		delete(e.conns, c)
		e.mu.Unlock()
		c.Close()
	}()
	buf := make([]byte, 2048)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// Close stops the server, closes every connection and waits for their
// goroutines. It is idempotent.
func (e *tcpEcho) Close() error {
	e.mu.Lock()
	var err error
	if !e.done {
		e.done = true
		err = e.ln.Close()
		for c := range e.conns {
			c.Close()
		}
	}
	e.mu.Unlock()
	e.wg.Wait()
	return err
}

// echoChildEnv set to 1 in the environment makes this program the echo
// child: it serves the TCP echo on the listener it inherits as descriptor
// 3, and the HTTP service of the http setups (httpService) on descriptor
// 4, until its stdin closes. The HTTP service runs there too so that its
// CPU is not the benchmark's, whose clients load it. The echo server runs so, in a process of its
// own, because the 10,000 connections of conns10k take 20,000 descriptors
// in one process that holds both ends, and a container's hard limit may be
// just that.
const echoChildEnv = "PINHOLE_BENCH_ECHO_CHILD"

// ServeEchoChild serves as the echo child when the environment says so and
// then returns true; otherwise it returns false at once. The command's
// main and the package's TestMain call it first.
func ServeEchoChild() bool {
	if os.Getenv(echoChildEnv) != "1" {
		return false
	}
	ln, err := net.FileListener(os.NewFile(3, "echo listener"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "pinhole-bench echo child: %v\n", err)
		os.Exit(1)
	}
	httpLn, err := net.FileListener(os.NewFile(4, "http listener"))
	if err != nil {
		fmt.Fprintf(os.Stderr, "pinhole-bench echo child: %v\n", err)
		os.Exit(1)
	}
	e := newTCPEcho(ln)
	srv := newHTTPServer()
	go srv.Serve(httpLn)
	io.Copy(io.Discard, os.Stdin) // until the benchmark closes it or dies
	srv.Close()
	e.Close()
	return true
}

// echoChild is the TCP echo server and the HTTP service, run as a child
// process.
type echoChild struct {
	port     int
	httpPort int
	cmd      *exec.Cmd
	stdin    io.Closer
	once     sync.Once
}

// startEchoChild runs this program again, as the echo child, on two new
// listeners on 127.0.0.1.
func startEchoChild() (*echoChild, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("bench: finding this program to run the echo server: %w", err)
	}
	var files []*os.File
	var ports []int
	for range 2 { // the echo's, the HTTP service's
		ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		defer ln.Close() // the child has its own copy
		f, err := ln.File()
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		defer f.Close()
		files = append(files, f)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), echoChildEnv+"=1")
	cmd.ExtraFiles = files
	cmd.Stderr = os.Stderr
	dieWithParent(cmd)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: starting the echo child: %w", err)
	}
	return &echoChild{port: ports[0], httpPort: ports[1], cmd: cmd, stdin: stdin}, nil
}

// Port returns the port the echo child serves the TCP echo on.
func (e *echoChild) Port() int { return e.port }

// HTTPPort returns the port the echo child serves the HTTP service on.
func (e *echoChild) HTTPPort() int { return e.httpPort }

// Close ends the echo child and waits for it. It is idempotent.
func (e *echoChild) Close() error {
	e.once.Do(func() {
		e.stdin.Close()
		done := make(chan struct{})
		go func() { e.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			e.cmd.Process.Kill()
			<-done
		}
	})
	return nil
}

// udpEcho answers every datagram with the same bytes.
type udpEcho struct {
	pc   *net.UDPConn
	wg   sync.WaitGroup
	once sync.Once
}

// newUDPEcho starts a UDP echo server on 127.0.0.1, with socket buffers
// large enough that a burst is not lost here.
func newUDPEcho() (*udpEcho, error) {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	// As pinhole's own: forced past net.core.rmem_max as root, so that
	// a burst lost is lost in the forwarder, not in the harness.
	relay.SetBuffers(pc)
	u := &udpEcho{pc: pc}
	u.wg.Go(u.serve)
	return u, nil
}

// Port returns the UDP port the echo server answers on.
func (u *udpEcho) Port() int { return u.pc.LocalAddr().(*net.UDPAddr).Port }

func (u *udpEcho) serve() {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := u.pc.ReadFromUDPAddrPort(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err == nil {
			u.pc.WriteToUDPAddrPort(buf[:n], from)
		}
	}
}

// Close stops the server and waits for it. It is idempotent.
func (u *udpEcho) Close() error {
	var err error
	u.once.Do(func() { err = u.pc.Close() })
	u.wg.Wait()
	return err
}
