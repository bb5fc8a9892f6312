package portmap

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pinhole-dev/pinhole/internal/portmap/portmaptest"
)

// logBuffer collects log lines and lets a test wait for one.
type logBuffer struct {
	mu    sync.Mutex
	lines []string
	more  chan struct{}
}

func newLogBuffer() *logBuffer { return &logBuffer{more: make(chan struct{}, 1)} }

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	l.lines = append(l.lines, strings.Split(strings.TrimRight(string(p), "\n"), "\n")...)
	l.mu.Unlock()
	select {
	case l.more <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// count returns how many lines match re.
func (l *logBuffer) count(re *regexp.Regexp) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		if re.MatchString(line) {
			n++
		}
	}
	return n
}

// wait waits until n lines match expr, for at most 30 s.
func (l *logBuffer) wait(t *testing.T, expr string, n int) {
	t.Helper()
	re := regexp.MustCompile(expr)
	deadline := time.After(30 * time.Second)
	for l.count(re) < n {
		select {
		case <-l.more:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatalf("no %d log lines matching %q within 30 s; log:\n%s", n, expr, l)
		}
	}
}

// client returns a Client pointed at g, using methods (nil: all).
func client(t *testing.T, g *portmaptest.Gateway, methods ...Method) (*Client, *logBuffer) {
	t.Helper()
	logs := newLogBuffer()
	return New(Config{
		Gateway:  g.Addr,
		PMPPort:  g.PMPPort,
		SSDPAddr: g.SSDPAddr,
		Methods:  methods,
		Timeout:  2 * time.Second,
		Logger:   slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}), logs
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

var external = netip.MustParseAddr("203.0.113.7")

// release releases m and checks that g has no mapping left.
func release(t *testing.T, ctx context.Context, g *portmaptest.Gateway, m Mapping) {
	t.Helper()
	if err := m.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if ms := g.Mappings(); len(ms) != 0 {
		t.Errorf("after Release the router still has %+v", ms)
	}
}

func TestMapEachMethod(t *testing.T) {
	for _, method := range Methods {
		for _, proto := range []Proto{TCP, UDP} {
			t.Run(string(method)+"/"+proto.String(), func(t *testing.T) {
				t.Parallel()
				g := portmaptest.Start(t, portmaptest.Config{})
				c, logs := client(t, g, method)
				ctx := testContext(t)
				m, err := c.Map(ctx, Request{Proto: proto, InternalPort: 8080, Lifetime: time.Hour})
				if err != nil {
					t.Fatal(err)
				}
				if got, want := m.External(), netip.AddrPortFrom(external, 8080); got != want {
					t.Errorf("External() = %v, want %v", got, want)
				}
				if m.Method() != method || m.Proto() != proto || m.Internal() != netip.MustParseAddrPort("127.0.0.1:8080") {
					t.Errorf("mapping %v %v %v, want %v %v 127.0.0.1:8080", m.Method(), m.Proto(), m.Internal(), method, proto)
				}
				if until := time.Until(m.GoodUntil()); until < 50*time.Minute || until > time.Hour {
					t.Errorf("GoodUntil in %v, want about 1h", until)
				}
				if after := time.Until(m.RenewAfter()); after < 25*time.Minute || after > 30*time.Minute {
					t.Errorf("RenewAfter in %v, want about 30m", after)
				}
				ms := g.Mappings()
				if len(ms) != 1 || ms[0].Method != string(method) || ms[0].Proto != proto.String() || ms[0].External != 8080 || ms[0].Internal != m.Internal() {
					t.Fatalf("router has %+v, want one %s mapping 8080 -> %v", ms, method, m.Internal())
				}
				if !strings.Contains(logs.String(), "portmap: mapped") {
					t.Errorf("no 'mapped' log line:\n%s", logs)
				}
				release(t, ctx, g, m)
				if err := m.Release(ctx); err != nil { // idempotent
					t.Fatal(err)
				}
			})
		}
	}
}

func TestMapAuto(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  portmaptest.Config
		want Method
	}{
		{"all", portmaptest.Config{}, PCP},
		{"no pcp", portmaptest.Config{NoPCP: true}, NATPMP},
		{"upnp only", portmaptest.Config{NoPCP: true, NoNATPMP: true}, UPnP},
		{"pcp only", portmaptest.Config{NoNATPMP: true, NoUPnP: true}, PCP},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g := portmaptest.Start(t, tc.cfg)
			c, _ := client(t, g)
			m, err := c.Map(testContext(t), Request{Proto: TCP, InternalPort: 2222})
			if err != nil {
				t.Fatal(err)
			}
			if m.Method() != tc.want {
				t.Errorf("mapped with %s, want %s", m.Method(), tc.want)
			}
			if ms := g.Mappings(); len(ms) != 1 || ms[0].Method != string(tc.want) {
				t.Errorf("router has %+v, want one %s mapping", ms, tc.want)
			}
			if until := time.Until(m.GoodUntil()); until < DefaultLifetime-time.Minute {
				t.Errorf("lease ends in %v, want the default %v", until, DefaultLifetime)
			}
		})
	}
}

