// Package metrics exports what a pinhole server or client counts to
// Prometheus, in its text exposition format, on an HTTP handler.
//
// It counts nothing on the data path itself. Bytes and streams are the
// tunnel meters' (tunnel.Stats), reconnects, keepalives and UDP drops the
// tunnel's own Counters, refusals and authentication failures by reason
// the observe.Ring's, router mappings portmap.Status's: a Collector
// reads them all when Prometheus scrapes, so a process with metrics on
// carries its bytes exactly as one with metrics off. The one exception is
// HTTP (WrapHTTP): a request's status and latency exist only at the
// handler, so they are counted there, once per request.
//
// Labels are bounded: a tunnel's name, a forward's spec, a public name
// a tunnel holds, a reason or a state from a fixed set; never a source
// address. docs/metrics.md lists every metric.
package metrics

import (
	"bufio"
	"crypto/subtle"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/pinhole-dev/pinhole/internal/observe"
	"github.com/pinhole-dev/pinhole/internal/portmap"
	"github.com/pinhole-dev/pinhole/internal/tunnel"
)

// Tunnel is one client tunnel: its name (the label) and its Client, nil
// while it has none (not connected yet, or between two clients of a
// restart).
type Tunnel struct {
	Name   string
	Client *tunnel.Client
}

// Sources are what the metrics are read from. Nil fields export nothing.
type Sources struct {
	// Role is "server" or "client", the role label of pinhole_build_info.
	Role string
	// Version is pinhole's version.
	Version string
	// Servers returns every tunnel.Server pinhole server has run, called
	// at each scrape (one; server -c makes a new one when a reload
	// restarts it, and the old one drains): the figures are their sums,
	// so a counter does not fall back when one takes over from another.
	Servers func() []*tunnel.Server
	// Tunnels lists a client's tunnels (pinhole connect: one; pinhole
	// up: those of the file), called at each scrape.
	Tunnels func() []Tunnel
	// Portmap is the router mapping server --map holds.
	Portmap *portmap.Status
	// Extra collectors are registered beside the built-in ones.
	Extra []prometheus.Collector
}

// Metrics is one process's registry: the Collector over Sources, and the
// HTTP metrics that WrapHTTP counts.
type Metrics struct {
	reg *prometheus.Registry

	mu   sync.Mutex
	http *httpMetrics // made by the first WrapHTTP
}

// New registers a Collector over src. It panics only on a programming
// error in this package (two metrics of one name).
func New(src Sources) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	m.reg.MustRegister(&collector{src: src}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, c := range src.Extra {
		m.reg.MustRegister(c)
	}
	return m
}

