// Package portmaptest is a fake home router for tests, in the manner of
// wireguard-go's conn/bindtest: one Gateway on 127.0.0.1 answers NAT-PMP
// (RFC 6886) and PCP (RFC 6887) on one UDP port, SSDP M-SEARCH on another,
// and UPnP IGD (the description and SOAP control) over HTTP, all sharing
// one mapping table as miniupnpd does. It is written apart from package
// portmap, from the RFCs and the IGD spec, so that each checks the other.
//
// Point a portmap.Config at it with Gateway = Addr, PMPPort = PMPPort and
// SSDPAddr = SSDPAddr. Nothing here ever sends to a multicast group.
package portmaptest

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/xml"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Config says how the fake router behaves. The zero value answers all
// three protocols with a miniupnpd-like IGD v1 description.
type Config struct {
	// External is the router's public address. Zero means 203.0.113.7.
	External netip.Addr
	// NoPCP, NoNATPMP, NoUPnP turn a protocol off. With both PCP and
	// NAT-PMP off the UDP port is closed (port unreachable).
	NoPCP, NoNATPMP, NoUPnP bool
	// Description is the IGD description XML served over HTTP. Empty
	// means MiniUPnPdDescription. "{{BASE}}" in it becomes the HTTP
	// server's http://127.0.0.1:port.
	Description string
	// MinLifetime and MaxLifetime bound the lease granted by PCP and
	// NAT-PMP (miniupnpd's PCP grants at least 120 s). Zero: no bound.
	MinLifetime, MaxLifetime time.Duration
	// PermanentOnly makes AddPortMapping refuse any lease but 0 with
	// UPnP error 725, as many IGD v1 routers do.
	PermanentOnly bool
}

// Mapping is one entry of the fake router's table.
type Mapping struct {
	Method      string // "pcp", "natpmp", "upnp"
	Proto       string // "tcp" or "udp"
	External    uint16
	Internal    netip.AddrPort
	Lifetime    time.Duration // as granted; 0 is permanent
	Expires     time.Time     // zero if permanent
	Description string
	nonce       [12]byte
	seq         int // order of creation
}

// Gateway is a running fake router.
type Gateway struct {
	// Addr is where it listens: 127.0.0.1.
	Addr netip.Addr
	// PMPPort is the UDP port of PCP and NAT-PMP.
	PMPPort uint16
	// SSDPAddr is where it answers M-SEARCH.
	SSDPAddr netip.AddrPort
	// URL is the base of its HTTP server (description and control).
	URL string

	cfg  Config
	pmp  *net.UDPConn
	ssdp *net.UDPConn
	http *httptest.Server
	wg   sync.WaitGroup

	closeOnce sync.Once

	mu       sync.Mutex
	table    map[string]*Mapping // by "proto/external"
	start    time.Time           // of the epoch
	down     bool
	failNext map[string]int // method -> code for its next map request
	log      []string
	seq      int // of the last mapping made
}

// MiniUPnPdDescription is an IGD v1 description laid out as miniupnpd
// 2.x serves it (rootDesc.xml), with relative URLs.
const MiniUPnPdDescription = `<?xml version="1.0"?>
<root xmlns="urn:schemas-upnp-org:device-1-0"><specVersion><major>1</major><minor>1</minor></specVersion><device><deviceType>urn:schemas-upnp-org:device:InternetGatewayDevice:1</deviceType><friendlyName>pinhole fake router</friendlyName><manufacturer>portmaptest</manufacturer><UDN>uuid:00000000-0000-0000-0000-000000000001</UDN><serviceList><service><serviceType>urn:schemas-upnp-org:service:Layer3Forwarding:1</serviceType><serviceId>urn:upnp-org:serviceId:L3Forwarding1</serviceId><SCPDURL>/L3F.xml</SCPDURL><controlURL>/ctl/L3F</controlURL><eventSubURL>/evt/L3F</eventSubURL></service></serviceList><deviceList><device><deviceType>urn:schemas-upnp-org:device:WANDevice:1</deviceType><friendlyName>WANDevice</friendlyName><serviceList><service><serviceType>urn:schemas-upnp-org:service:WANCommonInterfaceConfig:1</serviceType><serviceId>urn:upnp-org:serviceId:WANCommonIFC1</serviceId><SCPDURL>/WANCfg.xml</SCPDURL><controlURL>/ctl/CmnIfCfg</controlURL><eventSubURL>/evt/CmnIfCfg</eventSubURL></service></serviceList><deviceList><device><deviceType>urn:schemas-upnp-org:device:WANConnectionDevice:1</deviceType><friendlyName>WANConnectionDevice</friendlyName><serviceList><service><serviceType>urn:schemas-upnp-org:service:WANIPConnection:1</serviceType><serviceId>urn:upnp-org:serviceId:WANIPConn1</serviceId><SCPDURL>/WANIPCn.xml</SCPDURL><controlURL>/ctl/IPConn</controlURL><eventSubURL>/evt/IPConn</eventSubURL></service></serviceList></device></deviceList></device></deviceList></device></root>`

