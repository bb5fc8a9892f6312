package transport

import (
	"context"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// debianPython is the interpreter Debian's Python modules are installed
// for; the first python3 on PATH may be another one without them.
const debianPython = "/usr/bin/python3"

// wsClient is a WebSocket client written with python3-websockets: it
// sends an SSH version line as one binary message, and prints what the
// server sends back, as repr, once it has its version line and the start
// of its key exchange.
const wsClient = `
import asyncio, ssl, sys, websockets
async def main():
    url, ca = sys.argv[1], sys.argv[2]
    ctx = ssl.create_default_context(cafile=ca) if url.startswith("wss:") else None
    async with websockets.connect(url, ssl=ctx, open_timeout=5, server_hostname="localhost" if ctx else None) as ws:
        await ws.send(b"SSH-2.0-python_websockets\r\n")
        got = b""
        while b"\r\n" not in got or len(got) < got.index(b"\r\n") + 6:
            m = await asyncio.wait_for(ws.recv(), 5)
            if not isinstance(m, bytes):
                raise SystemExit("a text message: %r" % m)
            got += m
        line, rest = got.split(b"\r\n", 1)
        print(line.decode())
        # binary packet: uint32 length, byte padding, byte message 20 (KEXINIT)
        print("msg", rest[5])
asyncio.run(main())
`

// TestPythonWebSockets: an independent WebSocket client (python3-websockets,
// Debian's) opens /ssh, plain and over TLS, and does the SSH version
// exchange in binary messages; the server's KEXINIT follows.
func TestPythonWebSockets(t *testing.T) {
	if _, err := os.Stat(debianPython); err != nil {
		t.Skip("skipping: /usr/bin/python3 is missing (Debian packages python3 and python3-websockets; scripts/test installs them as root)")
	}
	if out, err := exec.Command(debianPython, "-c", "import websockets").CombinedOutput(); err != nil {
		t.Skipf("skipping: python3-websockets is not installed (apt-get install python3-websockets; scripts/test does as root): %s", out)
	}
	s := startShared(t, nil)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.cert.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, url := range []string{"ws://" + s.addr + "/ssh", "wss://" + s.addr + "/ssh"} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		out, err := exec.CommandContext(ctx, debianPython, "-c", wsClient, url, ca).CombinedOutput()
		cancel()
		if err != nil {
			t.Errorf("%s: %v\n%s", url, err, out)
			continue
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) != 2 || !strings.HasPrefix(lines[0], "SSH-2.0-pinhole_") || lines[1] != "msg 20" {
			t.Errorf("%s: python3-websockets got\n%s\nwant the server's version line and then KEXINIT (msg 20)", url, out)
		}
	}
}
