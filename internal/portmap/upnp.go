package portmap

import (
	"bufio"
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/ipv4"
)

// UPnP IGD: SSDP to find the router's description URL, the description to
// find its WAN connection service, SOAP to call it. Only what port
// mapping needs: AddPortMapping, AddAnyPortMapping (v2),
// DeletePortMapping, GetExternalIPAddress, GetGenericPortMappingEntry.

// Service types, best first.
const (
	svcWANIP2  = "urn:schemas-upnp-org:service:WANIPConnection:2"
	svcWANIP1  = "urn:schemas-upnp-org:service:WANIPConnection:1"
	svcWANPPP1 = "urn:schemas-upnp-org:service:WANPPPConnection:1"
)

var serviceRank = map[string]int{svcWANIP2: 0, svcWANIP1: 1, svcWANPPP1: 2}

// maxBody bounds what is read of a description or a SOAP answer.
const maxBody = 1 << 20

// ssdpResponse is what an SSDP answer says.
type ssdpResponse struct {
	Location string
	ST       string
	Server   string
	USN      string
}

// parseSSDPResponse parses an answer to M-SEARCH (an HTTP response over
// UDP).
func parseSSDPResponse(b []byte) (ssdpResponse, error) {
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(b)), nil)
	if err != nil {
		return ssdpResponse{}, fmt.Errorf("portmap: upnp: malformed SSDP answer: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ssdpResponse{}, fmt.Errorf("portmap: upnp: SSDP answer with status %q", resp.Status)
	}
	r := ssdpResponse{
		Location: resp.Header.Get("Location"),
		ST:       resp.Header.Get("St"),
		Server:   resp.Header.Get("Server"),
		USN:      resp.Header.Get("Usn"),
	}
	if r.Location == "" {
		return ssdpResponse{}, errors.New("portmap: upnp: SSDP answer without LOCATION")
	}
	return r, nil
}

// searchTargets are the STs of M-SEARCH: IGD version 1 and 2.
var searchTargets = []string{
	"urn:schemas-upnp-org:device:InternetGatewayDevice:1",
	"urn:schemas-upnp-org:device:InternetGatewayDevice:2",
}

// ssdpSearch sends M-SEARCH to c.cfg.SSDPAddr from gw.local and returns
// the description URL of the first IGD that answers from the gateway's
// address (or, when SSDPAddr is unicast, from that address).
func (c *Client) ssdpSearch(ctx context.Context, gw gateway) (*url.URL, error) {
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(gw.local, 0)))
	if err != nil {
		return nil, fmt.Errorf("portmap: upnp: %w", err)
	}
	defer conn.Close()
	target := c.cfg.SSDPAddr
	from := gw.addr
	if target.Addr().IsMulticast() {
		// Leave by the interface that routes to the gateway.
		if ifi := interfaceWith(gw.local); ifi != nil {
			ipv4.NewPacketConn(conn).SetMulticastInterface(ifi)
		}
	} else {
		from = target.Addr()
	}
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Now()) })
	defer stop()

	send := func() error {
		for _, st := range searchTargets {
			msg := "M-SEARCH * HTTP/1.1\r\n" +
				"HOST: " + target.String() + "\r\n" +
				"MAN: \"ssdp:discover\"\r\n" +
				"MX: 1\r\n" +
				"ST: " + st + "\r\n\r\n"
			if _, err := conn.WriteToUDPAddrPort([]byte(msg), target); err != nil {
				return err
			}
		}
		return nil
	}
	buf := make([]byte, 4096)
	var ignored []string
	for round, wait := 0, 300*time.Millisecond; ; round, wait = round+1, wait*2 {
		if round < 3 { // three rounds: UDP may be lost
			if err := send(); err != nil {
				return nil, fmt.Errorf("%w: sending SSDP M-SEARCH to %s: %v", ErrNoAnswer, target, err)
			}
		}
		conn.SetReadDeadline(time.Now().Add(wait))
		if ctx.Err() != nil {
			conn.SetReadDeadline(time.Now())
		}
		for {
			n, src, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break
				}
				return nil, fmt.Errorf("%w: SSDP: %v", ErrNoAnswer, err)
			}
			if src.Addr().Unmap() != from {
				ignored = append(ignored, src.Addr().String())
				continue // another device on the LAN
			}
			r, err := parseSSDPResponse(buf[:n])
			if err != nil {
				c.log.Debug("portmap: ignoring an SSDP answer", "from", src, "err", err)
				continue
			}
			loc, err := url.Parse(r.Location)
			if err != nil || (loc.Scheme != "http" && loc.Scheme != "https") {
				c.log.Debug("portmap: ignoring an SSDP answer with a bad LOCATION", "from", src, "location", r.Location)
				continue
			}
			if h, err := netip.ParseAddr(loc.Hostname()); err != nil || h.Unmap() != from {
				// A description elsewhere than the device that
				// answered: refuse to be sent anywhere on its word.
				c.log.Debug("portmap: ignoring an SSDP answer whose LOCATION is not its sender", "from", src, "location", r.Location)
				continue
			}
			return loc, nil
		}
		if err := ctx.Err(); err != nil {
			extra := ""
			if len(ignored) > 0 {
				extra = " (ignored answers from " + strings.Join(ignored, ", ") + ", which are not the gateway)"
			}
			if errors.Is(err, context.Canceled) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: no UPnP IGD answered SSDP M-SEARCH at %s in time%s", ErrNoAnswer, target, extra)
		}
	}
}