// Start starts a fake router on 127.0.0.1; it stops when tb ends.
func Start(tb testing.TB, cfg Config) *Gateway {
	tb.Helper()
	g, err := Listen(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { g.Close() })
	return g
}

// Listen starts a fake router on 127.0.0.1, for use outside a test (an
// Example); Close stops it.
func Listen(cfg Config) (*Gateway, error) {
	if !cfg.External.IsValid() {
		cfg.External = netip.MustParseAddr("203.0.113.7")
	}
	if cfg.Description == "" {
		cfg.Description = MiniUPnPdDescription
	}
	g := &Gateway{
		Addr:     netip.MustParseAddr("127.0.0.1"),
		cfg:      cfg,
		table:    map[string]*Mapping{},
		start:    time.Now().Add(-100 * time.Second), // an epoch that has run a while
		failNext: map[string]int{},
	}
	var err error
	if g.pmp, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
		return nil, fmt.Errorf("portmaptest: %w", err)
	}
	g.PMPPort = uint16(g.pmp.LocalAddr().(*net.UDPAddr).Port)
	if cfg.NoPCP && cfg.NoNATPMP {
		// Nobody listens: the client gets port unreachable. Keep the
		// number (closing and reusing it would race with others).
		g.pmp.Close()
	} else {
		g.wg.Go(g.servePMP)
	}
	g.http = httptest.NewServer(http.HandlerFunc(g.serveHTTP))
	g.URL = g.http.URL
	if g.ssdp, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}); err != nil {
		g.pmp.Close()
		g.http.Close()
		return nil, fmt.Errorf("portmaptest: %w", err)
	}
	g.SSDPAddr = g.ssdp.LocalAddr().(*net.UDPAddr).AddrPort()
	g.wg.Go(g.serveSSDP)
	return g, nil
}

// Close stops the router and waits for its goroutines. It is idempotent.
func (g *Gateway) Close() error {
	g.closeOnce.Do(func() {
		g.pmp.Close()
		g.ssdp.Close()
		g.http.Close()
		g.wg.Wait()
	})
	return nil
}

// Mappings returns the live mappings, sorted by protocol and port.
func (g *Gateway) Mappings() []Mapping {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.expire()
	var out []Mapping
	for _, m := range g.table {
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Proto != out[j].Proto {
			return out[i].Proto < out[j].Proto
		}
		return out[i].External < out[j].External
	})
	return out
}

// Log returns one line per request served, as "method action ...".
func (g *Gateway) Log() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]string(nil), g.log...)
}

// Count returns how many logged requests start with prefix.
func (g *Gateway) Count(prefix string) int {
	n := 0
	for _, l := range g.Log() {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

// SetDown makes the router stop answering (true) or answer again.
func (g *Gateway) SetDown(down bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.down = down
}

// SetExternal changes the router's public address, as a new DHCP lease
// from the ISP does.
func (g *Gateway) SetExternal(a netip.Addr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.cfg.External = a
}

// Restart forgets every mapping and starts a new epoch, as a reboot does.
func (g *Gateway) Restart() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.table = map[string]*Mapping{}
	g.start = time.Now()
}

// FailNext makes the next map request of method ("pcp", "natpmp",
// "upnp") fail with code: a PCP result code, a NAT-PMP result code or a
// UPnP error code.
func (g *Gateway) FailNext(method string, code int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.failNext[method] = code
}

// Add puts a mapping in the table, as another host on the LAN would.
func (g *Gateway) Add(m Mapping) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.store(&m)
}

// store puts m in the table. g.mu held.
func (g *Gateway) store(m *Mapping) {
	if old, ok := g.table[key(m.Proto, m.External)]; ok {
		m.seq = old.seq // a renewal keeps its place
	} else {
		g.seq++
		m.seq = g.seq
	}
	g.table[key(m.Proto, m.External)] = m
}

