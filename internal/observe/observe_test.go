package observe

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

func TestRing(t *testing.T) {
	r := &Ring{Size: 3}
	for i := range 5 {
		r.Add(Event{Reason: RefusedPermitOpen, Forward: fmt.Sprint("10.0.0.5:", i), Peer: fmt.Sprint("10.0.0.1:", i)})
	}
	r.Add(Event{Reason: "made-up", Peer: "10.0.0.9:1"})
	r.Add(Event{Reason: AuthUnknownKey, Peer: "10.0.0.2:1", Detail: strings.Repeat("é", 300)})
	es := r.Events()
	if len(es) != 3 {
		t.Fatalf("%d events kept; want the ring's 3", len(es))
	}
	if es[0].Peer != "10.0.0.1:3" || es[1].Peer != "10.0.0.1:4" || es[2].Reason != AuthUnknownKey {
		t.Errorf("events %+v; want the last three, oldest first", es)
	}
	if es[2].Seq != 6 || es[2].Kind != "auth" || es[1].Kind != "refused" || es[2].Time.IsZero() {
		t.Errorf("last event %+v; want seq 6, kind auth, a time", es[2])
	}
	if len(es[2].Detail) > 200 || !strings.HasPrefix(es[2].Detail, "é") || strings.ContainsRune(es[2].Detail, '\uFFFD') {
		t.Errorf("detail %q (%d bytes); want at most 200 bytes of whole characters", es[2].Detail, len(es[2].Detail))
	}
	if r.Count(RefusedPermitOpen) != 5 || r.Count(AuthUnknownKey) != 1 || r.Count("made-up") != 0 {
		t.Errorf("counts %v; want 5 permitopen, 1 unknown-key, nothing for a reason outside the set", r.Counts())
	}
	c := r.Counts()
	if len(c) != len(Reasons()) {
		t.Errorf("Counts has %d keys; want every one of the %d reasons", len(c), len(Reasons()))
	}

	// The same refusal again and again, from any peer, is one event
	// that repeats, with the first one's peer and detail.
	for i := range 4 {
		r.AddText(Event{Reason: RefusedRemote, Tunnel: "office", Forward: "-R 80:localhost:3000"}, stringer(fmt.Sprint("peer", i)), fmt.Errorf("refusal %d", i))
	}
	es = r.Events()
	if last := es[len(es)-1]; last.Reason != RefusedRemote || last.Repeats != 3 || last.Peer != "peer0" || last.Detail != "refusal 0" || es[len(es)-2].Reason != AuthUnknownKey {
		t.Errorf("events %+v; want one forward-refused with 3 repeats after the auth failure", es)
	}
	if r.Count(RefusedRemote) != 4 {
		t.Errorf("forward-refused counted %d; want every one of the 4", r.Count(RefusedRemote))
	}

	var nilRing *Ring
	nilRing.Add(Event{Reason: AuthFrom})
	if len(nilRing.Events()) != 0 || nilRing.Count(AuthFrom) != 0 {
		t.Error("a nil Ring recorded something")
	}
}

// TestRingClipsPeerText: the texts a peer chooses (a failed login's
// method name is Forward, a target, a tunnel name) are kept to 200
// bytes of whole characters, as Detail is, and a burst of the same long
// one is still one event that repeats.
func TestRingClipsPeerText(t *testing.T) {
	r := &Ring{}
	long := strings.Repeat("é", 5000)
	for range 3 {
		r.Add(Event{Reason: AuthMethod, Tunnel: "T" + long, Forward: "\x1b]0;" + long, Peer: "P" + long, Detail: long})
	}
	es := r.Events()
	if len(es) != 1 || es[0].Repeats != 2 {
		t.Fatalf("%d events, the first repeating %d times; want one that repeats twice", len(es), es[0].Repeats)
	}
	for name, v := range map[string]string{"Tunnel": es[0].Tunnel, "Forward": es[0].Forward, "Peer": es[0].Peer, "Detail": es[0].Detail} {
		if len(v) > 200 || len(v) < 190 || !utf8.ValidString(v) {
			t.Errorf("%s: %d bytes (valid UTF-8: %v); want at most 200 bytes of whole characters", name, len(v), utf8.ValidString(v))
		}
	}
}

type stringer string

func (s stringer) String() string { return string(s) }

