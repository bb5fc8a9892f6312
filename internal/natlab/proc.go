package natlab

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Proc is a program running in one of the lab's namespaces.
type Proc struct {
	name   string
	proc   *os.Process
	stdout *output
	stderr *output
	done   chan struct{}    // closed once the program has exited and been reaped
	err    error            // from Wait, set before done is closed
	state  *os.ProcessState // set before done is closed
}

// Start runs name in namespace ns with its stdout and stderr collected, and
// ends it (SIGKILL, by its pid) when the test ends, writing both to the
// test's log if the test failed.
func (l *Lab) Start(t testing.TB, ns, name string, args ...string) *Proc {
	t.Helper()
	return l.start(t, ns, true, name, args...)
}

// start is Start; logOnFailure false leaves the logging to the caller.
func (l *Lab) start(t testing.TB, ns string, logOnFailure bool, name string, args ...string) *Proc {
	t.Helper()
	cmd := l.Command(context.Background(), ns, name, args...)
	p := &Proc{name: name, stdout: newOutput(), stderr: newOutput(), done: make(chan struct{})}
	cmd.Stdout = p.stdout
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("natlab: starting %s in %s: %v", name, ns, err)
	}
	p.proc = cmd.Process
	go func() {
		p.err = cmd.Wait()
		p.state = cmd.ProcessState
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Stop()
		if logOnFailure && t.Failed() {
			t.Logf("natlab: %s %s in %s, exit %v; its stdout:\n%s\nits stderr:\n%s",
				name, strings.Join(args, " "), ns, p.err, p.Stdout(), lastLines(p.Stderr(), 60))
		}
	})
	return p
}

// Pid returns the program's process id.
func (p *Proc) Pid() int { return p.proc.Pid }

// Stdout returns what the program has written to stdout so far.
func (p *Proc) Stdout() string { s, _ := p.stdout.snapshot(); return s }

// Stderr returns what the program has written to stderr so far.
func (p *Proc) Stderr() string { s, _ := p.stderr.snapshot(); return s }

// Done is closed once the program has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Signal sends sig to the program (by its pid). It fails once the program
// has exited.
func (p *Proc) Signal(sig os.Signal) error { return p.proc.Signal(sig) }

// Wait waits for the program to exit and returns its exit status as
// exec.Cmd.Wait does: nil for exit 0.
func (p *Proc) Wait() error {
	<-p.done
	return p.err
}

// ExitCode waits for the program to exit and returns its exit code, or -1
// if a signal ended it.
func (p *Proc) ExitCode() int {
	<-p.done
	return p.state.ExitCode()
}

// Stop kills the program and waits for it. It is idempotent and runs when
// the test ends.
func (p *Proc) Stop() {
	p.proc.Kill() // fails harmlessly once the program has exited
	<-p.done
}

// Terminate sends SIGTERM and waits up to grace for the program to exit,
// then kills it. It returns whether the program exited by itself.
func (p *Proc) Terminate(grace time.Duration) bool {
	p.proc.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return true
	case <-time.After(grace):
		p.Stop()
		return false
	}
}

// WaitStdout waits for a whole line of stdout that matches the regular
// expression re and returns what regexp.FindStringSubmatch returns for it:
// the text re matched, then its groups. A line counts only once it is
// whole, so `^\S+$` is not fooled by a line half written. It gives up
// when the program exits without writing one, or when ctx ends.
func (p *Proc) WaitStdout(ctx context.Context, re string) ([]string, error) {
	return p.wait(ctx, p.stdout, "stdout", re)
}

// WaitStderr is WaitStdout for stderr.
func (p *Proc) WaitStderr(ctx context.Context, re string) ([]string, error) {
	return p.wait(ctx, p.stderr, "stderr", re)
}

func (p *Proc) wait(ctx context.Context, o *output, stream, re string) ([]string, error) {
	rx, err := regexp.Compile(re)
	if err != nil {
		return nil, fmt.Errorf("natlab: %w", err)
	}
	for {
		text, changed := o.snapshot()
		if m := matchLine(rx, text, false); m != nil {
			return m, nil
		}
		select {
		case <-changed:
		case <-p.done:
			text, _ := o.snapshot()
			if m := matchLine(rx, text, true); m != nil {
				return m, nil
			}
			return nil, fmt.Errorf("natlab: %s exited (%v) before writing a line matching %q to %s; its stdout:\n%s\nits stderr:\n%s",
				p.name, p.err, re, stream, p.Stdout(), lastLines(p.Stderr(), 40))
		case <-ctx.Done():
			return nil, fmt.Errorf("natlab: waiting for %s to write a line matching %q to %s: %w; its stdout:\n%s\nits stderr:\n%s",
				p.name, re, stream, ctx.Err(), p.Stdout(), lastLines(p.Stderr(), 40))
		}
	}
}

// matchLine returns the submatches of the first line of text that matches
// rx. Only whole lines count, so that a line is not matched while half
// written, unless all is set (the program has exited).
func matchLine(rx *regexp.Regexp, text string, all bool) []string {
	for line := range strings.Lines(text) {
		if !all && !strings.HasSuffix(line, "\n") {
			break
		}
		if m := rx.FindStringSubmatch(strings.TrimRight(line, "\r\n")); m != nil {
			return m
		}
	}
	return nil
}

// output collects a program's output for readers on other goroutines.
type output struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{} // closed by the next Write
}

func newOutput() *output { return &output{changed: make(chan struct{})} }

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
