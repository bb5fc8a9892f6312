// Package portmap opens ports on a home router: PCP (RFC 6887), NAT-PMP
// (RFC 6886) and UPnP IGD (WANIPConnection v1 and v2, WANPPPConnection),
// behind one small Mapping interface in the spirit of Tailscale's
// net/portmapper.
//
// A Client finds the default gateway (or takes Config.Gateway), asks all
// three protocols at once and maps with the best one that answered (PCP,
// then NAT-PMP, then UPnP). Keep renews a Mapping before its lease ends,
// retries with backoff when the gateway stops answering, and removes the
// mapping when its context ends.
//
// Only IPv4 is handled: the gateway comes from the IPv4 routing table and
// every mapping is an IPv4 one.
//
// Every parser of bytes a router sends (NAT-PMP and PCP responses, SSDP
// responses, the IGD description, SOAP responses) is fuzzed.
package portmap

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Proto is the transport protocol of a mapping.
type Proto uint8

const (
	TCP Proto = 6  // IANA protocol number, as PCP carries it
	UDP Proto = 17 // IANA protocol number, as PCP carries it
)

// ParseProto parses "tcp" or "udp" (any case).
func ParseProto(s string) (Proto, error) {
	switch strings.ToLower(s) {
	case "tcp":
		return TCP, nil
	case "udp":
		return UDP, nil
	}
	return 0, fmt.Errorf("portmap: unknown protocol %q: use tcp or udp", s)
}

func (p Proto) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return fmt.Sprintf("proto(%d)", uint8(p))
}

// Method is a port mapping protocol.
type Method string

const (
	PCP    Method = "pcp"
	NATPMP Method = "natpmp"
	UPnP   Method = "upnp"
)

// Methods lists every method in the order of preference.
var Methods = []Method{PCP, NATPMP, UPnP}

// ParseMethod parses "pcp", "natpmp" or "upnp"; "auto" and "" give nil,
// meaning all of them.
func ParseMethod(s string) ([]Method, error) {
	switch strings.ToLower(s) {
	case "", "auto":
		return nil, nil
	case "pcp":
		return []Method{PCP}, nil
	case "natpmp", "nat-pmp", "pmp":
		return []Method{NATPMP}, nil
	case "upnp":
		return []Method{UPnP}, nil
	}
	return nil, fmt.Errorf("portmap: unknown method %q: use auto, pcp, natpmp or upnp", s)
}

// Config configures a Client. The zero value discovers everything.
type Config struct {
	// Gateway is the router's address. Zero means the default gateway
	// from the routing table.
	Gateway netip.Addr

	// PMPPort is the UDP port PCP and NAT-PMP are sent to. Zero means
	// 5351, the port both RFCs assign; tests point it at a fake.
	PMPPort uint16

	// SSDPAddr is where the UPnP M-SEARCH goes. Zero means the SSDP
	// multicast group 239.255.255.250:1900, sent from the address that
	// routes to the gateway; a unicast address asks that one device
	// (tests point it at a fake on 127.0.0.1).
	SSDPAddr netip.AddrPort

	// Methods are the protocols to try. Nil means all of them (Methods).
	Methods []Method

	// Timeout bounds how long one protocol may take to answer when the
	// caller's context has no earlier deadline. Zero means 2 s.
	Timeout time.Duration

	// Description is the text routers show next to a UPnP mapping. Empty
	// means "pinhole".
	Description string

	// Logger gets one line per event (mapped, renewed, retrying,
	// removed). Nil discards them.
	Logger *slog.Logger

	// Status, if not nil, gets the state of every mapping Keep holds
	// (status.go), for metrics.
	Status *Status
}

// Request is what to map.
type Request struct {
	Proto Proto
	// InternalPort is the port on this machine.
	InternalPort uint16
	// ExternalPort is the port wanted on the router's public address.
	// Zero means "any": the internal port is suggested first, and the
	// router may give another. A non-zero port that the router cannot
	// give is an error (ErrConflict).
	ExternalPort uint16
	// Lifetime is the lease asked for. Zero means DefaultLifetime.
	Lifetime time.Duration
}