// TestRingRepeatsFree: a burst of the same refusal allocates nothing
// once its first event is in.
func TestRingRepeatsFree(t *testing.T) {
	var r Ring
	peer, err := stringer("10.0.0.1:5"), fmt.Errorf("over the limit")
	e := Event{Reason: RefusedStreams, Tunnel: "SHA256:x", Forward: "direct-tcpip"}
	r.AddText(e, peer, err)
	if n := testing.AllocsPerRun(100, func() { r.AddText(e, peer, err) }); n != 0 {
		t.Errorf("a repeated refusal allocates %v times; want 0", n)
	}
}

func TestRingConcurrent(t *testing.T) {
	var r Ring
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				r.Add(Event{Reason: RefusedStreams, Forward: fmt.Sprint(g, ":", i)})
				r.Events()
			}
		})
	}
	wg.Wait()
	if n := r.Count(RefusedStreams); n != 4000 {
		t.Errorf("counted %d; want 4000", n)
	}
	if n := len(r.Events()); n != DefaultRingSize {
		t.Errorf("kept %d; want %d", n, DefaultRingSize)
	}
}

func TestReasons(t *testing.T) {
	seen := map[Reason]bool{}
	for i, r := range Reasons() {
		if seen[r] || r == "" || strings.ContainsAny(string(r), " _ABCDEFGHIJKLMNOPQRSTUVWXYZ") {
			t.Errorf("reason %q: repeated, empty or not lower-case-with-dashes", r)
		}
		seen[r] = true
		if r.Auth() != (i < 7) {
			t.Errorf("reason %q: Auth %v", r, r.Auth())
		}
	}
}

func TestRates(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	prev := &Snapshot{Time: t0, Totals: Counters{BytesToTarget: 1000},
		Sessions: []Session{{Source: "a", Counters: Counters{BytesToTarget: 100, BytesFromTarget: 50}}},
		Tunnels:  []Tunnel{{Name: "t", Forwards: []Forward{{Forward: "-L 1:x:1", Counters: Counters{BytesFromTarget: 10}}}}}}
	cur := &Snapshot{Time: t0.Add(2 * time.Second), Totals: Counters{BytesToTarget: 5000},
		Sessions: []Session{{Source: "a", Counters: Counters{BytesToTarget: 300, BytesFromTarget: 50}}, {Source: "b", Counters: Counters{BytesToTarget: 9}}},
		Tunnels:  []Tunnel{{Name: "t", Forwards: []Forward{{Forward: "-L 1:x:1", Counters: Counters{BytesFromTarget: 2010}}}}}}
	cur.Rates(prev)
	if cur.Totals.RateToTarget != 2000 || cur.Sessions[0].RateToTarget != 100 || cur.Sessions[0].RateFromTarget != 0 {
		t.Errorf("rates %+v %+v; want 2000 and 100 bytes a second", cur.Totals, cur.Sessions[0].Counters)
	}
	if cur.Sessions[1].RateToTarget != 0 || cur.Tunnels[0].Forwards[0].RateFromTarget != 1000 {
		t.Errorf("a new session's rate %v, the forward's %v; want 0 and 1000", cur.Sessions[1].RateToTarget, cur.Tunnels[0].Forwards[0].RateFromTarget)
	}
	cur.Rates(nil) // leaves them
	if cur.Totals.RateToTarget != 2000 {
		t.Error("Rates(nil) changed the rates")
	}
}

// TestJSONShape pins the documented keys of the JSON: renaming one
// breaks scripts (docs/watching.md).
func TestJSONShape(t *testing.T) {
	s := Snapshot{Role: "client", Tunnels: []Tunnel{{Name: "t", Forwards: []Forward{{Forward: "-L 1:x:1"}}}}, Events: []Event{{Reason: AuthFrom}}, Counts: map[Reason]uint64{AuthFrom: 1}}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"role", "version", "started", "time", "totals", "sessions", "tunnels", "events", "counts",
		"name", "server", "state", "since", "forwards", "forward", "kind", "proto", "addr",
		"bytes_to_target", "bytes_from_target", "streams_open", "streams_total", "streams_refused", "rate_to_target", "rate_from_target",
		"seq", "reason", `"from":1`} {
		if !strings.Contains(string(b), `"`+strings.Trim(k, `"`)) {
			t.Errorf("JSON lacks %s: %s", k, b)
		}
	}
}
