package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/pinhole-dev/pinhole/internal/sshtest"
	"github.com/pinhole-dev/pinhole/internal/streamtest"
)

// scrape GETs http://addr/metrics (with token as a bearer token, if not
// "") and returns the body, failing the test on anything but 200.
func scrape(t *testing.T, addr, token string) []byte {
	t.Helper()
	body, code := scrapeCode(t, addr, token)
	if code != http.StatusOK {
		t.Fatalf("GET http://%s/metrics: %d %s", addr, code, body)
	}
	return body
}

func scrapeCode(t *testing.T, addr, token string) ([]byte, int) {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+addr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return body, res.StatusCode
}

// families parses a scrape in the text exposition format.
func families(t *testing.T, body []byte) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("the scrape does not parse as Prometheus's text format: %v\n%s", err, body)
	}
	return fams
}

// value is the value of the series of name whose labels include every
// pair of want (name, value, name, value...); the test fails if there is
// not exactly one.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want ...string) float64 {
	t.Helper()
	f := fams[name]
	if f == nil {
		t.Fatalf("no metric %s in the scrape", name)
	}
	var found []float64
	for _, m := range f.Metric {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		ok := true
		for i := 0; i+1 < len(want); i += 2 {
			if labels[want[i]] != want[i+1] {
				ok = false
			}
		}
		if !ok {
			continue
		}
		switch {
		case m.Counter != nil:
			found = append(found, m.Counter.GetValue())
		case m.Gauge != nil:
			found = append(found, m.Gauge.GetValue())
		case m.Histogram != nil:
			found = append(found, float64(m.Histogram.GetSampleCount()))
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s%v: %d series, want 1", name, want, len(found))
	}
	return found[0]
}

// promtool runs promtool check metrics on a scrape, skipping where the
// Debian package prometheus is not installed.
func promtool(t *testing.T, what string, body []byte) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Logf("SKIP promtool check metrics of %s: promtool not found (Debian package prometheus; scripts/test installs it as root)", what)
		return
	}
	if !bytes.Contains(body, []byte("pinhole_build_info")) {
		t.Fatalf("%s: no pinhole metrics to check (promtool passes an empty input):\n%s", what, body)
	}
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("promtool check metrics on the scrape of %s: %v\n%s", what, err, out)
	}
}