func key(proto string, ext uint16) string { return proto + "/" + strconv.Itoa(int(ext)) }

func (g *Gateway) logf(format string, args ...any) {
	g.log = append(g.log, fmt.Sprintf(format, args...))
}

// expire drops mappings whose lease ended. g.mu held.
func (g *Gateway) expire() {
	now := time.Now()
	for k, m := range g.table {
		if !m.Expires.IsZero() && now.After(m.Expires) {
			delete(g.table, k)
		}
	}
}

func (g *Gateway) epoch() uint32 { return uint32(time.Since(g.start) / time.Second) }

// grant clamps a lifetime asked over PCP or NAT-PMP.
func (g *Gateway) grant(secs uint32) time.Duration {
	d := time.Duration(secs) * time.Second
	if g.cfg.MinLifetime > 0 && d < g.cfg.MinLifetime {
		d = g.cfg.MinLifetime
	}
	if g.cfg.MaxLifetime > 0 && d > g.cfg.MaxLifetime {
		d = g.cfg.MaxLifetime
	}
	return d
}

// place finds the external port for a new mapping of client: an existing
// one of client's that same says is the same mapping, else the suggested
// one if free, else the next free one. With strict, a suggested port held
// by another is a failure (0).
func (g *Gateway) place(proto string, client netip.AddrPort, suggested uint16, strict bool, same func(*Mapping) bool) (uint16, *Mapping) {
	g.expire()
	for _, m := range g.table {
		if m.Proto == proto && m.Internal == client && same(m) {
			return m.External, m
		}
	}
	if suggested == 0 {
		suggested = client.Port()
	}
	for p, i := suggested, 0; i < 65536; p, i = p+1, i+1 {
		if p < 1024 {
			continue
		}
		if _, taken := g.table[key(proto, p)]; !taken {
			return p, nil
		}
		if strict {
			return 0, nil
		}
	}
	return 0, nil
}

func (g *Gateway) servePMP() {
	buf := make([]byte, 1500)
	for {
		n, from, err := g.pmp.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		g.mu.Lock()
		down := g.down
		var resp []byte
		if !down && n >= 2 {
			switch buf[0] {
			case 0:
				resp = g.natpmp(buf[:n], from)
			case 2:
				resp = g.pcp(buf[:n], from)
			default:
				resp = g.unsupportedVersion(buf[:n])
			}
		}
		g.mu.Unlock()
		if resp != nil {
			g.pmp.WriteToUDPAddrPort(resp, from)
		}
	}
}

// unsupportedVersion answers a version this server does not speak, in
// the format of the one it does (RFC 6887 section 9).
func (g *Gateway) unsupportedVersion(req []byte) []byte {
	if g.cfg.NoPCP {
		b := make([]byte, 8)
		b[1] = 0x80 | req[1]
		binary.BigEndian.PutUint16(b[2:4], 1)
		binary.BigEndian.PutUint32(b[4:8], g.epoch())
		return b
	}
	return g.pcpHeader(req[1]&0x7f, 1, 0)
}

func (g *Gateway) natpmp(req []byte, from netip.AddrPort) []byte {
	if g.cfg.NoNATPMP {
		return g.unsupportedVersion(req)
	}
	op := req[1]
	reply := func(result uint16, size int) []byte {
		b := make([]byte, size)
		b[1] = 0x80 | op
		binary.BigEndian.PutUint16(b[2:4], result)
		binary.BigEndian.PutUint32(b[4:8], g.epoch())
		return b
	}
	switch op {
	case 0:
		g.logf("natpmp address")
		b := reply(0, 12)
		a := g.cfg.External.As4()
		copy(b[8:12], a[:])
		return b
	case 1, 2:
		if len(req) < 12 {
			return reply(5, 8)
		}
		proto := map[byte]string{1: "udp", 2: "tcp"}[op]
		iport := binary.BigEndian.Uint16(req[4:6])
		eport := binary.BigEndian.Uint16(req[6:8])
		life := binary.BigEndian.Uint32(req[8:12])
		client := netip.AddrPortFrom(from.Addr(), iport)
		b := reply(0, 16)
		binary.BigEndian.PutUint16(b[8:10], iport)
		if life == 0 {
			g.logf("natpmp delete %s %d", proto, iport)
			for k, m := range g.table {
				if m.Proto == proto && m.Internal == client {
					delete(g.table, k)
				}
			}
			return b
		}
		g.logf("natpmp map %s %d->%d %ds", proto, eport, iport, life)
		if code, ok := g.failNext["natpmp"]; ok {
			delete(g.failNext, "natpmp")
			return reply(uint16(code), 16)
		}
		port, _ := g.place(proto, client, eport, false, func(*Mapping) bool { return true })
		if port == 0 {
			return reply(4, 16)
		}
		granted := g.grant(life)
		m := &Mapping{Method: "natpmp", Proto: proto, External: port, Internal: client, Lifetime: granted, Expires: time.Now().Add(granted), Description: "NAT-PMP"}
		g.store(m)
		binary.BigEndian.PutUint16(b[10:12], port)
		binary.BigEndian.PutUint32(b[12:16], uint32(granted/time.Second))
		return b
	}
	return reply(5, 8)
}