// DefaultLifetime is the lease asked for when Request.Lifetime is zero.
const DefaultLifetime = 2 * time.Hour

// Mapping is a port mapping held on a router.
type Mapping interface {
	// Method is the protocol that made it.
	Method() Method
	// Proto is TCP or UDP.
	Proto() Proto
	// Internal is this machine's address and port, as the router sees it.
	Internal() netip.AddrPort
	// External is the router's public address and the mapped port:
	// what people elsewhere connect to.
	External() netip.AddrPort
	// GoodUntil is when the lease ends; zero for a permanent one.
	GoodUntil() time.Time
	// RenewAfter is when the lease should be renewed.
	RenewAfter() time.Time
	// Release removes the mapping from the router. It is idempotent:
	// after the first call it does nothing and returns nil.
	Release(ctx context.Context) error
}

// Sentinel errors: a *RouterError or other error from this package wraps
// one of these when it applies, for errors.Is.
var (
	// ErrNoGateway: no default gateway in the routing table.
	ErrNoGateway = errors.New("portmap: no default gateway in the routing table; is this machine on a network? give the router's address (--gateway)")
	// ErrNoAnswer: the gateway did not answer this protocol.
	ErrNoAnswer = errors.New("portmap: no answer")
	// ErrConflict: the external port is taken by another mapping.
	ErrConflict = errors.New("portmap: the external port is taken by another mapping")
	// ErrNotAuthorized: the router refuses to map for this host.
	ErrNotAuthorized = errors.New("portmap: the router refuses port mapping for this host")
	// ErrNoResources: the router has no room for another mapping.
	ErrNoResources = errors.New("portmap: the router is out of resources for mappings")
	// ErrLeaseRefused: the router refused the asked lease.
	ErrLeaseRefused = errors.New("portmap: the router refused the lease duration")
	// ErrNoSuchMapping: there is no such mapping to remove.
	ErrNoSuchMapping = errors.New("portmap: no such mapping")
	// ErrCannotList: the protocol has no way to list mappings.
	ErrCannotList = errors.New("portmap: this protocol cannot list mappings")
)

// RouterError is a refusal the router sent, with its protocol's code.
type RouterError struct {
	Method Method
	Op     string // "map", "delete", "list", "external address"
	Code   int    // the protocol's result or error code
	Name   string // the code's name in its RFC or spec
	Kind   error  // one of the sentinels above, or nil
}

func (e *RouterError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "portmap: %s %s: the router answered %s (code %d)", e.Method, e.Op, e.Name, e.Code)
	if hint := hintFor(e.Kind); hint != "" {
		b.WriteString(": ")
		b.WriteString(hint)
	}
	return b.String()
}

func (e *RouterError) Unwrap() error { return e.Kind }

// hintFor says what to do next about a refusal of kind err.
func hintFor(err error) string {
	switch err {
	case ErrConflict:
		return "another mapping holds that external port; ask for another one, or for any port"
	case ErrNotAuthorized:
		return "the router refuses mappings for this host; allow it (or turn UPnP / NAT-PMP on) in the router's settings"
	case ErrNoResources:
		return "the router's mapping table is full; remove mappings nobody uses"
	case ErrLeaseRefused:
		return "the router refused that lease; ask for a shorter lifetime"
	case ErrNoSuchMapping:
		return "there is no such mapping on the router"
	}
	return ""
}

// mapping is the one implementation of Mapping; each protocol fills in
// release.
type mapping struct {
	method     Method
	proto      Proto
	internal   netip.AddrPort
	external   netip.AddrPort
	asked      time.Duration // the lifetime asked for, to ask again on renewal
	wanted     uint16        // Request.ExternalPort
	goodUntil  time.Time
	renewAfter time.Time
	// state a protocol keeps between renewals (the PCP nonce, the UPnP
	// service); nil if none.
	state any

	release     func(ctx context.Context) error
	releaseOnce sync.Once
	releaseErr  error
}

func (m *mapping) Method() Method           { return m.method }
func (m *mapping) Proto() Proto             { return m.proto }
func (m *mapping) Internal() netip.AddrPort { return m.internal }
func (m *mapping) External() netip.AddrPort { return m.external }
func (m *mapping) GoodUntil() time.Time     { return m.goodUntil }
func (m *mapping) RenewAfter() time.Time    { return m.renewAfter }