// interfaceWith returns the interface that has addr, or nil.
func interfaceWith(addr netip.Addr) *net.Interface {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil
	}
	for i := range ifs {
		addrs, err := ifs[i].Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Unmap() == addr {
				return &ifs[i]
			}
		}
	}
	return nil
}

// upnpService is one WAN connection service of the router.
type upnpService struct {
	Type    string   // service type, one of svcWANIP2, svcWANIP1, svcWANPPP1
	Control *url.URL // control URL, absolute
	Device  string   // "friendly name (manufacturer)", for the log
}

func (s *upnpService) version2() bool { return s.Type == svcWANIP2 }

type xmlDevice struct {
	DeviceType   string       `xml:"deviceType"`
	FriendlyName string       `xml:"friendlyName"`
	Manufacturer string       `xml:"manufacturer"`
	Services     []xmlService `xml:"serviceList>service"`
	Devices      []xmlDevice  `xml:"deviceList>device"`
}

type xmlService struct {
	ServiceType string `xml:"serviceType"`
	ControlURL  string `xml:"controlURL"`
}

type xmlRoot struct {
	URLBase string    `xml:"URLBase"`
	Device  xmlDevice `xml:"device"`
}

// parseDescription returns the WAN connection services of an IGD
// description fetched from loc, best first. Control URLs are resolved
// against URLBase or loc, and must be on loc's host.
func parseDescription(b []byte, loc *url.URL) ([]upnpService, error) {
	var root xmlRoot
	if err := xml.Unmarshal(b, &root); err != nil {
		return nil, fmt.Errorf("portmap: upnp: malformed device description at %s: %w", loc, err)
	}
	base := loc
	if root.URLBase != "" {
		u, err := loc.Parse(strings.TrimSpace(root.URLBase))
		if err == nil && u.Hostname() == loc.Hostname() {
			base = u
		}
	}
	var out []upnpService
	var walk func(d *xmlDevice, depth int)
	walk = func(d *xmlDevice, depth int) {
		if depth > 8 {
			return
		}
		for _, s := range d.Services {
			typ := strings.TrimSpace(s.ServiceType)
			if _, ok := serviceRank[typ]; !ok {
				continue
			}
			u, err := base.Parse(strings.TrimSpace(s.ControlURL))
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() != loc.Hostname() {
				continue
			}
			name := strings.TrimSpace(root.Device.FriendlyName)
			if m := strings.TrimSpace(root.Device.Manufacturer); m != "" {
				name += " (" + m + ")"
			}
			out = append(out, upnpService{Type: typ, Control: u, Device: name})
		}
		for i := range d.Devices {
			walk(&d.Devices[i], depth+1)
		}
	}
	walk(&root.Device, 0)
	if len(out) == 0 {
		return nil, fmt.Errorf("portmap: upnp: the device at %s has no WANIPConnection or WANPPPConnection service: it is not an internet gateway", loc)
	}
	// Stable sort by rank: first of the best type first.
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && serviceRank[out[j].Type] < serviceRank[out[j-1].Type]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out, nil
}