// pcpHeader returns an answer header (24 bytes).
func (g *Gateway) pcpHeader(op, result byte, lifetime uint32) []byte {
	b := make([]byte, 24)
	b[0] = 2
	b[1] = 0x80 | op
	b[3] = result
	binary.BigEndian.PutUint32(b[4:8], lifetime)
	binary.BigEndian.PutUint32(b[8:12], g.epoch())
	return b
}

func (g *Gateway) pcp(req []byte, from netip.AddrPort) []byte {
	if g.cfg.NoPCP {
		return g.unsupportedVersion(req)
	}
	if len(req) < 24 || len(req)%4 != 0 || req[1]&0x80 != 0 {
		return g.pcpHeader(req[1]&0x7f, 3, 0) // MALFORMED_REQUEST
	}
	op := req[1]
	life := binary.BigEndian.Uint32(req[4:8])
	client := netip.AddrFrom16([16]byte(req[8:24])).Unmap()
	if client != from.Addr() {
		return g.pcpHeader(op, 12, 0) // ADDRESS_MISMATCH
	}
	switch op {
	case 0:
		g.logf("pcp announce")
		return g.pcpHeader(op, 0, 0)
	case 1:
	default:
		return g.pcpHeader(op, 4, 0) // UNSUPP_OPCODE
	}
	if len(req) < 60 {
		return g.pcpHeader(op, 3, 0)
	}
	m := req[24:60]
	var nonce [12]byte
	copy(nonce[:], m[:12])
	proto := map[byte]string{6: "tcp", 17: "udp"}[m[12]]
	iport := binary.BigEndian.Uint16(m[16:18])
	eport := binary.BigEndian.Uint16(m[18:20])
	preferFailure := false
	for opts := req[60:]; len(opts) >= 4; {
		l := 4 + int(binary.BigEndian.Uint16(opts[2:4]))
		if opts[0] == 2 {
			preferFailure = true
		}
		if l > len(opts) {
			break
		}
		opts = opts[l:]
	}
	answer := func(result byte, lifetime uint32, port uint16) []byte {
		b := append(g.pcpHeader(op, result, lifetime), m...)
		binary.BigEndian.PutUint16(b[24+18:24+20], port)
		a := g.cfg.External.As16()
		copy(b[24+20:24+36], a[:])
		return b
	}
	if proto == "" {
		return answer(9, 0, 0) // UNSUPP_PROTOCOL
	}
	cl := netip.AddrPortFrom(client, iport)
	if life == 0 {
		// As miniupnpd 2.3.1 does: the oldest mapping of that internal
		// port decides, and another nonce's (or NAT-PMP's) is refused.
		g.logf("pcp delete %s %d", proto, iport)
		var first *Mapping
		for _, mm := range g.table {
			if mm.Proto == proto && mm.Internal == cl && (first == nil || mm.seq < first.seq) {
				first = mm
			}
		}
		if first == nil {
			return answer(8, 30, 0) // NO_RESOURCES, as miniupnpd says
		}
		if first.Method != "pcp" || first.nonce != nonce {
			return answer(2, 0, 0) // NOT_AUTHORIZED
		}
		delete(g.table, key(proto, first.External))
		return answer(0, 0, 0)
	}
	g.logf("pcp map %s %d->%d %ds", proto, eport, iport, life)
	if code, ok := g.failNext["pcp"]; ok {
		delete(g.failNext, "pcp")
		return answer(byte(code), 30, 0)
	}
	port, _ := g.place(proto, cl, eport, preferFailure, func(m *Mapping) bool { return m.Method == "pcp" && m.nonce == nonce })
	if port == 0 {
		if preferFailure {
			return answer(11, 30, 0) // CANNOT_PROVIDE_EXTERNAL
		}
		return answer(8, 30, 0) // NO_RESOURCES
	}
	granted := g.grant(life)
	g.store(&Mapping{Method: "pcp", Proto: proto, External: port, Internal: cl, Lifetime: granted, Expires: time.Now().Add(granted), Description: "PCP MAP", nonce: nonce})
	return answer(0, uint32(granted/time.Second), port)
}