// TestMetricsCountTheBytes: a server and a client, both with --metrics,
// carry a transfer of a known size through a -L forward; the byte
// counters of each end move by exactly the bytes sent each way, and
// promtool finds nothing wrong with either scrape.
func TestMetricsCountTheBytes(t *testing.T) {
	target := streamtest.NewTarget(t)
	w := newWorldWith(t, "", "--metrics", "127.0.0.1:0")
	c := start(t, w.connectArgs("--metrics", "127.0.0.1:0", "-L", fmt.Sprintf("0:127.0.0.1:%d", target.Port()))...)
	clientMetrics := c.waitLine(t, `^pinhole connect: metrics on http://(\S+)/metrics$`)[1]
	local := c.waitLine(t, `-L (\S+): listening on (\S+),`)
	forward, addr := "-L "+local[1], local[2]

	beforeC, beforeS := families(t, scrape(t, clientMetrics, "")), families(t, scrape(t, w.metrics, ""))
	const send, recv = 1_234_567, 2_345_678
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := streamtest.Exchange(ctx, conn, 7, send, recv); err != nil {
		t.Fatal(err)
	}
	conn.Close()
	// What crossed the forward: streamtest's 16-byte header and the
	// request one way, the reply and its 32-byte SHA-256 the other.
	wantTo, wantFrom := float64(16+send), float64(recv+32)

	// The stream ends at each end a moment after the exchange: wait for
	// both to count it closed, then read the counters.
	var afterC, afterS map[string]*dto.MetricFamily
	var bodyC, bodyS []byte
	deadline := time.Now().Add(10 * time.Second)
	for {
		bodyC, bodyS = scrape(t, clientMetrics, ""), scrape(t, w.metrics, "")
		afterC, afterS = families(t, bodyC), families(t, bodyS)
		if value(t, afterC, "pinhole_forward_streams_open", "forward", forward) == 0 && value(t, afterS, "pinhole_server_streams_open") == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the stream is still open at one end 10 s after the exchange")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, tc := range []struct {
		end          string
		before, then map[string]*dto.MetricFamily
		name         string
		labels       []string
	}{
		{"client forward", beforeC, afterC, "pinhole_forward_bytes_total", []string{"forward", forward}},
		{"client tunnel", beforeC, afterC, "pinhole_tunnel_bytes_total", nil},
		{"server", beforeS, afterS, "pinhole_server_bytes_total", nil},
	} {
		for _, d := range []struct {
			direction string
			want      float64
		}{{"to_target", wantTo}, {"from_target", wantFrom}} {
			labels := append(append([]string(nil), tc.labels...), "direction", d.direction)
			if got := value(t, tc.then, tc.name, labels...) - value(t, tc.before, tc.name, labels...); got != d.want {
				t.Errorf("%s: %s{direction=%q} moved by %.0f, want %.0f (the bytes the transfer sent)", tc.end, tc.name, d.direction, got, d.want)
			}
		}
	}
	if got := value(t, afterC, "pinhole_forward_streams_total", "forward", forward) - value(t, beforeC, "pinhole_forward_streams_total", "forward", forward); got != 1 {
		t.Errorf("client: pinhole_forward_streams_total moved by %.0f, want 1", got)
	}
	if got := value(t, afterS, "pinhole_ssh_sessions", "state", "authenticated"); got != 1 {
		t.Errorf("server: pinhole_ssh_sessions{state=authenticated} = %.0f, want 1", got)
	}
	if got := value(t, afterC, "pinhole_tunnel_state", "state", "up"); got != 1 {
		t.Errorf("client: pinhole_tunnel_state{state=up} = %.0f, want 1", got)
	}
	promtool(t, "pinhole connect", bodyC)
	promtool(t, "pinhole server", bodyS)
}

