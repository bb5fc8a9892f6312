package sshtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// SSHOptions says how to run the ssh client.
type SSHOptions struct {
	Addr       string // the server, "host:port"
	User       string // "" means the user running the test
	Key        *Key   // the only identity ssh offers; required
	KnownHosts string // the whole known_hosts file ssh checks the server against
	Args       []string
	// Session runs ssh without -N: it opens a session and asks for a shell,
	// or runs Command when that is set. ssh gets -T (no pty).
	Session bool
	Command []string
}

// SSHProc is a running ssh client.
type SSHProc struct {
	cmd    *exec.Cmd
	stderr *output
	done   chan struct{} // closed once ssh has exited and been reaped
	err    error         // from cmd.Wait, set before done is closed
}

// StartSSH runs the real ssh client, with no config file, in batch mode,
// checking the host key strictly against o.KnownHosts, offering only o.Key,
// and exiting if a forward cannot be set up:
//
//	ssh -N -F none -o BatchMode=yes -o StrictHostKeyChecking=yes
//	    -o UserKnownHostsFile=FILE -o GlobalKnownHostsFile=/dev/null
//	    -o ExitOnForwardFailure=yes -o ServerAliveInterval=5
//	    -o IdentitiesOnly=yes -i KEY -p PORT -l USER ARGS... HOST
//
// With o.Session, -T replaces -N and o.Command follows the host.
// It does not wait for ssh to log in. ssh is killed when the test ends,
// and its stderr written to the test's log if the test failed. StartSSH
// skips the test when ssh is not installed.
func StartSSH(t testing.TB, o SSHOptions) *SSHProc {
	t.Helper()
	Need(t, SSHPath)
	if o.Key == nil {
		t.Fatal("sshtest: StartSSH needs SSHOptions.Key")
	}
	knownHosts := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(knownHosts, []byte(o.KnownHosts), 0o600); err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	args, err := o.CommandArgs(knownHosts)
	if err != nil {
		t.Fatal(err)
	}

	p := &SSHProc{stderr: newOutput(), done: make(chan struct{})}
	p.cmd = exec.Command(SSHPath, args...)
	dieWithTest(p.cmd)
	p.cmd.Stdout = p.stderr
	p.cmd.Stderr = p.stderr
	p.cmd.WaitDelay = 5 * time.Second // in case a child of ssh holds its stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("sshtest: %v", err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("sshtest: the stderr of ssh %s:\n%s", strings.Join(o.Args, " "), p.Stderr())
		}
	})
	return p
}

// CommandArgs returns the arguments StartSSH runs ssh with, program name
// left out, for a program that is not a test (the benchmark command):
// knownHostsFile is where the caller has written o.KnownHosts. o.Key must
// be set.
func (o SSHOptions) CommandArgs(knownHostsFile string) ([]string, error) {
	if o.Key == nil {
		return nil, errors.New("sshtest: SSHOptions.Key is needed to run ssh")
	}
	host, port, err := net.SplitHostPort(o.Addr)
	if err != nil {
		return nil, fmt.Errorf("sshtest: SSHOptions.Addr %q: %w", o.Addr, err)
	}
	if o.User == "" {
		u, err := user.Current()
		if err != nil {
			return nil, fmt.Errorf("sshtest: who runs ssh: %w", err)
		}
		o.User = u.Username
	}
	mode := "-N"
	if o.Session {
		mode = "-T"
	}
	args := []string{
		mode, "-F", "none",
		"-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "UserKnownHostsFile=" + knownHostsFile,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "ExitOnForwardFailure=yes",
		"-o", "ServerAliveInterval=5",
		"-o", "IdentitiesOnly=yes",
		"-i", o.Key.PrivateFile,
		"-p", port,
		"-l", o.User,
	}
	args = append(args, o.Args...)
	args = append(args, host)
	if o.Session {
		args = append(args, o.Command...)
	}
	return args, nil
}

// Pid returns ssh's process id.
func (p *SSHProc) Pid() int { return p.cmd.Process.Pid }

// Stderr returns what ssh has written so far (stdout included, though -N
// writes nothing there).
func (p *SSHProc) Stderr() string {
	s, _ := p.stderr.snapshot()
	return s
}

// Done is closed once ssh has exited.
func (p *SSHProc) Done() <-chan struct{} { return p.done }

// Wait waits for ssh to exit and returns its exit status as exec.Cmd.Wait
// does.
func (p *SSHProc) Wait() error {
	<-p.done
	return p.err
}

// Stop kills ssh and waits for it. It is idempotent and runs when the test
// ends.
func (p *SSHProc) Stop() {
	p.cmd.Process.Kill() // fails harmlessly once ssh has exited
	<-p.done
}

// WaitStderr waits until ssh's stderr contains s. It gives up when ssh exits
// without writing it, when ctx ends, or after 15 seconds.
func (p *SSHProc) WaitStderr(ctx context.Context, s string) error {
	_, err := p.waitStderr(ctx, fmt.Sprintf("%q", s), func(text string) bool {
		return strings.Contains(text, s)
	})
	return err
}

