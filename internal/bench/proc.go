package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// proc is a program the benchmark started: a forwarder, sshd or iperf3 -s.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *tail
	done chan struct{} // closed once the program has exited and been reaped
	err  error         // from cmd.Wait, set before done is closed
	stop sync.Once
}

// startProc starts path with args, its stdout and stderr kept for error
// messages. The kernel kills it if the benchmark dies.
func startProc(path string, args ...string) (*proc, error) {
	p := &proc{name: filepath.Base(path), out: &tail{}, done: make(chan struct{})}
	p.cmd = exec.Command(path, args...)
	dieWithParent(p.cmd)
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	p.cmd.WaitDelay = 2 * time.Second // socat's children hold the output pipe
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: starting %s: %w", p.name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Pid returns the program's process id.
func (p *proc) Pid() int { return p.cmd.Process.Pid }

// Close kills the program and waits for it. It is idempotent.
func (p *proc) Close() error {
	p.stop.Do(func() {
		p.cmd.Process.Kill() // fails harmlessly once it has exited
		<-p.done
	})
	return nil
}

// exited reports whether the program has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Output returns the last of what the program wrote.
func (p *proc) Output() string { return p.out.String() }

// tail keeps the last 64 KiB written to it: a forwarder that logs every
// connection must not fill the memory of a long run.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

const tailMax = 64 << 10

func (t *tail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if len(t.buf) > tailMax {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-tailMax:]...)
	}
	return len(b), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

// lowPort returns a random port from 10000 to 32767: below the ephemeral
// range (32768 and up here), where outgoing connections take their ports.
func lowPort() int {
	return 10000 + rand.IntN(32768-10000)
}

// freePorts returns n distinct random low ports on which nothing accepts TCP
// connections now. Another program may still take one before ours binds
// it; startOnPorts then tries others.
func freePorts(n int) []int {
	ports := make([]int, 0, n)
	for len(ports) < n {
		p := lowPort()
		if !slices.Contains(ports, p) && !accepts(p) {
			ports = append(ports, p)
		}
	}
	return ports
}

// accepts reports whether something accepts TCP connections on
// 127.0.0.1:port.
func accepts(port int) bool {
	c, err := net.DialTimeout("tcp", loopback(port), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func loopback(port int) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// errPortTaken is what startOnPorts retries on.
var errPortTaken = errors.New("bench: a port is taken")

// startOnPorts starts a program that binds n ports of its own: start runs
// it on the ports given, and ready reports whether it is up. A program that
// exits saying a port is taken is started again on other ports, at most 10
// times within 20 seconds.
func startOnPorts(ctx context.Context, n int, start func(ports []int) (*proc, error), ready func(p *proc, ports []int) bool) (*proc, []int, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var name, last string
	for range 10 {
		ports := freePorts(n)
		p, err := start(ports)
		if err != nil {
			return nil, nil, err
		}
		switch err := waitReady(ctx, p, ports, ready); {
		case err == nil:
			return p, ports, nil
		case errors.Is(err, errPortTaken):
			name, last = p.name, p.Output()
			continue
		default:
			return nil, nil, err
		}
	}
	return nil, nil, fmt.Errorf("bench: %s found no free port in 10 tries; its last output:\n%s", name, last)
}

// waitReady polls ready until it says yes, the program exits or ctx ends.
// A program that exits is stopped; so is one that is not ready in time.
func waitReady(ctx context.Context, p *proc, ports []int, ready func(*proc, []int) bool) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-p.done:
			out := p.Output()
			if strings.Contains(strings.ToLower(out), "address already in use") {
				return errPortTaken
			}
			return fmt.Errorf("bench: %s exited (%v) before it was ready; its output:\n%s", p.name, p.err, out)
		case <-ctx.Done():
			p.Close()
			return fmt.Errorf("bench: %s was not ready on ports %v in time; its output:\n%s", p.name, ports, p.Output())
		case <-tick.C:
		}
		if ready(p, ports) && !p.exited() {
			return nil
		}
	}
}

// outputHas returns a ready function for startOnPorts that waits for the
// program to write line, with %d standing for its first port.
func outputHas(line string) func(*proc, []int) bool {
	return func(p *proc, ports []int) bool {
		return strings.Contains(p.Output(), fmt.Sprintf(line, ports[0]))
	}
}

// echoes reports whether one round trip through 127.0.0.1:port comes back
// from the benchmark's echo server: a forward that is up and carries data.
func echoes(port int) bool {
	c, err := net.DialTimeout("tcp", loopback(port), time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	token := []byte(strconv.FormatUint(rand.Uint64(), 36))
	if _, err := c.Write(token); err != nil {
		return false
	}
	got := make([]byte, len(token))
	if _, err := io.ReadFull(c, got); err != nil {
		return false
	}
	return bytes.Equal(got, token)
}

func splitHostPort(addr string) (host, port string, err error) {
	host, port, err = net.SplitHostPort(addr)
	if err != nil {
		return "", "", fmt.Errorf("bench: %w", err)
	}
	return host, port, nil
}