func (g *Gateway) serveSSDP() {
	buf := make([]byte, 2048)
	for {
		n, from, err := g.ssdp.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		g.mu.Lock()
		skip := g.down || g.cfg.NoUPnP
		g.mu.Unlock()
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(buf[:n])))
		if skip || err != nil || req.Method != "M-SEARCH" {
			continue
		}
		st := req.Header.Get("St")
		if !strings.HasPrefix(st, "urn:schemas-upnp-org:device:InternetGatewayDevice:") && st != "ssdp:all" {
			continue
		}
		resp := "HTTP/1.1 200 OK\r\n" +
			"CACHE-CONTROL: max-age=120\r\n" +
			"ST: " + st + "\r\n" +
			"USN: uuid:00000000-0000-0000-0000-000000000001::" + st + "\r\n" +
			"EXT:\r\n" +
			"SERVER: Debian/12 UPnP/1.1 portmaptest/1.0\r\n" +
			"LOCATION: " + g.URL + "/rootDesc.xml\r\n\r\n"
		g.ssdp.WriteToUDPAddrPort([]byte(resp), from)
	}
}

// soapAction is a parsed SOAP request: the action and its arguments.
type soapAction struct {
	XMLName xml.Name
	Args    []struct {
		XMLName xml.Name
		Value   string `xml:",chardata"`
	} `xml:",any"`
}

