package cli

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/pinhole-dev/pinhole/internal/ssh"
	"github.com/pinhole-dev/pinhole/internal/streamtest"
)

// browser is a headless Chromium driven through the DevTools protocol
// over its WebSocket: enough of it to load a page, read the DOM with
// Runtime.evaluate, press keys and take a screenshot.
type browser struct {
	t    *testing.T
	ws   *websocket.Conn
	mu   sync.Mutex
	next int
	wait map[int]chan cdpReply
}

type cdpReply struct {
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Message string `json:"message"`
	} `json:"error"`
}

// startBrowser starts chromium headless, or skips the test with a line
// that says why it cannot.
func startBrowser(t *testing.T) *browser {
	t.Helper()
	bin := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		t.Skip("chromium is not installed (Debian package chromium; scripts/test installs it as root): skipping the dashboard's browser test")
	}
	args := []string{"--headless=new", "--disable-gpu", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
		"--disable-background-networking", "--disable-sync", "--metrics-recording-only", "--remote-debugging-port=0",
		"--remote-allow-origins=*", "--user-data-dir=" + t.TempDir(), "--window-size=1280,900", "about:blank"}
	if os.Geteuid() == 0 {
		args = append(args, "--no-sandbox") // Chromium refuses to run as root with its sandbox
	}
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Skipf("chromium cannot start (%v): skipping the dashboard's browser test", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	found := make(chan string, 1)
	var log strings.Builder
	var logMu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stderr)
		re := regexp.MustCompile(`DevTools listening on (ws://\S+)`)
		for sc.Scan() {
			logMu.Lock()
			log.WriteString(sc.Text() + "\n")
			logMu.Unlock()
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
	}()
	var browserURL string
	select {
	case browserURL = <-found:
	case <-time.After(30 * time.Second):
		logMu.Lock()
		defer logMu.Unlock()
		t.Skipf("chromium did not start within 30 s: skipping the dashboard's browser test; its stderr:\n%s", log.String())
	}
	// The page target of about:blank, from the DevTools HTTP endpoint.
	host := strings.TrimPrefix(browserURL, "ws://")
	host = host[:strings.Index(host, "/")]
	var targets []struct {
		Type, WebSocketDebuggerURL string
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get("http://" + host + "/json/list")
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&targets)
			resp.Body.Close()
		}
		if err == nil && len(targets) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no page target from chromium's /json/list: %v", err)
		}
	}
	page := ""
	for _, tg := range targets {
		if tg.Type == "page" {
			page = tg.WebSocketDebuggerURL
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, page, nil)
	if err != nil {
		t.Fatalf("DevTools WebSocket %s: %v", page, err)
	}
	ws.SetReadLimit(64 << 20) // screenshots
	b := &browser{t: t, ws: ws, wait: map[int]chan cdpReply{}}
	go b.read()
	t.Cleanup(func() { ws.CloseNow() })
	return b
}

func (b *browser) read() {
	for {
		_, data, err := b.ws.Read(context.Background())
		if err != nil {
			return
		}
		var m struct {
			ID int `json:"id"`
			cdpReply
		}
		if json.Unmarshal(data, &m) != nil || m.ID == 0 {
			continue // an event
		}
		b.mu.Lock()
		ch := b.wait[m.ID]
		delete(b.wait, m.ID)
		b.mu.Unlock()
		if ch != nil {
			ch <- m.cdpReply
		}
	}
}

// call sends one DevTools command and returns its result.
func (b *browser) call(method string, params any) json.RawMessage {
	b.t.Helper()
	b.mu.Lock()
	b.next++
	id := b.next
	ch := make(chan cdpReply, 1)
	b.wait[id] = ch
	b.mu.Unlock()
	msg, _ := json.Marshal(map[string]any{"id": id, "method": method, "params": params})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.ws.Write(ctx, websocket.MessageText, msg); err != nil {
		b.t.Fatalf("DevTools %s: %v", method, err)
	}
	select {
	case r := <-ch:
		if r.Error != nil {
			b.t.Fatalf("DevTools %s: %s", method, r.Error.Message)
		}
		return r.Result
	case <-ctx.Done():
		b.t.Fatalf("DevTools %s: no answer in 30 s", method)
	}
	return nil
}