func (m *mapping) Release(ctx context.Context) error {
	m.releaseOnce.Do(func() {
		if m.release != nil {
			m.releaseErr = m.release(ctx)
		}
	})
	return m.releaseErr
}

func (m *mapping) String() string {
	return fmt.Sprintf("%s %s %s -> %s", m.method, m.proto, m.external, m.internal)
}

// newMapping returns a mapping of req from gw.local to external.
func newMapping(method Method, gw gateway, req Request, external netip.AddrPort, state any) *mapping {
	return &mapping{
		method:   method,
		proto:    req.Proto,
		internal: netip.AddrPortFrom(gw.local, req.InternalPort),
		external: external,
		asked:    req.Lifetime,
		wanted:   req.ExternalPort,
		state:    state,
	}
}

// checkWanted releases a new mapping m, and says so, when the router gave
// another external port than the one asked for.
func checkWanted(ctx context.Context, m *mapping, prev *mapping) error {
	if m.wanted == 0 || prev != nil || m.external.Port() == m.wanted {
		return nil
	}
	m.Release(ctx)
	return fmt.Errorf("%w: %s gave external port %d instead of %d", ErrConflict, m.method, m.external.Port(), m.wanted)
}

// setLease sets goodUntil and renewAfter from the lifetime the router
// granted (0: permanent). The lease is renewed at half of the shorter of
// what was granted and what was asked: a router that grants less than
// asked is renewed in time, and one that grants more (PCP servers have a
// minimum) is still renewed as often as the caller wanted.
func (m *mapping) setLease(now time.Time, granted time.Duration) {
	if granted > 0 {
		m.goodUntil = now.Add(granted)
	} else {
		m.goodUntil = time.Time{}
	}
	every := m.asked
	if granted > 0 && granted < every {
		every = granted
	}
	m.renewAfter = now.Add(every / 2)
}

// gateway is where requests go and where they come from.
type gateway struct {
	addr  netip.Addr // the router
	local netip.Addr // this machine's address on the way to it
}

// protocol is one of PCP, NAT-PMP, UPnP.
type protocol interface {
	method() Method
	// probe checks that the gateway answers and returns its external
	// address if the protocol can tell it cheaply (zero otherwise).
	probe(ctx context.Context, gw gateway) (netip.Addr, error)
	// add maps req; prev is the mapping being renewed, or nil.
	add(ctx context.Context, gw gateway, req Request, prev *mapping) (*mapping, error)
	// remove deletes a mapping nobody holds a Mapping for (a process
	// that was killed); external is its external port if known.
	remove(ctx context.Context, gw gateway, req Request) error
}

// Client maps ports on one router. Its methods are safe for concurrent use.
type Client struct {
	cfg    Config
	log    *slog.Logger
	protos map[Method]protocol
}

// New returns a Client for cfg. It sends nothing until asked.
func New(cfg Config) *Client {
	c := &Client{cfg: cfg, log: cfg.Logger}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.cfg.PMPPort == 0 {
		c.cfg.PMPPort = 5351
	}
	if !c.cfg.SSDPAddr.IsValid() {
		c.cfg.SSDPAddr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{239, 255, 255, 250}), 1900)
	}
	if c.cfg.Timeout <= 0 {
		c.cfg.Timeout = 2 * time.Second
	}
	if c.cfg.Description == "" {
		c.cfg.Description = "pinhole"
	}
	if len(c.cfg.Methods) == 0 {
		c.cfg.Methods = Methods
	}
	c.protos = map[Method]protocol{
		PCP:    newPCP(c),
		NATPMP: newNATPMP(c),
		UPnP:   newUPnP(c),
	}
	return c
}