// soapFault is a UPnP error in a SOAP answer.
type soapFault struct {
	Code        int
	Description string
}

// parseSOAPResponse returns the out arguments of action's answer, or the
// UPnP error of a fault.
func parseSOAPResponse(b []byte, action string) (map[string]string, *soapFault, error) {
	d := xml.NewDecoder(bytes.NewReader(b))
	var (
		path    []string
		text    strings.Builder
		inResp  bool
		args    = map[string]string{}
		fault   *soapFault
		sawResp bool
	)
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("portmap: upnp: malformed SOAP answer to %s: %w", action, err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			name := t.Name.Local
			if len(path) > 32 {
				return nil, nil, fmt.Errorf("portmap: upnp: SOAP answer to %s nests too deep", action)
			}
			path = append(path, name)
			text.Reset()
			switch {
			case name == action+"Response":
				inResp, sawResp = true, true
			case name == "Fault":
				fault = &soapFault{}
			}
		case xml.CharData:
			if text.Len() < 4096 {
				text.Write(t)
			}
		case xml.EndElement:
			if len(path) == 0 {
				continue
			}
			name := path[len(path)-1]
			path = path[:len(path)-1]
			switch {
			case name == action+"Response":
				inResp = false
			case inResp && len(path) > 0 && path[len(path)-1] == action+"Response":
				args[name] = strings.TrimSpace(text.String())
			case fault != nil && name == "errorCode":
				fault.Code, _ = strconv.Atoi(strings.TrimSpace(text.String()))
			case fault != nil && name == "errorDescription":
				fault.Description = strings.TrimSpace(text.String())
			}
			text.Reset()
		}
	}
	if fault != nil {
		return nil, fault, nil
	}
	if !sawResp {
		return nil, nil, fmt.Errorf("portmap: upnp: SOAP answer without %sResponse", action)
	}
	return args, nil, nil
}

// upnpErrorNames are the errors of the WANIPConnection spec.
var upnpErrorNames = map[int]string{
	401: "Invalid Action",
	402: "Invalid Args",
	501: "Action Failed",
	606: "Action not authorized",
	713: "SpecifiedArrayIndexInvalid",
	714: "NoSuchEntryInArray",
	715: "WildCardNotPermittedInSrcIP",
	716: "WildCardNotPermittedInExtPort",
	718: "ConflictInMappingEntry",
	724: "SamePortValuesRequired",
	725: "OnlyPermanentLeasesSupported",
	726: "RemoteHostOnlySupportsWildcard",
	727: "ExternalPortOnlySupportsWildcard",
	728: "NoPortMapsAvailable",
	729: "ConflictWithOtherMechanisms",
	732: "WildCardNotPermittedInIntPort",
}

func upnpError(op string, f *soapFault) *RouterError {
	e := &RouterError{Method: UPnP, Op: op, Code: f.Code, Name: upnpErrorNames[f.Code]}
	if e.Name == "" {
		e.Name = strconv.Quote(f.Description)
	}
	switch f.Code {
	case 606:
		e.Kind = ErrNotAuthorized
	case 718, 729:
		e.Kind = ErrConflict
	case 724:
		e.Kind = ErrConflict
		e.Name += " (this router maps a port only to the same port)"
	case 725:
		e.Kind = ErrLeaseRefused
	case 728:
		e.Kind = ErrNoResources
	case 713, 714:
		e.Kind = ErrNoSuchMapping
	case 501:
		e.Name += " (miniupnpd says this when its WAN address is private: is the router itself behind another NAT?)"
	}
	return e
}

