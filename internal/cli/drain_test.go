package cli

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/ssh/knownhosts"
	"github.com/pinhole-dev/pinhole/internal/sshtest"
	"github.com/pinhole-dev/pinhole/internal/streamtest"
)

// serverProc is the pinhole binary running "server" as a process of its
// own, so that it can be sent signals.
type serverProc struct {
	cmd    *exec.Cmd
	addr   string
	stderr *syncBuffer
	exited chan struct{}
	code   int
}

// startServerProc runs bin server on a loopback port with a host key and
// an authorized_keys of client's key.
func startServerProc(t *testing.T, bin, dir string, client *sshtest.Key, extra ...string) (*serverProc, string) {
	t.Helper()
	hostKeyPath, hostPub := writeKey(t, dir, "host_key")
	authKeys := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authKeys, []byte(client.AuthorizedLine), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"server", "--listen", "127.0.0.1:0", "--host-key", hostKeyPath, "--authorized-keys", authKeys}, extra...)
	cmd := exec.Command(bin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &serverProc{cmd: cmd, stderr: new(syncBuffer), exited: make(chan struct{})}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrc := make(chan string, 1)
	go func() {
		rx := regexp.MustCompile(`listening on (\S+)`)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := rx.FindStringSubmatch(sc.Text()); m != nil {
				addrc <- m[1]
			}
		}
	}()
	go func() {
		cmd.Wait()
		p.code = cmd.ProcessState.ExitCode()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("stderr of pinhole %s:\n%s", strings.Join(args, " "), p.stderr)
		}
	})
	select {
	case p.addr = <-addrc:
	case <-time.After(30 * time.Second):
		t.Fatalf("pinhole server printed no address; stderr:\n%s", p.stderr)
	}
	return p, knownhosts.Line([]string{p.addr}, hostPub) + "\n"
}

// waitExit waits up to d for the process to exit and returns its code.
func (p *serverProc) waitExit(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
		return p.code
	case <-time.After(d):
		t.Fatalf("pinhole server still running %v after the signal; stderr:\n%s", d, p.stderr)
		return -1
	}
}

// drainSetup runs the pinhole binary as a server with extra flags, and a
// stock ssh -N -L through it to an echo; it returns the server and the
// -L port.
func drainSetup(t *testing.T, extra ...string) (*serverProc, int) {
	t.Helper()
	sshtest.Need(t, sshtest.SSHPath)
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildPinhole(t)
	dir := t.TempDir()
	key := sshtest.NewKey(t, dir, "id_client")
	srv, known := startServerProc(t, bin, dir, key, extra...)
	echo := streamtest.NewEcho(t)
	_, port := sshtest.StartSSHForward(t, sshtest.SSHOptions{Addr: srv.addr, Key: key, KnownHosts: known},
		func(p int) []string { return []string{"-L", fmt.Sprintf("127.0.0.1:%d:%s", p, echo.Addr())} }, nil)
	return srv, port
}

// TestServerSIGTERMDrains: SIGTERM to pinhole server in the middle of a
// 64 MiB transfer through a stock OpenSSH ssh -L: the server stops
// accepting at once, the transfer completes byte for byte, and then the
// server exits 0, saying so.
func TestServerSIGTERMDrains(t *testing.T) {
	srv, port := drainSetup(t, "--drain", "60s")

	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const size = 64 << 20
	var back int64
	var sumBack [32]byte
	wrote := make(chan [32]byte, 1)
	started := make(chan struct{})
	go func() {
		var sent int64
		progress := started
		h := sha256.New()
		src := io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{3}), size), h)
		buf := make([]byte, 256<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				if _, werr := conn.Write(buf[:n]); werr != nil {
					break
				}
				if sent += int64(n); sent >= 4<<20 && progress != nil {
					close(progress)
					progress = nil
				}
			}
			if err != nil {
				break
			}
		}
		conn.(*net.TCPConn).CloseWrite()
		var s [32]byte
		copy(s[:], h.Sum(nil))
		wrote <- s
	}()
	readDone := make(chan error, 1)
	go func() {
		h := sha256.New()
		conn.SetReadDeadline(time.Now().Add(2 * time.Minute))
		n, err := io.Copy(h, conn)
		back = n
		copy(sumBack[:], h.Sum(nil))
		readDone <- err
	}()
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("the transfer did not start")
	}
	signaled := time.Now()
	if err := srv.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// New connections are refused during the drain.
	waitRefused(t, srv.addr)
	if err := <-readDone; err != nil {
		t.Fatalf("the transfer in flight at SIGTERM: %v after %d of %d bytes back", err, back, size)
	}
	if s := <-wrote; back != size || s != sumBack {
		t.Fatalf("the transfer in flight at SIGTERM: %d of %d bytes back, checksums equal: %v", back, size, s == sumBack)
	}
	conn.Close()
	if code := srv.waitExit(t, 30*time.Second); code != 0 {
		t.Fatalf("exit code %d after a clean drain, want 0; stderr:\n%s", code, srv.stderr)
	}
	log := srv.stderr.String()
	for _, want := range []string{"shutting down", "every stream finished"} {
		if !strings.Contains(log, want) {
			t.Errorf("no %q line in the server's log:\n%s", want, log)
		}
	}
	t.Logf("drained and exited %v after SIGTERM", time.Since(signaled).Round(time.Millisecond))
}

// waitRefused waits until connections to addr are refused.
func waitRefused(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatalf("%s still accepts 5 s into the drain", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestServerSecondSignalForces: with a stream that will not end, the
// first SIGTERM drains, and a second one closes it at once, exiting 1.
func TestServerSecondSignalForces(t *testing.T) {
	srv, port := drainSetup(t, "--drain", "5m")
	conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	conn.Write([]byte("x")) // the stream is open end to end once the echo is back
	if _, err := io.ReadFull(conn, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	srv.cmd.Process.Signal(syscall.SIGTERM)
	waitRefused(t, srv.addr)
	select {
	case <-srv.exited:
		t.Fatalf("the server exited (%d) with a stream open, 5 minutes before its drain ends", srv.code)
	case <-time.After(500 * time.Millisecond):
	}
	forced := time.Now()
	srv.cmd.Process.Signal(syscall.SIGTERM)
	if code := srv.waitExit(t, 5*time.Second); code != 1 {
		t.Fatalf("exit code %d after a forced stop, want 1", code)
	}
	if d := time.Since(forced); d > 3*time.Second {
		t.Fatalf("the second signal took %v to stop the server", d)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.Read(make([]byte, 1)); err == nil || os.IsTimeout(err) {
		t.Fatalf("the stream is still open after the forced stop (%v)", err)
	}
}