// gateway finds the router and this machine's address towards it.
func (c *Client) gateway() (gateway, error) {
	gw := c.cfg.Gateway
	if !gw.IsValid() {
		var err error
		if gw, err = DefaultGateway(); err != nil {
			return gateway{}, err
		}
	}
	gw = gw.Unmap()
	if !gw.Is4() {
		return gateway{}, fmt.Errorf("portmap: gateway %s is not an IPv4 address; only IPv4 routers are handled", gw)
	}
	local, err := localAddrTo(gw, c.cfg.PMPPort)
	if err != nil {
		return gateway{}, err
	}
	return gateway{addr: gw, local: local}, nil
}

// withTimeout bounds ctx by the configured per-protocol timeout.
func (c *Client) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, c.cfg.Timeout)
}

// attempt is one protocol's outcome in Map, Probe or Delete.
type attempt struct {
	method   Method
	external netip.Addr
	err      error
}

// probeAll asks every configured protocol at once and returns a channel
// per method, in the order of c.cfg.Methods.
// With full, PCP also learns the external address (see Probe).
func (c *Client) probeAll(ctx context.Context, gw gateway, full bool) []chan attempt {
	chs := make([]chan attempt, len(c.cfg.Methods))
	for i, m := range c.cfg.Methods {
		chs[i] = make(chan attempt, 1)
		go func() {
			pctx, cancel := c.withTimeout(ctx)
			defer cancel()
			ext, err := c.protos[m].probe(pctx, gw)
			if p, ok := c.protos[m].(*pcp); ok && err == nil && full {
				ext, err = p.externalAddr(pctx, gw)
			}
			chs[i] <- attempt{method: m, external: ext, err: err}
		}()
	}
	return chs
}

// Map maps req on the router with the first protocol, in the order of
// preference, that answers and grants it. All protocols are asked at once;
// when none answers, the error says what each one did.
func (c *Client) Map(ctx context.Context, req Request) (Mapping, error) {
	if err := req.check(); err != nil {
		return nil, err
	}
	if req.Lifetime == 0 {
		req.Lifetime = DefaultLifetime
	}
	gw, err := c.gateway()
	if err != nil {
		return nil, err
	}
	var tried []attempt
	if len(c.cfg.Methods) == 1 {
		// One method forced: no probe first, map at once.
		m := c.cfg.Methods[0]
		pm, err := c.protos[m].add(ctx, gw, req, nil)
		if err == nil {
			c.log.Info("portmap: mapped", "method", m, "proto", req.Proto, "external", pm.external, "internal", pm.internal, "lease", leaseText(pm))
			return pm, nil
		}
		if errors.Is(err, ErrNoAnswer) && ctx.Err() == nil {
			return nil, &NoMethodError{Gateway: gw.addr, Tried: []MethodError{{Method: m, Err: err}}}
		}
		return nil, err
	}
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, ch := range c.probeAll(pctx, gw, false) {
		a := <-ch
		if a.err == nil {
			pm, err := c.protos[a.method].add(ctx, gw, req, nil)
			if err == nil {
				cancel()
				c.log.Info("portmap: mapped", "method", a.method, "proto", req.Proto, "external", pm.external, "internal", pm.internal, "lease", leaseText(pm))
				return pm, nil
			}
			a.err = err
			// A refusal about the port itself would be the same
			// elsewhere; still try the others, a router may apply
			// different rules per protocol.
		}
		c.log.Debug("portmap: method failed", "method", a.method, "err", a.err)
		tried = append(tried, a)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return nil, &NoMethodError{Gateway: gw.addr, Tried: triedErrors(tried)}
}

func triedErrors(tried []attempt) []MethodError {
	out := make([]MethodError, len(tried))
	for i, a := range tried {
		out[i] = MethodError{Method: a.method, Err: a.err}
	}
	return out
}

// MethodError is one protocol's failure.
type MethodError struct {
	Method Method
	Err    error
}

// NoMethodError says that no protocol could map, and what each one did.
type NoMethodError struct {
	Gateway netip.Addr
	Tried   []MethodError
}

func (e *NoMethodError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "portmap: no port mapping protocol worked with gateway %s (tried", e.Gateway)
	for i, t := range e.Tried {
		if i > 0 {
			b.WriteString(";")
		}
		fmt.Fprintf(&b, " %s: %v", t.Method, strings.TrimPrefix(t.Err.Error(), "portmap: "))
	}
	b.WriteString("); turn on UPnP or NAT-PMP in the router's settings, or check that this is the router's address")
	return b.String()
}