type upnp struct {
	c    *Client
	http *http.Client

	mu    sync.Mutex
	svc   *upnpService // found by discover; nil until then
	svcGW netip.Addr   // the gateway svc belongs to
}

func newUPnP(c *Client) *upnp {
	return &upnp{c: c, http: &http.Client{
		// A router on the LAN: never through a proxy from the
		// environment, never redirected elsewhere, no idle connections
		// left behind.
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}}
}

func (p *upnp) method() Method { return UPnP }

// get fetches u, at most maxBody bytes.
func (p *upnp) get(ctx context.Context, u *url.URL) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("portmap: upnp: %s answered %q", u, resp.Status)
	}
	return readAtMost(resp.Body, u)
}

func readAtMost(r io.Reader, u *url.URL) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxBody+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxBody {
		return nil, fmt.Errorf("portmap: upnp: %s sent more than %d bytes", u, maxBody)
	}
	return b, nil
}

// call invokes action on svc with args (name, value pairs in order).
func (p *upnp) call(ctx context.Context, svc *upnpService, action string, args ...string) (map[string]string, error) {
	var body bytes.Buffer
	body.WriteString(xml.Header)
	body.WriteString(`<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body>`)
	fmt.Fprintf(&body, `<u:%s xmlns:u="%s">`, action, svc.Type)
	for i := 0; i+1 < len(args); i += 2 {
		fmt.Fprintf(&body, "<%s>", args[i])
		xml.EscapeText(&body, []byte(args[i+1]))
		fmt.Fprintf(&body, "</%s>", args[i])
	}
	fmt.Fprintf(&body, `</u:%s></s:Body></s:Envelope>`, action)

	req, err := http.NewRequestWithContext(ctx, http.MethodPost, svc.Control.String(), &body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", `text/xml; charset="utf-8"`)
	req.Header.Set("SOAPAction", `"`+svc.Type+"#"+action+`"`)
	resp, err := p.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrNoAnswer, action, err)
	}
	defer resp.Body.Close()
	b, err := readAtMost(resp.Body, svc.Control)
	if err != nil {
		return nil, err
	}
	out, fault, err := parseSOAPResponse(b, action)
	if fault != nil {
		return nil, upnpError(action, fault)
	}
	if err != nil {
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("portmap: upnp: %s: the router answered %q", action, resp.Status)
		}
		return nil, err
	}
	return out, nil
}

// service returns the router's WAN connection service that answers,
// finding it by SSDP and its description the first time.
func (p *upnp) service(ctx context.Context, gw gateway) (*upnpService, netip.Addr, error) {
	p.mu.Lock()
	svc := p.svc
	if p.svcGW != gw.addr {
		svc = nil
	}
	p.mu.Unlock()
	if svc != nil {
		ext, err := p.externalAddr(ctx, svc)
		if err == nil {
			return svc, ext, nil
		}
		var re *RouterError
		if errors.As(err, &re) {
			return nil, netip.Addr{}, err
		}
		// Not there any more (a restart may move its port): look again.
		p.c.log.Debug("portmap: UPnP service stopped answering; discovering again", "err", err)
	}
	loc, err := p.c.ssdpSearch(ctx, gw)
	if err != nil {
		return nil, netip.Addr{}, err
	}
	b, err := p.get(ctx, loc)
	if err != nil {
		return nil, netip.Addr{}, fmt.Errorf("%w: fetching the device description: %v", ErrNoAnswer, err)
	}
	svcs, err := parseDescription(b, loc)
	if err != nil {
		return nil, netip.Addr{}, err
	}
	var firstErr error
	for i := range svcs {
		s := &svcs[i]
		ext, err := p.externalAddr(ctx, s)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		p.c.log.Debug("portmap: found UPnP service", "type", s.Type, "control", s.Control, "device", s.Device)
		p.mu.Lock()
		p.svc, p.svcGW = s, gw.addr
		p.mu.Unlock()
		return s, ext, nil
	}
	return nil, netip.Addr{}, firstErr
}