func (g *Gateway) serveHTTP(w http.ResponseWriter, r *http.Request) {
	g.mu.Lock()
	down := g.down || g.cfg.NoUPnP
	g.mu.Unlock()
	if down {
		panic(http.ErrAbortHandler) // the connection just drops
	}
	if r.Method == http.MethodGet && r.URL.Path == "/rootDesc.xml" {
		w.Header().Set("Content-Type", `text/xml; charset="utf-8"`)
		io.WriteString(w, strings.ReplaceAll(g.cfg.Description, "{{BASE}}", g.URL))
		return
	}
	if r.Method != http.MethodPost {
		http.NotFound(w, r)
		return
	}
	svc, action, ok := strings.Cut(strings.Trim(r.Header.Get("SOAPAction"), `"`), "#")
	if !ok {
		http.Error(w, "no SOAPAction", http.StatusBadRequest)
		return
	}
	var env struct {
		Body struct {
			Action soapAction `xml:",any"`
		} `xml:"Body"`
	}
	if err := xml.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&env); err != nil || env.Body.Action.XMLName.Local != action {
		g.fault(w, 402, "Invalid Args")
		return
	}
	args := map[string]string{}
	for _, a := range env.Body.Action.Args {
		args[a.XMLName.Local] = strings.TrimSpace(a.Value)
	}
	client, _ := netip.ParseAddrPort(r.RemoteAddr)
	g.mu.Lock()
	out, code := g.soap(svc, action, args, client.Addr())
	g.mu.Unlock()
	if code != 0 {
		g.fault(w, code, "")
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<?xml version="1.0"?>`+"\r\n"+`<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body><u:%sResponse xmlns:u="%s">`, action, svc)
	for i := 0; i+1 < len(out); i += 2 {
		fmt.Fprintf(&b, "<%s>", out[i])
		xml.EscapeText(&b, []byte(out[i+1]))
		fmt.Fprintf(&b, "</%s>", out[i])
	}
	fmt.Fprintf(&b, `</u:%sResponse></s:Body></s:Envelope>`+"\r\n", action)
	w.Header().Set("Content-Type", `text/xml; charset="utf-8"`)
	io.WriteString(w, b.String())
}

var upnpErrorText = map[int]string{
	401: "Invalid Action", 402: "Invalid Args", 501: "Action Failed", 606: "Action not authorized",
	713: "SpecifiedArrayIndexInvalid", 714: "NoSuchEntryInArray", 718: "ConflictInMappingEntry",
	725: "OnlyPermanentLeasesSupported", 728: "NoPortMapsAvailable",
}

func (g *Gateway) fault(w http.ResponseWriter, code int, desc string) {
	if desc == "" {
		desc = upnpErrorText[code]
	}
	w.Header().Set("Content-Type", `text/xml; charset="utf-8"`)
	w.WriteHeader(http.StatusInternalServerError)
	fmt.Fprintf(w, `<?xml version="1.0"?>`+"\r\n"+`<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail><UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>%d</errorCode><errorDescription>%s</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>`+"\r\n", code, desc)
}

// soap runs one action; out is name, value pairs; code a UPnP error.
// g.mu held.
func (g *Gateway) soap(svc, action string, args map[string]string, from netip.Addr) (out []string, code int) {
	g.expire()
	v2 := strings.HasSuffix(svc, ":WANIPConnection:2")
	switch action {
	case "GetExternalIPAddress":
		g.logf("upnp GetExternalIPAddress")
		return []string{"NewExternalIPAddress", g.cfg.External.String()}, 0
	case "AddPortMapping", "AddAnyPortMapping":
		if action == "AddAnyPortMapping" && !v2 {
			return nil, 401
		}
		proto := strings.ToLower(args["NewProtocol"])
		eport, err1 := strconv.ParseUint(args["NewExternalPort"], 10, 16)
		iport, err2 := strconv.ParseUint(args["NewInternalPort"], 10, 16)
		client, err3 := netip.ParseAddr(args["NewInternalClient"])
		lease, err4 := strconv.ParseUint(args["NewLeaseDuration"], 10, 32)
		if err1 != nil || err2 != nil || err3 != nil || err4 != nil || (proto != "tcp" && proto != "udp") || iport == 0 {
			return nil, 402
		}
		g.logf("upnp %s %s %d->%s:%d %ds", action, proto, eport, client, iport, lease)
		if c, ok := g.failNext["upnp"]; ok {
			delete(g.failNext, "upnp")
			return nil, c
		}
		if client != from {
			return nil, 606 // secure_mode: only for oneself
		}
		if g.cfg.PermanentOnly && lease != 0 {
			return nil, 725
		}
		cl := netip.AddrPortFrom(client, uint16(iport))
		port := uint16(eport)
		if old, taken := g.table[key(proto, port)]; taken && old.Internal != cl {
			if action == "AddPortMapping" {
				return nil, 718
			}
			if port, _ = g.place(proto, cl, port, false, func(*Mapping) bool { return false }); port == 0 {
				return nil, 728
			}
		}
		m := &Mapping{Method: "upnp", Proto: proto, External: port, Internal: cl, Lifetime: time.Duration(lease) * time.Second, Description: args["NewPortMappingDescription"]}
		if lease > 0 {
			m.Expires = time.Now().Add(m.Lifetime)
		}
		g.store(m)
		if action == "AddAnyPortMapping" {
			return []string{"NewReservedPort", strconv.Itoa(int(port))}, 0
		}
		return nil, 0
	case "DeletePortMapping":
		proto := strings.ToLower(args["NewProtocol"])
		eport, err := strconv.ParseUint(args["NewExternalPort"], 10, 16)
		if err != nil {
			return nil, 402
		}
		g.logf("upnp DeletePortMapping %s %d", proto, eport)
		m, ok := g.table[key(proto, uint16(eport))]
		if !ok {
			return nil, 714
		}
		if m.Internal.Addr() != from {
			return nil, 606
		}
		delete(g.table, key(proto, uint16(eport)))
		return nil, 0
	case "GetGenericPortMappingEntry":
		i, err := strconv.Atoi(args["NewPortMappingIndex"])
		if err != nil {
			return nil, 402
		}
		var all []*Mapping
		for _, m := range g.table {
			all = append(all, m)
		}
		sort.Slice(all, func(a, b int) bool { return key(all[a].Proto, all[a].External) < key(all[b].Proto, all[b].External) })
		if i < 0 || i >= len(all) {
			return nil, 713
		}
		m := all[i]
		lease := 0
		if !m.Expires.IsZero() {
			lease = int(time.Until(m.Expires) / time.Second)
		}
		return []string{
			"NewRemoteHost", "",
			"NewExternalPort", strconv.Itoa(int(m.External)),
			"NewProtocol", strings.ToUpper(m.Proto),
			"NewInternalPort", strconv.Itoa(int(m.Internal.Port())),
			"NewInternalClient", m.Internal.Addr().String(),
			"NewEnabled", "1",
			"NewPortMappingDescription", m.Description,
			"NewLeaseDuration", strconv.Itoa(lease),
		}, 0
	}
	return nil, 401
}