// Unwrap returns the errors of each method, so errors.Is finds a refusal
// (ErrNotAuthorized, ErrConflict, ...) that any of them gave.
func (e *NoMethodError) Unwrap() []error {
	out := make([]error, len(e.Tried))
	for i, t := range e.Tried {
		out[i] = t.Err
	}
	return out
}

func (r Request) check() error {
	if r.Proto != TCP && r.Proto != UDP {
		return fmt.Errorf("portmap: protocol %v: use TCP or UDP", r.Proto)
	}
	if r.InternalPort == 0 {
		return errors.New("portmap: internal port 0: give the port the service listens on")
	}
	if r.Lifetime < 0 {
		return fmt.Errorf("portmap: negative lifetime %v", r.Lifetime)
	}
	return nil
}

func leaseText(m *mapping) string {
	if m.goodUntil.IsZero() {
		return "permanent"
	}
	return time.Until(m.goodUntil).Round(time.Second).String()
}

// ProbeResult is what one protocol answered in Probe.
type ProbeResult struct {
	Method   Method
	External netip.Addr // zero if the protocol cannot tell or did not answer
	Err      error      // nil if the gateway answers this protocol
}

// Probe asks every configured protocol at once whether the gateway
// answers, each within the configured Timeout, and returns one result per
// method in the order of preference. PCP has no query for the external
// address: Probe learns it by mapping a random high UDP port for a
// moment and removing it again.
func (c *Client) Probe(ctx context.Context) ([]ProbeResult, error) {
	gw, err := c.gateway()
	if err != nil {
		return nil, err
	}
	var out []ProbeResult
	for _, ch := range c.probeAll(ctx, gw, true) {
		a := <-ch
		out = append(out, ProbeResult{Method: a.method, External: a.external, Err: a.err})
	}
	return out, nil
}

// Delete removes a mapping left behind (by a process that was killed, for
// instance) with the first configured protocol, in the order of
// preference, that answers and removes it, and returns that protocol.
// req.ExternalPort zero means the same as the internal port.
func (c *Client) Delete(ctx context.Context, req Request) (Method, error) {
	if err := req.check(); err != nil {
		return "", err
	}
	if req.ExternalPort == 0 {
		req.ExternalPort = req.InternalPort
	}
	gw, err := c.gateway()
	if err != nil {
		return "", err
	}
	var tried []attempt
	for _, ch := range c.probeAll(ctx, gw, false) {
		a := <-ch
		if a.err == nil {
			dctx, cancel := c.withTimeout(ctx)
			a.err = c.protos[a.method].remove(dctx, gw, req)
			cancel()
			if a.err == nil {
				c.log.Info("portmap: removed", "method", a.method, "proto", req.Proto, "external_port", req.ExternalPort, "internal_port", req.InternalPort)
				return a.method, nil
			}
		}
		tried = append(tried, a)
	}
	if len(tried) == 1 {
		return "", tried[0].err
	}
	return "", &NoMethodError{Gateway: gw.addr, Tried: triedErrors(tried)}
}

// Entry is one mapping the router lists.
type Entry struct {
	Proto       Proto
	External    netip.AddrPort // address zero when the router does not say
	Internal    netip.AddrPort
	Description string
	Lease       time.Duration // 0: permanent
	Enabled     bool
}

// List returns the router's mappings. Only UPnP can list; with only PCP
// or NAT-PMP configured it returns ErrCannotList.
func (c *Client) List(ctx context.Context) ([]Entry, error) {
	has := false
	for _, m := range c.cfg.Methods {
		has = has || m == UPnP
	}
	if !has {
		return nil, fmt.Errorf("%w (%s): neither PCP nor NAT-PMP has a request that lists mappings; use UPnP", ErrCannotList, strings.Join(methodNames(c.cfg.Methods), ", "))
	}
	gw, err := c.gateway()
	if err != nil {
		return nil, err
	}
	return c.protos[UPnP].(*upnp).list(ctx, gw)
}

func methodNames(ms []Method) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = string(m)
	}
	return out
}
