package tunnel_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/observe"
	"github.com/pinhole-dev/pinhole/internal/spec"
	"github.com/pinhole-dev/pinhole/internal/ssh"
	"github.com/pinhole-dev/pinhole/internal/streamtest"
	"github.com/pinhole-dev/pinhole/internal/tunnel"
)

// TestSnapshots: a server's and a client's Snapshot show the session and
// the tunnel with their forwards, the exact bytes a transfer moved, and
// the refusals and the authentication failure where they happened, with
// their reasons; the JSON has the documented keys.
func TestSnapshots(t *testing.T) {
	echo := streamtest.NewEcho(t)
	other := streamtest.NewEcho(t)
	clientKey := newSigner(t)
	opts := fmt.Sprintf(`permitopen="%s",permitlisten="localhost:*"`, echo.Addr())
	line := strings.TrimSuffix(authorizedLine(opts, clientKey.PublicKey()), "\n") + " laptop@home\n"
	srv := startServer(t, nil, newSigner(t), keySet(t, line))
	cfg := clientConfig(t, srv.addr, srv.hostKey.PublicKey(), clientKey)
	cfg.Name = "office"
	cfg.Local = []spec.Forward{
		mustParse(t, spec.Local, "127.0.0.1:0:"+echo.Addr()),
		mustParse(t, spec.Local, "127.0.0.1:0:"+other.Addr()),
	}
	cfg.Remote = []spec.Forward{
		mustParse(t, spec.Remote, "0:"+echo.Addr()),
		mustParse(t, spec.Remote, "*:0:"+echo.Addr()),
	}
	c := dialClient(t, cfg)
	fws := c.Forwardings()

	msg := bytes.Repeat([]byte("pinhole "), 8192) // 64 KiB
	if err := echoThrough(fws[0].Addr().String(), msg); err != nil {
		t.Fatal(err)
	}
	if err := echoThrough(fws[1].Addr().String(), msg); err == nil {
		t.Fatal("a -L outside permitopen echoed; want it refused")
	}
	// The remote one, from its public side.
	if err := echoThrough(fws[2].Addr().String(), msg[:1000]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "streams to end", func() bool { return srv.srv.Stats().StreamsOpen == 0 && c.Stats().StreamsOpen == 0 })

	// An unknown key fails to log in.
	bad := clientConfig(t, srv.addr, srv.hostKey.PublicKey(), newSigner(t))
	if _, err := tunnel.Dial(context.Background(), bad); err == nil {
		t.Fatal("an unknown key logged in")
	}

	ss := srv.srv.Snapshot()
	if ss.Role != "server" || len(ss.Sessions) != 1 {
		t.Fatalf("server snapshot: role %q, %d sessions; want server, 1", ss.Role, len(ss.Sessions))
	}
	sess := ss.Sessions[0]
	if sess.Key != ssh.FingerprintSHA256(clientKey.PublicKey()) || sess.Comment != "laptop@home" || sess.User != "tester" || sess.State != "up" {
		t.Errorf("session %+v; want the client's key, comment laptop@home, user tester, up", sess)
	}
	if _, err := net.ResolveTCPAddr("tcp", sess.Source); err != nil || sess.Since.IsZero() {
		t.Errorf("session source %q since %v; want an address and a time", sess.Source, sess.Since)
	}
	// The server carried 64 KiB each way for the -L and 1000 for the -R.
	want := int64(len(msg) + 1000)
	if sess.BytesToTarget != want || sess.BytesFromTarget != want || sess.StreamsTotal != 2 || sess.StreamsRefused != 1 {
		t.Errorf("session counters %+v; want %d bytes each way, 2 streams, 1 refused", sess.Counters, want)
	}
	if ss.Totals.BytesToTarget != want || ss.Totals.StreamsRefused != 1 {
		t.Errorf("server totals %+v; want those of its one session", ss.Totals)
	}
	if len(sess.Listeners) != 1 || sess.Listeners[0].Proto != "tcp" || !strings.HasSuffix(sess.Listeners[0].Addr, fmt.Sprint(fws[2].Addr().Port())) {
		t.Errorf("session listeners %+v; want the one -R on port %d", sess.Listeners, fws[2].Addr().Port())
	}
	for _, r := range []observe.Reason{observe.RefusedPermitOpen, observe.RefusedPermitListen, observe.AuthUnknownKey} {
		// permitlisten: the client asks again with backoff, and each
		// refusal counts.
		if n := ss.Counts[r]; n != 1 && (r != observe.RefusedPermitListen || n < 1) {
			t.Errorf("server count of %s: %d; want 1 (counts %v)", r, n, ss.Counts)
		}
		if !hasEvent(ss.Events, r) {
			t.Errorf("server events %+v: none for %s", ss.Events, r)
		}
	}
	for _, e := range ss.Events {
		if e.Reason == observe.AuthUnknownKey && (e.Kind != "auth" || e.Peer == "") {
			t.Errorf("auth failure event %+v; want kind auth and the peer", e)
		}
		if e.Reason == observe.RefusedPermitOpen && (e.Tunnel != sess.Key || e.Forward != other.Addr()+"/tcp" || e.Kind != "refused") {
			t.Errorf("permitopen event %+v; want the key and the target %s/tcp", e, other.Addr())
		}
	}

	ts := c.Snapshot()
	if ts.Name != "office" || ts.Server != srv.addr || ts.State != "up" || len(ts.Forwards) != 4 {
		t.Fatalf("tunnel snapshot %+v; want office, %s, up, 4 forwards", ts, srv.addr)
	}
	f0, f1, f2, f3 := ts.Forwards[0], ts.Forwards[1], ts.Forwards[2], ts.Forwards[3]
	if f0.Kind != "local" || f0.Addr != fws[0].Addr().String() || f0.State != "up" || f0.BytesToTarget != int64(len(msg)) || f0.BytesFromTarget != int64(len(msg)) || f0.StreamsTotal != 1 {
		t.Errorf("first -L %+v; want bound, up, 64 KiB each way, 1 stream", f0)
	}
	if f1.StreamsRefused != 1 || f1.StreamsTotal != 0 {
		t.Errorf("refused -L %+v; want 1 refused, none opened", f1)
	}
	if f2.Kind != "remote" || f2.State != "up" || f2.BytesToTarget != 1000 || f2.Addr == "" {
		t.Errorf("-R %+v; want up, bound, 1000 bytes to the target", f2)
	}
	if f3.State != "connecting" || !strings.Contains(f3.LastError, "not allowed") || f3.Addr != "" {
		t.Errorf("refused -R %+v; want connecting, with the server's refusal, unbound", f3)
	}
	if ts.BytesToTarget != int64(len(msg)+1000) || ts.StreamsRefused != 1 {
		t.Errorf("tunnel counters %+v; want the sum of its forwards", ts.Counters)
	}
	cev := c.Events().Events()
	if !hasEvent(cev, observe.RefusedByServer) || !hasEvent(cev, observe.RefusedRemote) {
		t.Errorf("client events %+v; want server-refused and forward-refused", cev)
	}
	for _, e := range cev {
		if e.Reason == observe.RefusedByServer && (e.Tunnel != "office" || e.Forward != "-L "+cfg.Local[1].String() || e.Peer == "") {
			t.Errorf("client refusal %+v; want tunnel office, forward -L %s and the local peer", e, cfg.Local[1])
		}
	}

	b, err := json.Marshal(ss)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"role":"server"`, `"sessions":[{`, `"bytes_to_target":`, `"listeners":[{`, `"counts":{`, `"unknown-key":1`, `"tunnels":[]`, `"rate_from_target":`} {
		if !bytes.Contains(b, []byte(key)) {
			t.Errorf("server JSON lacks %s: %s", key, b)
		}
	}
}

func hasEvent(es []observe.Event, r observe.Reason) bool {
	for _, e := range es {
		if e.Reason == r {
			return true
		}
	}
	return false
}