func (p *upnp) externalAddr(ctx context.Context, svc *upnpService) (netip.Addr, error) {
	out, err := p.call(ctx, svc, "GetExternalIPAddress")
	if err != nil {
		return netip.Addr{}, err
	}
	a, err := netip.ParseAddr(out["NewExternalIPAddress"])
	if err != nil || !a.Unmap().Is4() {
		return netip.Addr{}, fmt.Errorf("portmap: upnp: the router has no external IPv4 address (it said %q); is it connected?", out["NewExternalIPAddress"])
	}
	return a.Unmap(), nil
}

func (p *upnp) probe(ctx context.Context, gw gateway) (netip.Addr, error) {
	_, ext, err := p.service(ctx, gw)
	return ext, err
}

func upnpProto(p Proto) string { return strings.ToUpper(p.String()) }

// addArgs are the in arguments of AddPortMapping and AddAnyPortMapping,
// which are the same.
func (p *upnp) addArgs(local netip.Addr, req Request, ext uint16, lease uint32) []string {
	return []string{
		"NewRemoteHost", "",
		"NewExternalPort", strconv.Itoa(int(ext)),
		"NewProtocol", upnpProto(req.Proto),
		"NewInternalPort", strconv.Itoa(int(req.InternalPort)),
		"NewInternalClient", local.String(),
		"NewEnabled", "1",
		"NewPortMappingDescription", p.c.cfg.Description,
		"NewLeaseDuration", strconv.FormatUint(uint64(lease), 10),
	}
}

func (p *upnp) addPortMapping(ctx context.Context, svc *upnpService, local netip.Addr, req Request, ext uint16, lease uint32) error {
	_, err := p.call(ctx, svc, "AddPortMapping", p.addArgs(local, req, ext, lease)...)
	return err
}

func (p *upnp) addAnyPortMapping(ctx context.Context, svc *upnpService, local netip.Addr, req Request, ext uint16, lease uint32) (uint16, error) {
	out, err := p.call(ctx, svc, "AddAnyPortMapping", p.addArgs(local, req, ext, lease)...)
	if err != nil {
		return 0, err
	}
	port, err := strconv.ParseUint(out["NewReservedPort"], 10, 16)
	if err != nil || port == 0 {
		return 0, fmt.Errorf("portmap: upnp: AddAnyPortMapping answered reserved port %q", out["NewReservedPort"])
	}
	return uint16(port), nil
}

func (p *upnp) add(ctx context.Context, gw gateway, req Request, prev *mapping) (*mapping, error) {
	ctx, cancel := p.c.withTimeout(ctx)
	defer cancel()
	svc, ext, err := p.service(ctx, gw)
	if err != nil {
		return nil, err
	}
	lease := lifetimeSeconds(req.Lifetime)
	if prev != nil && prev.goodUntil.IsZero() {
		lease = 0 // the router only takes permanent leases
	}
	port := req.ExternalPort
	anyPort := port == 0 && prev == nil
	switch {
	case prev != nil:
		port = prev.external.Port()
	case port == 0:
		port = req.InternalPort
	}

	// add tries one way of mapping, falling back to a permanent lease
	// where the router takes only those.
	add := func(try func(lease uint32) (uint16, error)) (uint16, error) {
		got, err := try(lease)
		if errors.Is(err, ErrLeaseRefused) && lease != 0 {
			p.c.log.Info("portmap: the router takes only permanent UPnP leases; mapping without one, removed at exit", "method", UPnP)
			lease = 0
			got, err = try(lease)
		}
		return got, err
	}
	var got uint16
	if anyPort && svc.version2() {
		got, err = add(func(lease uint32) (uint16, error) {
			return p.addAnyPortMapping(ctx, svc, gw.local, req, port, lease)
		})
		var re *RouterError
		if errors.As(err, &re) && (re.Code == 401 || re.Code == 602) {
			anyPort, got = true, 0 // v2 in name only: fall back to AddPortMapping
			err = nil
		} else if err != nil {
			return nil, err
		}
	}
	if got == 0 {
		// AddPortMapping; on a conflict with no port asked for, a few
		// random ports, as the router cannot choose one itself.
		for try := 0; ; try++ {
			got, err = add(func(lease uint32) (uint16, error) {
				return port, p.addPortMapping(ctx, svc, gw.local, req, port, lease)
			})
			if err == nil || !anyPort || !errors.Is(err, ErrConflict) || try == 3 {
				break
			}
			port = uint16(1024 + rand.IntN(65536-1024))
		}
		if err != nil {
			return nil, err
		}
	}
	m := newMapping(UPnP, gw, req, netip.AddrPortFrom(ext, got), svc)
	m.setLease(time.Now(), time.Duration(lease)*time.Second)
	m.release = func(ctx context.Context) error {
		ctx, cancel := p.c.withTimeout(ctx)
		defer cancel()
		return p.deletePortMapping(ctx, svc, req.Proto, got)
	}
	return m, nil
}