// TestMetricsKeepaliveRTT: keepalives the server answers land in the
// client's round-trip histogram.
func TestMetricsKeepaliveRTT(t *testing.T) {
	w := newWorld(t, "")
	// connectArgs asks for a keepalive every second; an idle tunnel sends
	// them (data in the interval would stand in for one).
	c := start(t, w.connectArgs("--metrics", "127.0.0.1:0", "-L", "0:127.0.0.1:9")...)
	addr := c.waitLine(t, `^pinhole connect: metrics on http://(\S+)/metrics$`)[1]
	c.waitLine(t, `connected to`)
	deadline := time.Now().Add(15 * time.Second)
	for {
		fams := families(t, scrape(t, addr, ""))
		if value(t, fams, "pinhole_keepalive_rtt_seconds") >= 2 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("fewer than 2 keepalive round trips counted in 15 s with --keepalive 1s")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestMetricsAddress: --metrics on an address other than loopback needs
// a token or --allow-open-metrics, said before anything starts; with a
// token, a scrape without it gets 401.
func TestMetricsAddress(t *testing.T) {
	dir := t.TempDir()
	base := []string{"server", "--listen", "127.0.0.1:0", "--host-key", filepath.Join(dir, "hk"), "--authorized-keys", filepath.Join(dir, "ak")}
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"everywhere", []string{"--metrics", ":0"}, []string{"reachable from other machines", "--metrics-token-file", "--allow-open-metrics"}},
		{"any", []string{"--metrics", "0.0.0.0:0"}, []string{"--metrics-token-file"}},
		{"noport", []string{"--metrics", "127.0.0.1"}, []string{"want host:port"}},
		{"tokenalone", []string{"--metrics-token", "x"}, []string{"go with --metrics ADDR"}},
		{"both", []string{"--metrics", "127.0.0.1:0", "--metrics-token", "x", "--metrics-token-file", filepath.Join(dir, "ak")}, []string{"give one of them"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := run(t, append(append([]string(nil), base...), tc.args...)...)
			if code != 1 {
				t.Errorf("exit code %d, want 1", code)
			}
			for _, want := range tc.want {
				if !strings.Contains(errOut, want) {
					t.Errorf("stderr %q does not say %q", errOut, want)
				}
			}
			if strings.Contains(out, "listening on") {
				t.Errorf("the server started: %q", out)
			}
		})
	}
	t.Run("stdio", func(t *testing.T) {
		// connect -W's stdout is the stream: no line about metrics there.
		code, out, errOut := run(t, "connect", "-F", "none", "-W", "127.0.0.1:22", "--metrics", "127.0.0.1:0", "127.0.0.1")
		if code != 1 || !strings.Contains(errOut, "drop --metrics") || out != "" {
			t.Errorf("connect -W --metrics: exit %d, stdout %q, stderr %q; want 1, nothing, and drop --metrics", code, out, errOut)
		}
	})
	t.Run("token", func(t *testing.T) {
		tokenFile := filepath.Join(dir, "token")
		if err := os.WriteFile(tokenFile, []byte("s3cret-scrape-token\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		srv := start(t, append(append([]string(nil), base...), "--metrics", "127.0.0.1:0", "--metrics-token-file", tokenFile)...)
		addr := srv.waitLine(t, `metrics on http://(\S+)/metrics \(bearer token required\)`)[1]
		for _, token := range []string{"", "wrong"} {
			if body, code := scrapeCode(t, addr, token); code != http.StatusUnauthorized {
				t.Errorf("token %q: %d, want 401\n%s", token, code, body)
			}
		}
		families(t, scrape(t, addr, "s3cret-scrape-token"))
	})
	t.Run("rebinding", func(t *testing.T) {
		// Without a token, a Host that is not loopback (a page of
		// another site whose name resolves to 127.0.0.1) gets 403.
		srv := start(t, append(append([]string(nil), base...), "--metrics", "127.0.0.1:0")...)
		addr := srv.waitLine(t, `metrics on http://(\S+)/metrics`)[1]
		_, port, _ := net.SplitHostPort(addr)
		for host, want := range map[string]int{
			"evil.example:" + port: http.StatusForbidden,
			"localhost:" + port:    http.StatusOK,
			addr:                   http.StatusOK,
			"[::1]:" + port:        http.StatusOK,
		} {
			req, err := http.NewRequest("GET", "http://"+addr+"/metrics", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = host
			res, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != want {
				t.Errorf("Host %s: %d, want %d", host, res.StatusCode, want)
			}
		}
	})
}

// stopAndRead ends p and returns everything it wrote to stderr and the
// stdout lines nobody read yet, once Main has returned.
func (p *proc) stopAndRead(t *testing.T) string {
	t.Helper()
	p.cancel()
	var out strings.Builder
	deadline := time.After(20 * time.Second)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				return out.String() + p.stderr.String()
			}
			out.WriteString(line + "\n")
		case <-deadline:
			t.Fatal("the process did not stop within 20 s")
		}
	}
}