// TestMapNothingAnswers: the error names every method and why.
func TestMapNothingAnswers(t *testing.T) {
	g := portmaptest.Start(t, portmaptest.Config{NoPCP: true, NoNATPMP: true, NoUPnP: true})
	c, _ := client(t, g)
	c.cfg.Timeout = 500 * time.Millisecond
	_, err := c.Map(testContext(t), Request{Proto: UDP, InternalPort: 27015})
	t.Log(err)
	var nm *NoMethodError
	if !errors.As(err, &nm) {
		t.Fatalf("err = %v, want a *NoMethodError", err)
	}
	if !errors.Is(err, ErrNoAnswer) {
		t.Errorf("err = %v, want one that is ErrNoAnswer", err)
	}
	for _, want := range []string{"pcp:", "natpmp:", "upnp:", "127.0.0.1", "port unreachable", "SSDP", "turn on UPnP or NAT-PMP"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// TestMapProtocolMismatch: a PCP-only router answers NAT-PMP in PCP, and
// a NAT-PMP-only one answers PCP in NAT-PMP; both are told apart at once.
func TestMapProtocolMismatch(t *testing.T) {
	for _, tc := range []struct {
		cfg    portmaptest.Config
		method Method
		want   string
	}{
		{portmaptest.Config{NoNATPMP: true}, NATPMP, "speaks PCP, not NAT-PMP"},
		{portmaptest.Config{NoPCP: true}, PCP, "speaks NAT-PMP, not PCP"},
	} {
		t.Run(string(tc.method), func(t *testing.T) {
			g := portmaptest.Start(t, tc.cfg)
			c, _ := client(t, g, tc.method)
			c.cfg.Timeout = 30 * time.Second // the answer, not a timeout, must end it
			_, err := c.Map(testContext(t), Request{Proto: TCP, InternalPort: 8080})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrNoAnswer) {
				t.Errorf("err = %v, want one saying %q", err, tc.want)
			}
		})
	}
}

// TestMapConflict: a port held by another host is skipped when any port
// will do, and is an ErrConflict when asked for.
func TestMapConflict(t *testing.T) {
	for _, method := range Methods {
		t.Run(string(method), func(t *testing.T) {
			t.Parallel()
			g := portmaptest.Start(t, portmaptest.Config{})
			g.Add(portmaptest.Mapping{Method: "upnp", Proto: "tcp", External: 8080, Internal: netip.MustParseAddrPort("127.0.0.99:80"), Description: "someone else"})
			c, _ := client(t, g, method)
			ctx := testContext(t)

			m, err := c.Map(ctx, Request{Proto: TCP, InternalPort: 8080})
			if err != nil {
				t.Fatal(err)
			}
			if m.External().Port() == 8080 {
				t.Errorf("mapped external port 8080, which another host holds")
			}
			if err := m.Release(ctx); err != nil {
				t.Fatal(err)
			}

			_, err = c.Map(ctx, Request{Proto: TCP, InternalPort: 8080, ExternalPort: 8080})
			if !errors.Is(err, ErrConflict) {
				t.Fatalf("err = %v, want ErrConflict", err)
			}
			if ms := g.Mappings(); len(ms) != 1 || ms[0].Description != "someone else" {
				t.Errorf("router has %+v, want only the other host's mapping", ms)
			}
		})
	}
}

// TestRouterErrors: each refusal a router can give becomes an error that
// says what happened and is errors.Is the right sentinel.
func TestRouterErrors(t *testing.T) {
	for _, tc := range []struct {
		method Method
		code   int
		kind   error
		says   string
	}{
		{PCP, 2, ErrNotAuthorized, "NOT_AUTHORIZED"},
		{PCP, 8, ErrNoResources, "NO_RESOURCES"},
		{PCP, 11, ErrConflict, "CANNOT_PROVIDE_EXTERNAL"},
		{NATPMP, 2, ErrNotAuthorized, "Not Authorized"},
		{NATPMP, 4, ErrNoResources, "Out of resources"},
		{UPnP, 606, ErrNotAuthorized, "Action not authorized"},
		{UPnP, 728, ErrNoResources, "NoPortMapsAvailable"},
		{UPnP, 718, ErrConflict, "ConflictInMappingEntry"},
	} {
		t.Run(tc.says, func(t *testing.T) {
			t.Parallel()
			g := portmaptest.Start(t, portmaptest.Config{})
			g.FailNext(string(tc.method), tc.code)
			c, _ := client(t, g, tc.method)
			_, err := c.Map(testContext(t), Request{Proto: UDP, InternalPort: 5000, ExternalPort: 5000})
			if !errors.Is(err, tc.kind) {
				t.Errorf("err = %v, want %v", err, tc.kind)
			}
			if err != nil && (!strings.Contains(err.Error(), tc.says) || !strings.Contains(err.Error(), hintFor(tc.kind))) {
				t.Errorf("error %q does not say %q and what to do", err, tc.says)
			}
			var re *RouterError
			if !errors.As(err, &re) || re.Code != tc.code || re.Method != tc.method {
				t.Errorf("err = %#v, want a *RouterError with code %d", err, tc.code)
			}
		})
	}
}

// TestUPnPPermanentOnly: error 725 falls back to a permanent lease, which
// is still removed by Release.
func TestUPnPPermanentOnly(t *testing.T) {
	g := portmaptest.Start(t, portmaptest.Config{PermanentOnly: true})
	c, logs := client(t, g, UPnP)
	ctx := testContext(t)
	m, err := c.Map(ctx, Request{Proto: TCP, InternalPort: 8080, Lifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if !m.GoodUntil().IsZero() {
		t.Errorf("GoodUntil = %v, want zero (permanent)", m.GoodUntil())
	}
	if ms := g.Mappings(); len(ms) != 1 || ms[0].Lifetime != 0 {
		t.Errorf("router has %+v, want one permanent mapping", ms)
	}
	if !strings.Contains(logs.String(), "only permanent") {
		t.Errorf("the log does not say the router takes only permanent leases:\n%s", logs)
	}
	release(t, ctx, g, m)
}

// TestUPnPFixtures: real routers' descriptions, served by the fake, each
// lead to their best WAN connection service and a working mapping.
func TestUPnPFixtures(t *testing.T) {
	for _, tc := range []struct {
		file    string
		service string
		anyPort bool // AddAnyPortMapping (IGD v2) is used
	}{
		{"miniupnpd-rootDesc.xml", svcWANIP2, true},
		{"googlewifi-rootDesc.xml", svcWANIP2, true},
		{"pfsense-rootDesc.xml", svcWANIP1, false},
		{"mikrotik-rootDesc.xml", svcWANIP1, false},
		{"ppp-rootDesc.xml", svcWANPPP1, false},
	} {
		t.Run(tc.file, func(t *testing.T) {
			t.Parallel()
			g := portmaptest.Start(t, portmaptest.Config{Description: readFixture(t, tc.file)})
			c, _ := client(t, g, UPnP)
			ctx := testContext(t)
			m, err := c.Map(ctx, Request{Proto: TCP, InternalPort: 8443})
			if err != nil {
				t.Fatal(err)
			}
			if svc := m.(*mapping).state.(*upnpService); svc.Type != tc.service {
				t.Errorf("used %s, want %s", svc.Type, tc.service)
			}
			if got := g.Count("upnp AddAnyPortMapping") > 0; got != tc.anyPort {
				t.Errorf("AddAnyPortMapping used: %v, want %v; router log:\n%s", got, tc.anyPort, strings.Join(g.Log(), "\n"))
			}
			if m.External() != netip.AddrPortFrom(external, 8443) {
				t.Errorf("External() = %v", m.External())
			}
			if err := m.Release(ctx); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestKeepRenews(t *testing.T) {
	for _, method := range Methods {
		t.Run(string(method), func(t *testing.T) {
			t.Parallel()
			// The router grants 2 s whatever is asked: Keep must
			// renew by the granted lease, not the asked one.
			g := portmaptest.Start(t, portmaptest.Config{MaxLifetime: 2 * time.Second})
			c, logs := client(t, g, method)
			ctx, cancel := context.WithCancel(testContext(t))
			lifetime := time.Hour
			if method == UPnP {
				lifetime = 2 * time.Second // UPnP grants what is asked
			}
			m, err := c.Map(ctx, Request{Proto: UDP, InternalPort: 9000, Lifetime: lifetime})
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- c.Keep(ctx, m, nil) }()
			logs.wait(t, `portmap: renewed`, 2)
			if ms := g.Mappings(); len(ms) != 1 || ms[0].External != m.External().Port() {
				t.Errorf("after renewals the router has %+v", ms)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("Keep: %v", err)
			}
			if !strings.Contains(logs.String(), "portmap: removed") {
				t.Errorf("no 'removed' log line:\n%s", logs)
			}
			if ms := g.Mappings(); len(ms) != 0 {
				t.Errorf("after Keep ended the router still has %+v", ms)
			}
		})
	}
}

// TestKeepGatewayGone: while the gateway does not answer, Keep logs its
// retries with backoff; when it is back, the mapping is renewed or made
// again.
func TestKeepGatewayGone(t *testing.T) {
	for _, method := range Methods {
		t.Run(string(method), func(t *testing.T) {
			t.Parallel()
			g := portmaptest.Start(t, portmaptest.Config{})
			c, logs := client(t, g, method)
			c.cfg.Timeout = time.Second // short, for the down phase; long enough for a busy machine
			ctx, cancel := context.WithCancel(testContext(t))
			m, err := c.Map(ctx, Request{Proto: TCP, InternalPort: 8022, Lifetime: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			g.SetDown(true)
			done := make(chan error, 1)
			go func() { done <- c.Keep(ctx, m, nil) }()
			logs.wait(t, `renewal failed; retrying.* in=2s`, 1) // the backoff grew
			g.SetDown(false)
			logs.wait(t, `portmap: (renewed|mapped again)`, 1)
			if ms := g.Mappings(); len(ms) != 1 {
				t.Errorf("once the gateway is back the router has %+v, want the mapping", ms)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("Keep: %v", err)
			}
		})
	}
}

// TestKeepGatewayRestart: a router that reboots loses its mappings; the
// epoch tells PCP and NAT-PMP, and the renewal puts the mapping back.
func TestKeepGatewayRestart(t *testing.T) {
	for _, method := range []Method{PCP, NATPMP} {
		t.Run(string(method), func(t *testing.T) {
			t.Parallel()
			g := portmaptest.Start(t, portmaptest.Config{})
			c, logs := client(t, g, method)
			ctx, cancel := context.WithCancel(testContext(t))
			defer cancel()
			m, err := c.Map(ctx, Request{Proto: TCP, InternalPort: 8022, Lifetime: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			g.Restart()
			go c.Keep(ctx, m, nil)
			logs.wait(t, `gateway restarted`, 1)
			logs.wait(t, `portmap: renewed`, 1)
			if ms := g.Mappings(); len(ms) != 1 {
				t.Errorf("after the restart and a renewal the router has %+v", ms)
			}
		})
	}
}

func TestProbe(t *testing.T) {
	g := portmaptest.Start(t, portmaptest.Config{})
	c, _ := client(t, g)
	res, err := c.Probe(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 3 {
		t.Fatalf("%d results, want 3", len(res))
	}
	for i, r := range res {
		if r.Method != Methods[i] || r.Err != nil || r.External != external {
			t.Errorf("result %d: %+v, want %s ok with %v", i, r, Methods[i], external)
		}
	}
	if ms := g.Mappings(); len(ms) != 0 {
		t.Errorf("after Probe the router has %+v, want nothing left", ms)
	}

	g2 := portmaptest.Start(t, portmaptest.Config{NoPCP: true, NoUPnP: true})
	c2, _ := client(t, g2)
	c2.cfg.Timeout = 2 * time.Second // NAT-PMP must answer in it, on a busy machine too
	res, err = c2.Probe(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Err == nil || res[1].Err != nil || res[2].Err == nil {
		t.Errorf("NAT-PMP only router: %+v, want only natpmp to answer", res)
	}
}

func TestListAndDelete(t *testing.T) {
	g := portmaptest.Start(t, portmaptest.Config{})
	c, _ := client(t, g, UPnP)
	ctx := testContext(t)
	mine := netip.MustParseAddrPort("127.0.0.1:8080")
	g.Add(portmaptest.Mapping{Method: "upnp", Proto: "tcp", External: 18080, Internal: mine, Description: "left behind"})
	g.Add(portmaptest.Mapping{Method: "upnp", Proto: "udp", External: 27015, Internal: netip.MustParseAddrPort("127.0.0.2:27015"), Description: "game"})
	entries, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		t.Fatalf("List = %+v, want 2 entries", entries)
	}
	e := entries[0]
	if e.Proto != TCP || e.External != netip.AddrPortFrom(external, 18080) || e.Internal != mine || e.Description != "left behind" || !e.Enabled || e.Lease != 0 {
		t.Errorf("entry 0 = %+v", e)
	}

	if m, err := c.Delete(ctx, Request{Proto: TCP, InternalPort: 8080, ExternalPort: 18080}); err != nil || m != UPnP {
		t.Fatalf("Delete = %v, %v; want upnp, nil", m, err)
	}
	if ms := g.Mappings(); len(ms) != 1 || ms[0].External != 27015 {
		t.Errorf("after Delete the router has %+v", ms)
	}
	if _, err := c.Delete(ctx, Request{Proto: TCP, InternalPort: 8080, ExternalPort: 18080}); !errors.Is(err, ErrNoSuchMapping) {
		t.Errorf("deleting again: %v, want ErrNoSuchMapping", err)
	}

	pcpOnly, _ := client(t, g, PCP, NATPMP)
	if _, err := pcpOnly.List(ctx); !errors.Is(err, ErrCannotList) {
		t.Errorf("List with PCP and NAT-PMP: %v, want ErrCannotList", err)
	}
}

func TestNATPMPDelete(t *testing.T) {
	g := portmaptest.Start(t, portmaptest.Config{})
	c, _ := client(t, g, NATPMP)
	ctx := testContext(t)
	if _, err := c.Map(ctx, Request{Proto: UDP, InternalPort: 5353}); err != nil {
		t.Fatal(err)
	}
	// As a new process would: a fresh client, no Mapping in hand.
	c2, _ := client(t, g, NATPMP)
	if _, err := c2.Delete(ctx, Request{Proto: UDP, InternalPort: 5353}); err != nil {
		t.Fatal(err)
	}
	if ms := g.Mappings(); len(ms) != 0 {
		t.Errorf("after Delete the router has %+v", ms)
	}
}

// TestPCPReleaseBehindAnother: miniupnpd refuses a PCP deletion when an
// older mapping of the same internal port (here NAT-PMP's) comes first;
// Release then removes the PCP mapping by its external port with UPnP.
func TestPCPReleaseBehindAnother(t *testing.T) {
	g := portmaptest.Start(t, portmaptest.Config{})
	ctx := testContext(t)
	pmp, _ := client(t, g, NATPMP)
	first, err := pmp.Map(ctx, Request{Proto: UDP, InternalPort: 9000, ExternalPort: 19000})
	if err != nil {
		t.Fatal(err)
	}
	c, logs := client(t, g, PCP)
	m, err := c.Map(ctx, Request{Proto: UDP, InternalPort: 9000, ExternalPort: 29000})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Release(ctx); err != nil {
		t.Fatalf("Release: %v\nlog:\n%s", err, logs)
	}
	if ms := g.Mappings(); len(ms) != 1 || ms[0].External != first.External().Port() {
		t.Errorf("router has %+v, want only the NAT-PMP mapping", ms)
	}
	if !strings.Contains(logs.String(), "removed it with UPnP") {
		t.Errorf("the log does not say UPnP removed it:\n%s", logs)
	}
}

// TestKeepExternalChange: a new public address seen at a renewal is
// logged and handed to the changed callback.
func TestKeepExternalChange(t *testing.T) {
	for _, method := range Methods {
		t.Run(string(method), func(t *testing.T) {
			t.Parallel()
			g := portmaptest.Start(t, portmaptest.Config{})
			c, logs := client(t, g, method)
			ctx, cancel := context.WithCancel(testContext(t))
			defer cancel()
			m, err := c.Map(ctx, Request{Proto: TCP, InternalPort: 8080, Lifetime: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			next := netip.MustParseAddr("198.51.100.9")
			g.SetExternal(next)
			changed := make(chan netip.AddrPort, 10)
			go c.Keep(ctx, m, func(m Mapping) { changed <- m.External() })
			select {
			case got := <-changed:
				if got != netip.AddrPortFrom(next, 8080) {
					t.Errorf("changed to %v, want %v:8080", got, next)
				}
			case <-ctx.Done():
				t.Fatalf("no change reported; log:\n%s", logs)
			}
			logs.wait(t, `external address changed`, 1)
		})
	}
}