// eval runs expr in the page and returns its value as JSON text.
func (b *browser) eval(expr string) string {
	b.t.Helper()
	var r struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	raw := b.call("Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true})
	if err := json.Unmarshal(raw, &r); err != nil {
		b.t.Fatal(err)
	}
	if r.ExceptionDetails != nil {
		b.t.Fatalf("evaluating %s: %s", expr, r.ExceptionDetails.Text)
	}
	return string(r.Result.Value)
}

// waitFor polls expr until it is true, for at most d.
func (b *browser) waitFor(what, expr string, d time.Duration) {
	b.t.Helper()
	for deadline := time.Now().Add(d); ; time.Sleep(100 * time.Millisecond) {
		if b.eval(expr) == "true" {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("the page never showed %s (%s) within %v; its text:\n%s", what, expr, d, b.eval("document.body.innerText"))
		}
	}
}

func (b *browser) key(key, code string, vk int) {
	b.t.Helper()
	for _, typ := range []string{"keyDown", "keyUp"} {
		b.call("Input.dispatchKeyEvent", map[string]any{"type": typ, "key": key, "code": code, "windowsVirtualKeyCode": vk, "nativeVirtualKeyCode": vk})
	}
}

// screenshot writes a PNG of the page to path.
func (b *browser) screenshot(path string) {
	b.t.Helper()
	var r struct {
		Data string `json:"data"`
	}
	if err := json.Unmarshal(b.call("Page.captureScreenshot", map[string]any{"format": "png", "captureBeyondViewport": true}), &r); err != nil {
		b.t.Fatal(err)
	}
	png, err := base64.StdEncoding.DecodeString(r.Data)
	if err != nil || len(png) < 1000 || string(png[1:4]) != "PNG" {
		b.t.Fatalf("screenshot: %d bytes, %v; want a PNG", len(png), err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

func (b *browser) open(url string) {
	b.t.Helper()
	b.call("Page.enable", nil)
	b.call("Page.navigate", map[string]any{"url": url})
	b.waitFor("the page", `document.readyState === "complete" && document.getElementById("live") !== null`, 20*time.Second)
}

// TestDashboardInChromium: pinhole server's dashboard in a real headless
// Chromium: the page loads and goes live (server-sent events), a
// transfer through a forward makes the session's byte count and rate
// change on the page, a connection permitopen refuses and a key that
// fails to log in appear in the refusal list, the keyboard reaches the
// refusals and the pause button, the page fits a phone's width, and a
// screenshot is written as a test artifact (and to
// $PINHOLE_DASHBOARD_SCREENSHOT, which docs/dashboard.png is made with).
// The client's page (pinhole connect --dashboard) shows its tunnel.
func TestDashboardInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a browser")
	}
	b := startBrowser(t)
	echo := streamtest.NewEcho(t)
	dir := t.TempDir()
	identity, pub := writeKey(t, dir, "id_ed25519")
	authKeys := filepath.Join(dir, "authorized_keys")
	line := fmt.Sprintf("permitopen=%q %s alice@laptop\n", echo.Addr(), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))))
	writeFile(t, authKeys, line)
	srv := start(t, "server", "--listen", "127.0.0.1:0", "--host-key", filepath.Join(dir, "host_key"), "--authorized-keys", authKeys,
		"--control", "none", "--dashboard", "127.0.0.1:0")
	dash := srv.waitLine(t, `^pinhole server: dashboard on (http://\S+)`)[1]
	addr := srv.waitLine(t, `listening on (\S+)`)[1]
	w := &world{dir: dir, addr: addr, identity: identity, known: filepath.Join(dir, "known_hosts"), server: srv}
	c := start(t, w.connectArgs("--control", "none", "--dashboard", "127.0.0.1:0", "-L", "0:"+echo.Addr(), "-L", "0:127.0.0.1:9", "-R", "0:"+echo.Addr())...)
	cdash := c.waitLine(t, `^pinhole connect: dashboard on (http://\S+)`)[1]
	local := c.waitLine(t, `-L 0:`+regexp.QuoteMeta(echo.Addr())+`: listening on (\S+),`)[1]
	refused := c.waitLine(t, `-L 0:127\.0\.0\.1:9: listening on (\S+),`)[1]

	b.open(dash)
	b.waitFor("live updates", `document.getElementById("live").textContent === "live"`, 10*time.Second)
	b.waitFor("the session of alice@laptop", `document.querySelector("#sessions tbody").innerText.includes("alice@laptop")`, 10*time.Second)
	toBytes := `Number(document.querySelector('#sessions tbody tr[data-key^="s "] td.to').dataset.bytes)`
	if got := b.eval(toBytes); got != "0" {
		t.Fatalf("the session's bytes before any transfer: %s; want 0", got)
	}
	before := b.eval(`document.querySelector('#sessions tbody tr[data-key^="s "] td.to').textContent`)

	// A transfer through the forward: bytes and rate change on the page.
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 6 {
			echoBytes(t, local, 400_000)
			time.Sleep(300 * time.Millisecond)
		}
	}()
	b.waitFor("a rate above 0", `Number(document.querySelector('#sessions tbody tr[data-key^="s "] td.rate').dataset.rate) > 0`, 15*time.Second)
	<-done
	b.waitFor("the 2,400,000 bytes", toBytes+` === 2400000`, 10*time.Second)
	after := b.eval(`document.querySelector('#sessions tbody tr[data-key^="s "] td.to').textContent`)
	if before == after || !strings.Contains(after, "2.3 MiB") {
		t.Errorf("the byte count on the page went from %s to %s; want it to change to 2.3 MiB", before, after)
	}

	// A refused connection, and a failed login, in the refusal list.
	if conn, err := net.Dial("tcp", refused); err == nil {
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		conn.Read(make([]byte, 1))
		conn.Close()
	}
	if _, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{User: "mallory", Auth: []ssh.AuthMethod{ssh.PublicKeys(newTestSigner(t))},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second}); err == nil {
		t.Fatal("an unknown key logged in")
	}
	b.waitFor("the permitopen refusal", `document.querySelector("#refusals tbody").innerText.includes("permitopen")`, 10*time.Second)
	b.waitFor("the failed login", `document.querySelector("#refusals tbody").innerText.includes("unknown-key")`, 10*time.Second)
	if got := b.eval(`document.querySelector("#refusals tbody").innerText.includes("127.0.0.1:9/tcp")`); got != "true" {
		t.Errorf("the refusal list does not name the refused target 127.0.0.1:9/tcp:\n%s", b.eval(`document.querySelector("#refusals tbody").innerText`))
	}
	b.waitFor("the -R listener", `document.querySelector("#listeners tbody").innerText.includes("localhost:0")`, 10*time.Second)
	b.waitFor("the sparkline drawn", `document.querySelector('#sessions td.rate svg polyline').getAttribute("points").split(" ").length > 3`, 10*time.Second)

	// A session that ends takes its sparkline's history with it: the
	// page keeps no key for a source address that is gone.
	keyPEM, err := os.ReadFile(identity)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	second, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{User: "bob", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	row := `document.querySelector('#sessions tbody tr[data-key="s ` + second.LocalAddr().String() + `"]')`
	kept := `history.has("s ` + second.LocalAddr().String() + `")`
	b.waitFor("the second session", row+` !== null`, 10*time.Second)
	if got := b.eval(kept); got != "true" {
		t.Fatalf("the page keeps no history for the second session's row: %s", got)
	}
	second.Close()
	b.waitFor("the second session gone", row+` === null`, 10*time.Second)
	if got := b.eval(kept); got != "false" {
		t.Errorf("the page still keeps the history of the session that ended (%s): %s", kept, b.eval(`JSON.stringify([...history.keys()])`))
	}

	// The keyboard: Tab reaches the skip link first, Enter jumps to the
	// refusals; the pause button is reached and pressed with keys.
	b.eval(`document.activeElement.blur(); window.scrollTo(0, 0); true`)
	b.key("Tab", "Tab", 9)
	if got := b.eval(`document.activeElement.textContent`); got != `"Skip to refusals"` {
		t.Errorf("the first Tab focuses %s; want the skip link", got)
	}
	b.key("Enter", "Enter", 13)
	b.waitFor("the jump to the refusals", `location.hash === "#events"`, 5*time.Second)
	b.eval(`document.getElementById("pause").focus(); true`)
	b.key(" ", "Space", 32)
	b.waitFor("the pause pressed", `document.getElementById("pause").getAttribute("aria-pressed") === "true"`, 5*time.Second)
	b.key(" ", "Space", 32)
	b.waitFor("the pause released", `document.getElementById("pause").getAttribute("aria-pressed") === "false"`, 5*time.Second)
	b.eval(`location.hash = ""; document.activeElement.blur(); window.scrollTo(0, 0); true`)

	// The screenshot while a steady transfer runs, so that rates and
	// sparklines show.
	steady := make(chan struct{})
	go func() {
		defer close(steady)
		for range 40 {
			echoBytes(t, local, 150_000)
			time.Sleep(100 * time.Millisecond)
		}
	}()
	b.waitFor("a steady rate drawn", `document.querySelector('#sessions td.rate svg polyline').getAttribute("points").split(" ").length > 8 && Number(document.querySelector('#sessions tbody tr[data-key^="s "] td.rate').dataset.rate) > 0`, 20*time.Second)
	shot := filepath.Join(t.ArtifactDir(), "dashboard.png")
	b.screenshot(shot)
	t.Logf("screenshot: %s", shot)
	if p := os.Getenv("PINHOLE_DASHBOARD_SCREENSHOT"); p != "" {
		b.screenshot(p)
		t.Logf("screenshot also written to %s", p)
	}

	<-steady
	// A phone: 390 px wide, the page itself does not scroll sideways
	// (wide tables scroll in their own boxes).
	b.call("Emulation.setDeviceMetricsOverride", map[string]any{"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true})
	b.waitFor("the phone layout", `document.documentElement.scrollWidth <= window.innerWidth + 1`, 5*time.Second)
	b.screenshot(filepath.Join(t.ArtifactDir(), "dashboard-phone.png"))
	b.call("Emulation.clearDeviceMetricsOverride", nil)

	// The client's page: its tunnel and forwards, their states and bytes.
	b.open(cdash)
	b.waitFor("the client's tunnel", `document.getElementById("title").textContent === "pinhole client" && document.querySelector("#tunnels tbody").innerText.includes("-L 0:`+echo.Addr()+`")`, 10*time.Second)
	fwd := fmt.Sprintf(`document.querySelector('#tunnels tr[data-key$="-L 0:%s"] td.to').dataset.bytes`, echo.Addr())
	if got := b.eval(fwd); got != `"8400000"` {
		t.Errorf("the client's forward shows %s bytes to the target; want the 8400000 sent", got)
	}
	b.waitFor("the client's refusal", `document.querySelector("#refusals tbody").innerText.includes("server-refused")`, 10*time.Second)
	b.screenshot(filepath.Join(t.ArtifactDir(), "dashboard-client.png"))
}