func (p *upnp) deletePortMapping(ctx context.Context, svc *upnpService, proto Proto, ext uint16) error {
	_, err := p.call(ctx, svc, "DeletePortMapping",
		"NewRemoteHost", "",
		"NewExternalPort", strconv.Itoa(int(ext)),
		"NewProtocol", upnpProto(proto))
	return err
}

func (p *upnp) remove(ctx context.Context, gw gateway, req Request) error {
	svc, _, err := p.service(ctx, gw)
	if err != nil {
		return err
	}
	return p.deletePortMapping(ctx, svc, req.Proto, req.ExternalPort)
}

// list reads the router's table with GetGenericPortMappingEntry until it
// says there are no more (at most 1024 entries).
func (p *upnp) list(ctx context.Context, gw gateway) ([]Entry, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*p.c.cfg.Timeout)
	defer cancel()
	svc, ext, err := p.service(ctx, gw)
	if err != nil {
		return nil, err
	}
	var out []Entry
	for i := 0; i < 1024; i++ {
		res, err := p.call(ctx, svc, "GetGenericPortMappingEntry", "NewPortMappingIndex", strconv.Itoa(i))
		var re *RouterError
		if errors.As(err, &re) && (errors.Is(err, ErrNoSuchMapping) || re.Code == 402 || re.Code == 501) {
			break // past the end (some routers say 402 or 501 there)
		}
		if err != nil {
			return out, err
		}
		e, err := parseEntry(res, ext)
		if err != nil {
			return out, err
		}
		out = append(out, e)
	}
	return out, nil
}

// parseEntry reads GetGenericPortMappingEntry's out arguments.
func parseEntry(res map[string]string, ext netip.Addr) (Entry, error) {
	var e Entry
	var err error
	if e.Proto, err = ParseProto(res["NewProtocol"]); err != nil {
		return e, fmt.Errorf("portmap: upnp: mapping entry with protocol %q", res["NewProtocol"])
	}
	eport, err1 := strconv.ParseUint(res["NewExternalPort"], 10, 16)
	iport, err2 := strconv.ParseUint(res["NewInternalPort"], 10, 16)
	client, err3 := netip.ParseAddr(res["NewInternalClient"])
	if err1 != nil || err2 != nil || err3 != nil {
		return e, fmt.Errorf("portmap: upnp: malformed mapping entry (external port %q, internal %q:%q)", res["NewExternalPort"], res["NewInternalClient"], res["NewInternalPort"])
	}
	e.External = netip.AddrPortFrom(ext, uint16(eport))
	e.Internal = netip.AddrPortFrom(client.Unmap(), uint16(iport))
	e.Description = res["NewPortMappingDescription"]
	e.Enabled = res["NewEnabled"] == "1" || strings.EqualFold(res["NewEnabled"], "true")
	if s, err := strconv.ParseUint(res["NewLeaseDuration"], 10, 32); err == nil {
		e.Lease = time.Duration(s) * time.Second
	}
	return e, nil
}