// Registry is where the metrics are registered, for tests and extra
// collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics. With token not "", a request must carry
// "Authorization: Bearer TOKEN" or gets 401.
func (m *Metrics) Handler(token string) http.Handler {
	h := promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, DisableCompression: true})
	if token == "" {
		return h
	}
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="pinhole metrics"`)
			http.Error(w, "pinhole: metrics need Authorization: Bearer <the --metrics-token>", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

// The metrics the collector reads at scrape time.
var (
	buildInfo = desc("pinhole_build_info", "Always 1: the running pinhole's version and role (server or client).", "version", "role")

	serverBytes   = desc("pinhole_server_bytes_total", "Bytes every stream of the server carried, toward the targets (to_target) and back (from_target).", "direction")
	serverOpen    = desc("pinhole_server_streams_open", "Streams (TCP connections, UDP flows) the server carries now.")
	serverTotal   = desc("pinhole_server_streams_total", "Streams the server has opened.")
	serverRefused = desc("pinhole_server_streams_refused_total", "Connections the server did not make a stream of (permitopen, the target refused, a key's limit, the client refused a forwarded one).")
	sessions      = desc("pinhole_ssh_sessions", "SSH connections to the server now, by state: unauthenticated (in the handshake) or authenticated.", "state")
	startupsDrop  = desc("pinhole_ssh_startups_dropped_total", "Connections dropped before the handshake by --max-startups or --per-source-max-startups.")

	tunnelBytes     = desc("pinhole_tunnel_bytes_total", "Bytes a client tunnel carried, toward the targets (to_target) and back (from_target), closed forwards included.", "tunnel", "direction")
	tunnelOpen      = desc("pinhole_tunnel_streams_open", "Streams (TCP connections, UDP flows) a client tunnel carries now.", "tunnel")
	tunnelTotal     = desc("pinhole_tunnel_streams_total", "Streams a client tunnel has opened.", "tunnel")
	tunnelRefused   = desc("pinhole_tunnel_streams_refused_total", "Connections a client tunnel did not make a stream of (the server refused, the tunnel stayed down).", "tunnel")
	tunnelState     = desc("pinhole_tunnel_state", "1 for the state a client tunnel is in (connecting, up, reconnecting, draining, closed), 0 for the others.", "tunnel", "state")
	reconnects      = desc("pinhole_tunnel_reconnects_total", "Connections a client tunnel lost and reconnected after, by cause: keepalive (the server stopped answering), closed (the server closed it), error (a network error).", "tunnel", "cause")
	reconnectFailed = desc("pinhole_tunnel_reconnect_failures_total", "Reconnect attempts that failed (each retried with backoff).", "tunnel")

	forwardBytes   = desc("pinhole_forward_bytes_total", "Bytes one forward of a client tunnel carried, toward its target (to_target) and back (from_target).", "tunnel", "forward", "direction")
	forwardOpen    = desc("pinhole_forward_streams_open", "Streams one forward carries now.", "tunnel", "forward")
	forwardTotal   = desc("pinhole_forward_streams_total", "Streams one forward has opened.", "tunnel", "forward")
	forwardRefused = desc("pinhole_forward_streams_refused_total", "Connections one forward did not make a stream of.", "tunnel", "forward")
	forwardUp      = desc("pinhole_forward_up", "1 while a forward works (listening, or the server listens for it), 0 otherwise.", "tunnel", "forward")

	keepaliveRTT      = desc("pinhole_keepalive_rtt_seconds", "Round trips of the keepalives the peer answered.", "tunnel")
	keepaliveTimeouts = desc("pinhole_keepalive_timeouts_total", "Connections closed because the peer stopped answering keepalives.", "tunnel")

	udpDatagrams = desc("pinhole_udp_datagrams_total", "Datagrams through the UDP flow tables: in (from the sources, toward the targets) and out (replies to the sources).", "tunnel", "direction")
	udpFlows     = desc("pinhole_udp_flows_total", "UDP flows opened (one per new source address).", "tunnel")
	udpDrops     = desc("pinhole_udp_dropped_total", "Datagrams dropped, by reason: no_flow (--udp-max-flows flows open), queue_full (the tunnel slower than the sender), too_big, failed (the flow could not open), refused (the tunnel's allow= turned the source away).", "tunnel", "reason")

	refusals     = desc("pinhole_refusals_total", "Refused streams, forwards and connections of the process, by reason (docs/watching.md lists them: permitopen, port-taken, limit-streams, tunnel-down, server-refused, ...).", "reason")
	authFailures = desc("pinhole_auth_failures_total", "Failed authentications on the server, by reason: the reason= of the auth failed log line (unknown-key, from, expired, no-keys, keys-error, method, bad-request).", "reason")

	portmapState = desc("pinhole_portmap_mapping_state", "1 for the state a router mapping is in (mapped, retrying, lost, removed), 0 for the others.", "proto", "port", "method", "state")
	portmapLease = desc("pinhole_portmap_lease_remaining_seconds", "Time until a router mapping's lease ends; +Inf for a permanent one, 0 once run out or removed.", "proto", "port", "method")
)

var allDescs = []*prometheus.Desc{
	buildInfo, serverBytes, serverOpen, serverTotal, serverRefused, sessions, startupsDrop,
	tunnelBytes, tunnelOpen, tunnelTotal, tunnelRefused, tunnelState, reconnects, reconnectFailed,
	forwardBytes, forwardOpen, forwardTotal, forwardRefused, forwardUp,
	keepaliveRTT, keepaliveTimeouts, udpDatagrams, udpFlows, udpDrops, refusals, authFailures, portmapState, portmapLease,
}

// clientStates are the tunnel.State values pinhole_tunnel_state has a
// series for.
var clientStates = []tunnel.State{tunnel.StateConnecting, tunnel.StateUp, tunnel.StateReconnecting, tunnel.StateDraining, tunnel.StateClosed}

// collector reads Sources at each scrape.
type collector struct {
	src Sources
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	role := c.src.Role
	if role == "" {
		role = "client"
		if c.src.Servers != nil {
			role = "server"
		}
	}
	ch <- gauge(buildInfo, 1, c.src.Version, role)
	if c.src.Servers != nil {
		if ss := c.src.Servers(); len(ss) > 0 {
			collectServers(ch, ss)
		}
	}
	if c.src.Tunnels != nil {
		seen := map[string]bool{}
		var rings []*observe.Ring
		for _, t := range c.src.Tunnels() {
			if seen[t.Name] { // one series per name: the first wins
				continue
			}
			seen[t.Name] = true
			collectTunnel(ch, t)
			if t.Client != nil && !slices.Contains(rings, t.Client.Events()) {
				rings = append(rings, t.Client.Events())
			}
		}
		collectEvents(ch, true, rings...)
	}
	if c.src.Portmap != nil {
		collectPortmap(ch, c.src.Portmap.Mappings(), time.Now())
	}
}

func counter(d *prometheus.Desc, v float64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
}

func gauge(d *prometheus.Desc, v float64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

// collectServers sends the sums of ss's figures; their event rings are
// counted once each (server -c's generations share one).
func collectServers(ch chan<- prometheus.Metric, ss []*tunnel.Server) {
	var (
		st      tunnel.Stats
		n       tunnel.Counters
		dropped uint64
		rings   []*observe.Ring
	)
	for _, s := range ss {
		st = st.Add(s.Stats())
		n = n.Add(s.Counters())
		dropped += s.Startups().Dropped
		if !slices.Contains(rings, s.Events()) {
			rings = append(rings, s.Events())
		}
	}
	ch <- counter(serverBytes, float64(st.ToTarget), "to_target")
	ch <- counter(serverBytes, float64(st.FromTarget), "from_target")
	ch <- gauge(serverOpen, float64(st.StreamsOpen))
	ch <- counter(serverTotal, float64(st.StreamsTotal))
	ch <- counter(serverRefused, float64(st.StreamsRefused))
	ch <- gauge(sessions, float64(n.SessionsUnauthenticated), "unauthenticated")
	ch <- gauge(sessions, float64(n.SessionsAuthenticated), "authenticated")
	ch <- counter(startupsDrop, float64(dropped))
	collectCounters(ch, n, "")
	collectEvents(ch, false, rings...)
}

// clientReasons are the reasons only a client records.
var clientReasons = []observe.Reason{observe.RefusedTunnelDown, observe.RefusedByServer, observe.RefusedRemote}

// collectEvents sends the counts by reason of rings, each counted once
// however many tunnels share it: authentication failures apart, every
// other reason as a refusal. The reasons of the role (client, or server)
// are sent from the start, 0 until one happens; another only once it
// has.
func collectEvents(ch chan<- prometheus.Metric, client bool, rings ...*observe.Ring) {
	sum := map[observe.Reason]uint64{}
	for _, r := range rings {
		if r == nil {
			continue
		}
		for reason, n := range r.Counts() {
			sum[reason] += n
		}
	}
	for _, reason := range observe.Reasons() {
		n := sum[reason]
		switch {
		case n == 0 && slices.Contains(clientReasons, reason) != client:
		case reason.Auth():
			ch <- counter(authFailures, float64(n), string(reason))
		default:
			ch <- counter(refusals, float64(n), string(reason))
		}
	}
}

// collectCounters sends what a client and a server both count, labelled
// by tunnel ("" on a server).
func collectCounters(ch chan<- prometheus.Metric, n tunnel.Counters, name string) {
	ch <- histogram(keepaliveRTT, n.KeepaliveRTT, name)
	ch <- counter(keepaliveTimeouts, float64(n.KeepaliveTimeouts), name)
	u := n.UDP
	ch <- counter(udpDatagrams, float64(u.Datagrams), name, "in")
	ch <- counter(udpDatagrams, float64(u.Replies), name, "out")
	ch <- counter(udpFlows, float64(u.Flows), name)
	ch <- counter(udpDrops, float64(u.NoFlow), name, "no_flow")
	ch <- counter(udpDrops, float64(u.QueueFull), name, "queue_full")
	ch <- counter(udpDrops, float64(u.TooBig), name, "too_big")
	ch <- counter(udpDrops, float64(u.Failed), name, "failed")
	ch <- counter(udpDrops, float64(u.Refused), name, "refused")
}

func histogram(d *prometheus.Desc, h tunnel.Histogram, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(h.Bounds))
	var cum uint64
	for i, b := range h.Bounds {
		cum += h.Counts[i]
		buckets[b] = cum
	}
	return prometheus.MustNewConstHistogram(d, h.Count, h.Sum, buckets, labels...)
}

func collectTunnel(ch chan<- prometheus.Metric, t Tunnel) {
	c := t.Client
	if c == nil {
		for _, s := range clientStates {
			ch <- gauge(tunnelState, b2f(s == tunnel.StateConnecting), t.Name, s.String())
		}
		return
	}
	st := c.Stats()
	ch <- counter(tunnelBytes, float64(st.ToTarget), t.Name, "to_target")
	ch <- counter(tunnelBytes, float64(st.FromTarget), t.Name, "from_target")
	ch <- gauge(tunnelOpen, float64(st.StreamsOpen), t.Name)
	ch <- counter(tunnelTotal, float64(st.StreamsTotal), t.Name)
	ch <- counter(tunnelRefused, float64(st.StreamsRefused), t.Name)
	state := c.State()
	for _, s := range clientStates {
		ch <- gauge(tunnelState, b2f(s == state), t.Name, s.String())
	}
	n := c.Counters()
	for _, cause := range tunnel.ReconnectCauses {
		ch <- counter(reconnects, float64(n.Reconnects[cause]), t.Name, cause)
	}
	ch <- counter(reconnectFailed, float64(n.ReconnectsFailed), t.Name)
	collectCounters(ch, n, t.Name)
	seen := map[string]bool{}
	for _, f := range c.Forwardings() {
		sp := f.Spec()
		name := sp.Kind.String() + " " + sp.String()
		if seen[name] {
			continue
		}
		seen[name] = true
		fs := f.Stats()
		ch <- counter(forwardBytes, float64(fs.ToTarget), t.Name, name, "to_target")
		ch <- counter(forwardBytes, float64(fs.FromTarget), t.Name, name, "from_target")
		ch <- gauge(forwardOpen, float64(fs.StreamsOpen), t.Name, name)
		ch <- counter(forwardTotal, float64(fs.StreamsTotal), t.Name, name)
		ch <- counter(forwardRefused, float64(fs.StreamsRefused), t.Name, name)
		ch <- gauge(forwardUp, b2f(f.State() == tunnel.StateUp), t.Name, name)
	}
}

func collectPortmap(ch chan<- prometheus.Metric, ms []portmap.MappingState, now time.Time) {
	for _, m := range ms {
		proto, port, method := m.Proto.String(), strconv.Itoa(int(m.Internal.Port())), string(m.Method)
		for _, s := range portmap.States {
			ch <- gauge(portmapState, b2f(s == m.State), proto, port, method, s)
		}
		left := 0.0
		switch {
		case m.State == portmap.StateRemoved || m.State == portmap.StateLost:
		case m.GoodUntil.IsZero():
			left = math.Inf(1)
		default:
			left = max(0, m.GoodUntil.Sub(now).Seconds())
		}
		ch <- gauge(portmapLease, left, proto, port, method)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// httpMetrics are the counts of WrapHTTP, made on first use.
type httpMetrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec

	mu    sync.Mutex
	names map[string]struct{} // the name labels given so far
}

// maxHTTPNames is how many names get series of their own: tunnels come
// and go, and a series, once made, stays for the process's life, so a
// client cycling through names would otherwise grow the exposition
// without end. Requests for names past it count as "other".
const maxHTTPNames = 1000

// label is name, or "other" once maxHTTPNames other names have series.
func (m *httpMetrics) label(name string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.names[name]; ok {
		return name
	}
	if len(m.names) >= maxHTTPNames {
		return "other"
	}
	m.names[name] = struct{}{}
	return name
}

// WrapHTTP counts each request next answers: pinhole_http_requests_total
// by name and status class, and pinhole_http_request_duration_seconds by
// name, from the request to the end of its answer. nameOf gives a
// request's Host as a label: the public name it is for, or "" for a Host
// that is no tunnel's (it must return a bounded set of values: names
// that tunnels hold, never the Host as sent).
func (m *Metrics) WrapHTTP(next http.Handler, nameOf func(host string) string) http.Handler {
	m.mu.Lock()
	if m.http == nil {
		m.http = &httpMetrics{
			requests: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "pinhole_http_requests_total",
				Help: "HTTP requests to public names (--domain), by name (\"\" for a Host that is no tunnel's) and status class (1xx to 5xx).",
			}, []string{"name", "code"}),
			latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
				Name:    "pinhole_http_request_duration_seconds",
				Help:    "Time from an HTTP request to the end of its answer (to the upgrade for a WebSocket), by name.",
				Buckets: []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
			}, []string{"name"}),
			names: make(map[string]struct{}),
		}
		m.reg.MustRegister(m.http.requests, m.http.latency)
	}
	hm := m.http
	m.mu.Unlock()
	return &countedHandler{next: next, nameOf: nameOf, m: hm}
}

// countedHandler is WrapHTTP's handler. It has next's Owns, which
// transport.Dispatcher asks a handler for (a public name's Host is all
// its service's).
type countedHandler struct {
	next   http.Handler
	nameOf func(string) string
	m      *httpMetrics
}

func (h *countedHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	sw := &statusWriter{ResponseWriter: w}
	h.next.ServeHTTP(sw, r)
	name := h.m.label(h.nameOf(r.Host))
	h.m.requests.WithLabelValues(name, sw.class()).Inc()
	h.m.latency.WithLabelValues(name).Observe(time.Since(start).Seconds())
}

// Owns is next's Owns, false if it has none.
func (h *countedHandler) Owns(host string) bool {
	o, ok := h.next.(interface{ Owns(string) bool })
	return ok && o.Owns(host)
}

// statusWriter notes the status of an answer. Unwrap lets
// http.ResponseController reach the connection's deadlines, Flush and
// Hijack under it; Hijack is its own so an upgrade counts as 101.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 || w.code < 200 && code >= 200 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.code == 0 || w.code < 200 {
		w.code = http.StatusSwitchingProtocols
	}
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// class is the status class label: "2xx" for 200-299, and so on; an
// answer that wrote nothing counts as 200, as net/http sends.
func (w *statusWriter) class() string {
	code := w.code
	if code == 0 {
		code = http.StatusOK
	}
	if code < 100 || code > 599 {
		return "other"
	}
	return strconv.Itoa(code/100) + "xx"
}
