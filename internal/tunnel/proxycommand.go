package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ProxyCommandConfig configures ProxyCommandDialer.
type ProxyCommandConfig struct {
	// Command is ssh's ProxyCommand: run by /bin/sh -c as "exec COMMAND",
	// after its tokens are expanded: %h the host and %p the port being
	// dialled, %r User, %n OriginalHost, %% a percent sign.
	Command string
	// User is what %r becomes: the user logging in to the destination.
	User string
	// OriginalHost is what %n becomes: the host as the user typed it,
	// before ssh_config's HostName. "" means the host dialled (%h).
	OriginalHost string
	// Stderr gets the command's stderr, as ssh lets it through to the
	// terminal. nil discards it.
	Stderr io.Writer
	// Env, if set, is the command's environment (exec.Cmd.Env); nil means
	// pinhole's own.
	Env []string
}

// ExpandProxyCommand expands the tokens of command (ProxyCommandConfig's)
// for host, port, user and original host. An unknown token is an error,
// as in ssh.
func ExpandProxyCommand(command, host, port, user, originalHost string) (string, error) {
	if originalHost == "" {
		originalHost = host
	}
	var b strings.Builder
	for i := 0; i < len(command); i++ {
		c := command[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+1 == len(command) {
			return "", errors.New("tunnel: ProxyCommand ends with a lone %; write %% for a percent sign")
		}
		i++
		switch command[i] {
		case '%':
			b.WriteByte('%')
		case 'h':
			b.WriteString(host)
		case 'p':
			b.WriteString(port)
		case 'r':
			b.WriteString(user)
		case 'n':
			b.WriteString(originalHost)
		default:
			return "", fmt.Errorf("tunnel: ProxyCommand: unknown token %%%c; the known ones are %%h %%p %%r %%n and %%%% for a percent sign", command[i])
		}
	}
	return b.String(), nil
}

// ProxyCommandDialer returns a dialer for ClientConfig.Dial that, as
// ssh's ProxyCommand, runs a command for each connection and speaks SSH
// over its stdin and stdout: "pinhole connect -W %h:%p jumphost", or
// "socat - TCP:%h:%p". The conn's Close ends the command: its stdin is
// closed, it gets SIGHUP (as ssh sends it) and, if it has not exited a
// second later, SIGKILL, by its process id; then it is reaped. Read
// reports the command's exit status once it has exited with an error.
func ProxyCommandDialer(cfg ProxyCommandConfig) (DialFunc, error) {
	if strings.TrimSpace(cfg.Command) == "" || cfg.Command == "none" {
		return nil, errors.New("tunnel: ProxyCommand is empty")
	}
	if _, err := ExpandProxyCommand(cfg.Command, "h", "1", "r", "n"); err != nil {
		return nil, err
	}
	return cfg.dial, nil
}

func (cfg ProxyCommandConfig) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("tunnel: ProxyCommand for %q: %w", addr, err)
	}
	command, err := ExpandProxyCommand(cfg.Command, host, port, cfg.User, cfg.OriginalHost)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Two pipes, so each end closes on its own and both are pollable
	// (deadlines work): ours are toCmd's writer and fromCmd's reader.
	cmdIn, toCmd, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("tunnel: ProxyCommand: %w", err)
	}
	fromCmd, cmdOut, err := os.Pipe()
	if err != nil {
		cmdIn.Close()
		toCmd.Close()
		return nil, fmt.Errorf("tunnel: ProxyCommand: %w", err)
	}
	cmd := exec.Command("/bin/sh", "-c", "exec "+command)
	cmd.Stdin = cmdIn
	cmd.Stdout = cmdOut
	cmd.Stderr = cfg.Stderr
	cmd.Env = cfg.Env
	// A child of the command that keeps its stderr open must not keep
	// Close waiting once the command itself has exited.
	cmd.WaitDelay = time.Second
	err = cmd.Start()
	cmdIn.Close()
	cmdOut.Close()
	if err != nil {
		toCmd.Close()
		fromCmd.Close()
		return nil, fmt.Errorf("tunnel: ProxyCommand %q: %w", command, err)
	}
	c := &commandConn{r: fromCmd, w: toCmd, cmd: cmd, command: command, addr: addr, done: make(chan struct{})}
	go func() {
		c.waitErr = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// commandConn is a ProxyCommand's stdout and stdin seen as a net.Conn.
type commandConn struct {
	r, w    *os.File
	cmd     *exec.Cmd
	command string
	addr    string
	done    chan struct{} // closed once the command has exited and been reaped
	waitErr error         // from cmd.Wait, set before done is closed
	once    sync.Once
}

func (c *commandConn) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err == io.EOF {
		// The command closed its stdout, usually by exiting: say why.
		err = c.exitError(err)
	}
	return n, err
}

func (c *commandConn) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	if err != nil {
		// A broken pipe: the command closed its stdin, usually by exiting.
		err = c.exitError(err)
	}
	return n, err
}

// exitError is err, or the command's exit status when it has exited with
// an error, or does so within a moment.
func (c *commandConn) exitError(err error) error {
	select {
	case <-c.done:
	case <-time.After(200 * time.Millisecond):
	}
	select {
	case <-c.done:
		if c.waitErr != nil {
			return fmt.Errorf("tunnel: ProxyCommand %q: %w", c.command, c.waitErr)
		}
	default:
	}
	return err
}

// CloseWrite closes the command's stdin.
func (c *commandConn) CloseWrite() error { return c.w.Close() }

// Close ends the command (ProxyCommandDialer) and waits for it.
func (c *commandConn) Close() error {
	c.once.Do(func() {
		c.w.Close()
		c.r.Close()
		c.cmd.Process.Signal(syscall.SIGHUP) // fails harmlessly once it has exited
		t := time.NewTimer(time.Second)
		defer t.Stop()
		select {
		case <-c.done:
		case <-t.C:
			c.cmd.Process.Kill()
			<-c.done
		}
	})
	return nil
}

func (c *commandConn) LocalAddr() net.Addr  { return commandAddr{"proxycommand:" + c.command} }
func (c *commandConn) RemoteAddr() net.Addr { return commandAddr{c.addr} }

func (c *commandConn) SetDeadline(t time.Time) error {
	if err := c.r.SetReadDeadline(t); err != nil {
		return err
	}
	return c.w.SetWriteDeadline(t)
}
func (c *commandConn) SetReadDeadline(t time.Time) error  { return c.r.SetReadDeadline(t) }
func (c *commandConn) SetWriteDeadline(t time.Time) error { return c.w.SetWriteDeadline(t) }

// commandAddr names a ProxyCommand conn's ends.
type commandAddr struct{ s string }

func (a commandAddr) Network() string { return "proxycommand" }
func (a commandAddr) String() string  { return a.s }
