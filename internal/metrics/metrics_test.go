package metrics

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/pinhole-dev/pinhole/internal/portmap"
)

// gather is the registry's families by name.
func gather(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		out[f.GetName()] = f
	}
	return out
}

// series is the metric of f whose labels are exactly labels (name=value
// pairs joined by ","), nil if none.
func series(f *dto.MetricFamily, labels string) *dto.Metric {
	if f == nil {
		return nil
	}
	for _, m := range f.Metric {
		var ls []string
		for _, l := range m.Label {
			ls = append(ls, l.GetName()+"="+l.GetValue())
		}
		if strings.Join(ls, ",") == labels {
			return m
		}
	}
	return nil
}

// TestWrapHTTP: each request counts once by name and status class, an
// upgrade (a hijack) as 1xx, and the wrapped handler's Owns is kept.
func TestWrapHTTP(t *testing.T) {
	m := New(Sources{Role: "server", Version: "test"})
	inner := owner{HandlerFunc: func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/down":
			http.Error(w, "no", http.StatusBadGateway)
		case "/ws":
			c, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n")
			brw.Flush()
			c.Close()
		default:
			io.WriteString(w, "ok")
		}
	}}
	h := m.WrapHTTP(inner, func(host string) string {
		if strings.HasPrefix(host, "app.") {
			return "app"
		}
		return ""
	})
	if o, ok := h.(interface{ Owns(string) bool }); !ok || !o.Owns("app.example") || o.Owns("other.example") {
		t.Fatal("the wrapper does not keep the handler's Owns")
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	get := func(host, path string) {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		req.Host = host
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	get("app.example", "/")
	get("app.example", "/")
	get("app.example", "/down")
	get("stranger.example", "/")
	// The upgrade by hand: http.Client would not read a 101 answer.
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: app.example\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n")
	if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || !strings.Contains(line, "101") {
		t.Fatalf("upgrade answer %q, %v", line, err)
	}
	c.Close()

	fams := gather(t, m)
	for labels, want := range map[string]float64{
		"code=2xx,name=app": 2,
		"code=5xx,name=app": 1,
		"code=2xx,name=":    1,
		"code=1xx,name=app": 1,
	} {
		deadline := time.Now().Add(5 * time.Second) // the hijacked request ends on its own goroutine
		for {
			s := series(gather(t, m)["pinhole_http_requests_total"], labels)
			if s != nil && s.Counter.GetValue() == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("pinhole_http_requests_total{%s} = %v, want %v", labels, s, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if s := series(fams["pinhole_http_request_duration_seconds"], "name=app"); s == nil || s.Histogram.GetSampleCount() < 3 {
		t.Errorf("pinhole_http_request_duration_seconds{name=app}: %v, want at least 3 observations", s)
	}
}

type owner struct{ http.HandlerFunc }

func (owner) Owns(host string) bool { return strings.HasPrefix(host, "app.") }

// TestPortmapMetrics: a mapping's state is the one series at 1, and its
// lease left counts down, +Inf for a permanent one, 0 once removed.
func TestPortmapMetrics(t *testing.T) {
	now := time.Now()
	ms := []portmap.MappingState{
		{Method: portmap.PCP, Proto: portmap.TCP, Internal: netip.MustParseAddrPort("192.168.1.2:2222"), State: portmap.StateMapped, GoodUntil: now.Add(90 * time.Second)},
		{Method: portmap.UPnP, Proto: portmap.UDP, Internal: netip.MustParseAddrPort("192.168.1.2:53"), State: portmap.StateRetrying},
		{Method: portmap.NATPMP, Proto: portmap.TCP, Internal: netip.MustParseAddrPort("192.168.1.2:80"), State: portmap.StateRemoved, GoodUntil: now.Add(time.Hour)},
	}
	ch := make(chan prometheus.Metric, 100)
	collectPortmap(ch, ms, now)
	close(ch)
	got := map[string]float64{}
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			t.Fatal(err)
		}
		var ls []string
		for _, l := range d.Label {
			ls = append(ls, l.GetName()+"="+l.GetValue())
		}
		name := "pinhole_portmap_lease_remaining_seconds"
		if m.Desc() == portmapState {
			name = "pinhole_portmap_mapping_state"
		}
		got[name+"{"+strings.Join(ls, ",")+"}"] = d.Gauge.GetValue()
	}
	check := func(desc, labels string, want float64) {
		t.Helper()
		v, ok := got[desc+"{"+labels+"}"]
		switch {
		case !ok:
			t.Errorf("no %s{%s} in %v", desc, labels, got)
		case v != want && !(math.IsInf(want, 1) && math.IsInf(v, 1)):
			t.Errorf("%s{%s} = %v, want %v", desc, labels, v, want)
		}
	}
	check("pinhole_portmap_mapping_state", "method=pcp,port=2222,proto=tcp,state=mapped", 1)
	check("pinhole_portmap_mapping_state", "method=pcp,port=2222,proto=tcp,state=lost", 0)
	check("pinhole_portmap_mapping_state", "method=upnp,port=53,proto=udp,state=retrying", 1)
	check("pinhole_portmap_lease_remaining_seconds", "method=pcp,port=2222,proto=tcp", 90)
	check("pinhole_portmap_lease_remaining_seconds", "method=upnp,port=53,proto=udp", math.Inf(1))
	check("pinhole_portmap_lease_remaining_seconds", "method=natpmp,port=80,proto=tcp", 0)
}

// TestHTTPNamesBounded: past maxHTTPNames names, requests count as
// "other", and the names already seen keep their series.
func TestHTTPNamesBounded(t *testing.T) {
	m := New(Sources{Role: "server", Version: "test"})
	h := m.WrapHTTP(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), func(host string) string { return host })
	for i := range maxHTTPNames + 50 {
		r := httptest.NewRequest("GET", "/", nil)
		r.Host = fmt.Sprintf("n%d", i)
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.Host = "n0"
	h.ServeHTTP(httptest.NewRecorder(), r)
	fam := gather(t, m)["pinhole_http_requests_total"]
	if got := len(fam.GetMetric()); got != maxHTTPNames+1 {
		t.Errorf("%d series, want %d names and other", got, maxHTTPNames+1)
	}
	if s := series(fam, "code=2xx,name=other"); s == nil || s.GetCounter().GetValue() != 50 {
		t.Errorf("other: %v, want 50", s)
	}
	if s := series(fam, "code=2xx,name=n0"); s == nil || s.GetCounter().GetValue() != 2 {
		t.Errorf("n0: %v, want 2", s)
	}
}