// WaitAllocatedPort waits for the line ssh writes for "-R 0:HOST:PORT",
// "Allocated port N for remote forward to HOST:PORT", and returns N: the
// port the server listens on. It gives up when ssh exits first, when ctx
// ends, or after 15 seconds.
func (p *SSHProc) WaitAllocatedPort(ctx context.Context) (int, error) {
	var port int
	_, err := p.waitStderr(ctx, "the allocated port", func(text string) bool {
		var ok bool
		port, ok = parseAllocatedPort(text)
		return ok
	})
	return port, err
}

func (p *SSHProc) waitStderr(ctx context.Context, what string, found func(string) bool) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	for {
		text, changed := p.stderr.snapshot()
		if found(text) {
			return text, nil
		}
		select {
		case <-changed:
		case <-p.done:
			if text := p.Stderr(); found(text) {
				return text, nil
			}
			return "", fmt.Errorf("sshtest: ssh exited (%v) before writing %s; its stderr:\n%s", p.err, what, p.Stderr())
		case <-ctx.Done():
			return "", fmt.Errorf("sshtest: waiting for ssh to write %s: %w; its stderr:\n%s", what, ctx.Err(), p.Stderr())
		}
	}
}

// parseAllocatedPort finds the first "Allocated port N for remote forward"
// line in ssh's stderr.
func parseAllocatedPort(stderr string) (int, bool) {
	for line := range strings.Lines(stderr) {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "Allocated port ")
		if !ok {
			continue
		}
		num, rest, ok := strings.Cut(rest, " ")
		if !ok || !strings.HasPrefix(rest, "for remote forward") {
			continue
		}
		port, err := strconv.Atoi(num)
		if err != nil || port < 1 || port > 65535 || strconv.Itoa(port) != num {
			continue
		}
		return port, true
	}
	return 0, false
}

// RandomPort returns a random port from 20000 to 60000, for a program that
// must bind its own port, such as ssh -L or sshd. Whoever uses it must try
// another when it is taken, as StartSSHForward does.
func RandomPort() int {
	return 20000 + rand.IntN(40001)
}

// StartSSHForward runs ssh (as StartSSH) with o.Args followed by
// args(port), for a port that ssh or the server must bind itself: for
// example
//
//	func(p int) []string { return []string{"-L", fmt.Sprintf("127.0.0.1:%d:%s", p, target)} }
//
// It waits until ready(port) reports the forward works (nil ready: until
// 127.0.0.1:port accepts a connection, right for -L and for -R on loopback),
// and tries another port when ssh exits because the port is taken ("Address
// already in use", "remote port forwarding failed"): at most 10 ports within
// 15 seconds. It returns ssh and the port.
//
// A port on which something already accepts is never tried, but another
// program may still take one in the moment between that check and ssh's
// bind; a ready that exchanges data end to end rules that out.
// A server that refuses the forward looks like a taken port until the
// tries run out: to test a refusal, use StartSSH and WaitStderr.
func StartSSHForward(t testing.TB, o SSHOptions, args func(port int) []string, ready func(port int) bool) (*SSHProc, int) {
	t.Helper()
	if ready == nil {
		ready = accepts
	}
	const tries = 10
	deadline := time.Now().Add(15 * time.Second)
	var last string
	for range tries {
		if time.Now().After(deadline) {
			break
		}
		port := RandomPort()
		if accepts(port) {
			continue
		}
		oo := o
		oo.Args = append(slices.Clone(o.Args), args(port)...)
		p := StartSSH(t, oo)
		switch err := p.waitForward(port, ready, deadline); {
		case err == nil:
			return p, port
		case errors.Is(err, errPortTaken):
			last = p.Stderr()
			continue
		default:
			t.Fatalf("sshtest: ssh %s: %v", strings.Join(oo.Args, " "), err)
		}
	}
	t.Fatalf("sshtest: ssh found no free port for %q in %d tries or 15 s; its last stderr:\n%s", args(0), tries, last)
	return nil, 0
}

var errPortTaken = errors.New("sshtest: the port is taken")

// waitForward waits until ready(port) or until ssh exits.
func (p *SSHProc) waitForward(port int, ready func(int) bool, deadline time.Time) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-p.done:
			stderr := p.Stderr()
			for _, s := range []string{"Address already in use", "remote port forwarding failed", "cannot listen to port"} {
				if strings.Contains(stderr, s) {
					return errPortTaken
				}
			}
			return fmt.Errorf("ssh exited (%v) before the forward worked; its stderr:\n%s", p.err, stderr)
		case <-tick.C:
		}
		if ready(port) {
			select {
			case <-p.done: // ready answered, but ssh is gone: someone else's port
				continue
			default:
				return nil
			}
		}
		if time.Now().After(deadline) {
			p.Stop()
			return fmt.Errorf("the forward on port %d did not work within 15 s; ssh's stderr:\n%s", port, p.Stderr())
		}
	}
}

// output collects a process's output for readers on other goroutines.
type output struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // closed by the next Write
}

func newOutput() *output {
	return &output{changed: make(chan struct{})}
}

func (o *output) Write(b []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.buf.Write(b)
	close(o.changed)
	o.changed = make(chan struct{})
	return len(b), nil
}

// snapshot returns the output so far and a channel closed when more comes.
func (o *output) snapshot() (string, <-chan struct{}) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String(), o.changed
}