// TestLogsKeepSecrets: a run at --log-level debug, in both log formats,
// that uses a proxy with a password (right and wrong), a -D proxy with
// --proxy-auth (a right and a wrong password, from curl) and metrics
// tokens (right and wrong): no secret is in any line any of them wrote.
func TestLogsKeepSecrets(t *testing.T) {
	const (
		hopPass     = "hop-Pa55word-one"
		wrongHop    = "hop-Wr0ng-two"
		socksPass   = "socks-Pa55word-three"
		wrongSocks  = "socks-Wr0ng-four"
		serverToken = "server-T0ken-five"
		clientToken = "client-T0ken-six"
		wrongToken  = "wr0ng-T0ken-seven"
	)
	secrets := []string{hopPass, wrongHop, socksPass, wrongSocks, serverToken, clientToken, wrongToken}
	web := http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") })}
	webLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go web.Serve(webLn)
	defer web.Close()

	w := newWorldWith(t, "", "--log-level", "debug", "--log-format", "json", "--metrics", "127.0.0.1:0", "--metrics-token", serverToken)
	hop := start(t, "proxy", "--listen", "127.0.0.1:0", "--proxy-auth", "hop:"+hopPass, "--log-level", "debug")
	hopAddr := hop.waitLine(t, `listening on (\S+)`)[1]
	tokenFile := filepath.Join(w.dir, "metrics-token")
	if err := os.WriteFile(tokenFile, []byte(clientToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := start(t, w.connectArgs("--log-level", "debug", "--proxy", "socks5://hop:"+hopPass+"@"+hopAddr,
		"--metrics", "127.0.0.1:0", "--metrics-token-file", tokenFile, "-D", "127.0.0.1:0", "--proxy-auth", "sock:"+socksPass)...)
	clientMetrics := c.waitLine(t, `metrics on http://(\S+)/metrics`)[1]
	socksAddr := c.waitLine(t, `-D \S+: SOCKS4/4a/5 and HTTP proxy on (\S+),`)[1]

	// The wrong hop password: connect fails, and says so without it.
	code, out, errOut := run(t, w.connectArgs("--log-level", "debug", "--proxy", "socks5://hop:"+wrongHop+"@"+hopAddr, "-L", "0:127.0.0.1:9")...)
	if code == 0 {
		t.Errorf("connect through the proxy with a wrong password exited 0")
	}
	logs := out + errOut

	for _, token := range []string{"", wrongToken} {
		for _, addr := range []string{w.metrics, clientMetrics} {
			if _, code := scrapeCode(t, addr, token); code != http.StatusUnauthorized {
				t.Errorf("scrape of %s with token %q: %d, want 401", addr, token, code)
			}
		}
	}
	scrape(t, w.metrics, serverToken)
	scrape(t, clientMetrics, clientToken)

	if curl, err := exec.LookPath("curl"); err != nil {
		t.Logf("SKIP the -D part: curl not found (Debian package curl)")
	} else {
		url := "http://" + webLn.Addr().String() + "/"
		for _, tc := range []struct {
			pass string
			ok   bool
		}{{wrongSocks, false}, {socksPass, true}} {
			cmd := exec.Command(curl, "-sS", "--max-time", "10", "--socks5", socksAddr, "--proxy-user", "sock:"+tc.pass, url)
			got, err := cmd.CombinedOutput()
			if tc.ok && (err != nil || string(got) != "hello") {
				t.Errorf("curl through -D with the right password: %v %q", err, got)
			}
			if !tc.ok && err == nil {
				t.Errorf("curl through -D with a wrong password got through: %q", got)
			}
		}
	}

	logs += c.stopAndRead(t) + hop.stopAndRead(t) + w.server.stopAndRead(t)
	for _, want := range []string{`"level":"DEBUG"`, "level=DEBUG"} {
		if !strings.Contains(logs, want) {
			t.Errorf("no %s line: the run did not log at debug level, so it proves little", want)
		}
	}
	for _, s := range secrets {
		if strings.Contains(logs, s) {
			for _, line := range strings.Split(logs, "\n") {
				if strings.Contains(line, s) {
					t.Errorf("a secret is in the logs: %s", line)
				}
			}
		}
	}
}

// TestMetricsRefusals: a stream permitopen forbids counts as a refusal
// by reason at both ends, and a key not in authorized_keys as an
// authentication failure on the server.
func TestMetricsRefusals(t *testing.T) {
	target := streamtest.NewTarget(t)
	w := newWorldWith(t, `permitopen="127.0.0.1:1"`, "--metrics", "127.0.0.1:0")
	c := start(t, w.connectArgs("--metrics", "127.0.0.1:0", "-L", fmt.Sprintf("0:127.0.0.1:%d", target.Port()))...)
	clientMetrics := c.waitLine(t, `metrics on http://(\S+)/metrics`)[1]
	local := c.waitLine(t, `-L (\S+): listening on (\S+),`)
	conn, err := net.Dial("tcp", local[2])
	if err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := conn.Read(make([]byte, 1)); err == nil {
		t.Fatalf("read %d bytes through a forward permitopen forbids", n)
	}
	conn.Close()

	other, _ := writeKey(t, w.dir, "stranger")
	args := w.connectArgs("-L", "0:127.0.0.1:9")
	for i, a := range args {
		if a == w.identity {
			args[i] = other
		}
	}
	if code, _, _ := run(t, args...); code == 0 {
		t.Fatal("a key not in authorized_keys logged in")
	}

	deadline := time.Now().Add(10 * time.Second)
	for {
		cl, sv := families(t, scrape(t, clientMetrics, "")), families(t, scrape(t, w.metrics, ""))
		got := []float64{
			value(t, sv, "pinhole_refusals_total", "reason", "permitopen"),
			value(t, sv, "pinhole_auth_failures_total", "reason", "unknown-key"),
			value(t, cl, "pinhole_refusals_total", "reason", "server-refused"),
			value(t, cl, "pinhole_forward_streams_refused_total", "forward", "-L "+local[1]),
		}
		if got[0] == 1 && got[1] >= 1 && got[2] == 1 && got[3] == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("server permitopen refusals %v, unknown-key failures %v; client server-refused %v, forward refused %v; want 1, at least 1, 1, 1", got[0], got[1], got[2], got[3])
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestMetricsHTTPNames: requests to a public name (a stock ssh -R
// myapp:80) count by name and status class, a Host no tunnel holds under
// the name "", and the scrape passes promtool with the histogram in it.
func TestMetricsHTTPNames(t *testing.T) {
	n := startStockNames(t, "--metrics", "127.0.0.1:0")
	n.waitLog(`msg="metrics: serving" laddr=`)
	metricsAddr := regexp.MustCompile(`msg="metrics: serving" laddr=(\S+)`).FindStringSubmatch(n.srv.stderr.String())[1]
	service := headerEcho(t)
	sshtest.StartSSH(t, sshtest.SSHOptions{Addr: n.addr, User: "tester", Key: n.key, KnownHosts: n.known,
		Args: []string{"-R", fmt.Sprintf("myapp:80:127.0.0.1:%d", service)}})
	n.waitLog(`laddr=https://myapp.example.test:` + n.port)
	for range 2 {
		if code, body := curlGet(t, "https://myapp.example.test/", n.port, n.cert.CertFile); code != "200" {
			t.Fatalf("https://myapp: %s %q", code, body)
		}
	}
	if code, _ := curlGet(t, "http://nobody.example.test/", n.port, n.cert.CertFile); code != "404" {
		t.Fatalf("a name nobody holds: %s, want 404", code)
	}
	body := scrape(t, metricsAddr, "")
	fams := families(t, body)
	if got := value(t, fams, "pinhole_http_requests_total", "name", "myapp", "code", "2xx"); got != 2 {
		t.Errorf(`pinhole_http_requests_total{name="myapp",code="2xx"} = %v, want 2`, got)
	}
	if got := value(t, fams, "pinhole_http_requests_total", "name", "", "code", "4xx"); got != 1 {
		t.Errorf(`pinhole_http_requests_total{name="",code="4xx"} = %v, want 1`, got)
	}
	if got := value(t, fams, "pinhole_http_request_duration_seconds", "name", "myapp"); got != 2 {
		t.Errorf(`pinhole_http_request_duration_seconds{name="myapp"} has %v observations, want 2`, got)
	}
	promtool(t, "pinhole server --domain", body)
}
