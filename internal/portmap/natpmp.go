package portmap

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"time"
)

// NAT-PMP, RFC 6886. Requests and answers, all big-endian:
//
//	external address request   version 0, opcode 0
//	external address answer    version 0, opcode 128, result (2),
//	                           epoch (4), address (4)
//	map request                version 0, opcode 1 (UDP) or 2 (TCP),
//	                           reserved (2), internal port (2),
//	                           suggested external port (2), lifetime (4)
//	map answer                 version 0, opcode 128+op, result (2),
//	                           epoch (4), internal port (2),
//	                           mapped external port (2), lifetime (4)
//
// A lifetime of 0 with external port 0 deletes the mapping.

const (
	pmpVersion     = 0
	pmpOpAddr      = 0
	pmpOpMapUDP    = 1
	pmpOpMapTCP    = 2
	pmpOpReply     = 128
	pmpAddrRespLen = 12
	pmpMapRespLen  = 16
)

// pmpResponse is a parsed NAT-PMP answer.
type pmpResponse struct {
	op           byte // without the reply bit
	result       uint16
	epoch        uint32
	external     netip.Addr // opcode 0 only
	internalPort uint16     // map only
	externalPort uint16     // map only
	lifetime     uint32     // map only
}

// parsePMPResponse parses a NAT-PMP answer.
func parsePMPResponse(b []byte) (pmpResponse, error) {
	var r pmpResponse
	if len(b) < 8 {
		return r, fmt.Errorf("portmap: natpmp: answer of %d bytes is too short", len(b))
	}
	if b[0] != pmpVersion {
		return r, fmt.Errorf("portmap: natpmp: answer has version %d, not 0", b[0])
	}
	if b[1]&pmpOpReply == 0 {
		return r, fmt.Errorf("portmap: natpmp: opcode %d is not an answer", b[1])
	}
	r.op = b[1] &^ pmpOpReply
	r.result = binary.BigEndian.Uint16(b[2:4])
	r.epoch = binary.BigEndian.Uint32(b[4:8])
	if r.result != 0 {
		// Errors may come short; what follows the epoch is not needed.
		return r, nil
	}
	switch r.op {
	case pmpOpAddr:
		if len(b) < pmpAddrRespLen {
			return r, fmt.Errorf("portmap: natpmp: address answer of %d bytes is too short", len(b))
		}
		r.external = netip.AddrFrom4([4]byte(b[8:12]))
	case pmpOpMapUDP, pmpOpMapTCP:
		if len(b) < pmpMapRespLen {
			return r, fmt.Errorf("portmap: natpmp: map answer of %d bytes is too short", len(b))
		}
		r.internalPort = binary.BigEndian.Uint16(b[8:10])
		r.externalPort = binary.BigEndian.Uint16(b[10:12])
		r.lifetime = binary.BigEndian.Uint32(b[12:16])
	default:
		return r, fmt.Errorf("portmap: natpmp: unknown opcode %d in answer", r.op)
	}
	return r, nil
}

// pmpResultError turns a NAT-PMP result code into an error.
func pmpResultError(op string, code uint16) error {
	e := &RouterError{Method: NATPMP, Op: op, Code: int(code)}
	switch code {
	case 1:
		e.Name = "Unsupported Version"
	case 2:
		e.Name, e.Kind = "Not Authorized/Refused", ErrNotAuthorized
	case 3:
		e.Name = "Network Failure (the router has no external address yet)"
	case 4:
		e.Name, e.Kind = "Out of resources", ErrNoResources
	case 5:
		e.Name = "Unsupported opcode"
	default:
		e.Name = "an unknown result"
	}
	return e
}

// errPMPIsPCP: a PCP answer to a NAT-PMP request.
var errPMPIsPCP = fmt.Errorf("%w: the gateway answered in PCP (version 2): it speaks PCP, not NAT-PMP", ErrNoAnswer)

type natpmp struct {
	c      *Client
	epochs epochs
}

func newNATPMP(c *Client) *natpmp { return &natpmp{c: c} }

func (p *natpmp) method() Method { return NATPMP }

// request sends one NAT-PMP request and returns the matching answer; a
// non-success result is returned as a *RouterError.
func (p *natpmp) request(ctx context.Context, gw gateway, op string, req []byte, internalPort uint16) (pmpResponse, error) {
	resp, err := exchange(p.c, ctx, gw, req, &p.epochs, NATPMP, func(b []byte) (pmpResponse, uint32, error) {
		if len(b) >= 4 && b[0] == pcpVersion && b[1]&pcpReplyBit != 0 {
			// A PCP server answering UNSUPP_VERSION (RFC 6887
			// section 9): it speaks PCP only.
			return pmpResponse{}, 0, errPMPIsPCP
		}
		r, err := parsePMPResponse(b)
		if err != nil || r.op != req[1] || (r.result == 0 && r.op != pmpOpAddr && r.internalPort != internalPort) {
			return r, 0, errNotOurs
		}
		return r, r.epoch, nil
	})
	if err == nil && resp.result != 0 {
		err = pmpResultError(op, resp.result)
	}
	return resp, err
}

func (p *natpmp) externalAddr(ctx context.Context, gw gateway) (netip.Addr, error) {
	resp, err := p.request(ctx, gw, "external address", []byte{pmpVersion, pmpOpAddr}, 0)
	if err != nil {
		return netip.Addr{}, err
	}
	return resp.external, nil
}

func (p *natpmp) probe(ctx context.Context, gw gateway) (netip.Addr, error) {
	return p.externalAddr(ctx, gw)
}

func pmpMapRequest(proto Proto, internal, external uint16, lifetime uint32) []byte {
	b := make([]byte, 12)
	b[0] = pmpVersion
	b[1] = pmpOpMapTCP
	if proto == UDP {
		b[1] = pmpOpMapUDP
	}
	binary.BigEndian.PutUint16(b[4:6], internal)
	binary.BigEndian.PutUint16(b[6:8], external)
	binary.BigEndian.PutUint32(b[8:12], lifetime)
	return b
}

func (p *natpmp) add(ctx context.Context, gw gateway, req Request, prev *mapping) (*mapping, error) {
	ctx, cancel := p.c.withTimeout(ctx)
	defer cancel()
	ext, err := p.externalAddr(ctx, gw)
	if err != nil {
		return nil, err
	}
	suggest := req.ExternalPort
	if prev != nil {
		suggest = prev.external.Port()
	} else if suggest == 0 {
		suggest = req.InternalPort
	}
	resp, err := p.request(ctx, gw, "map", pmpMapRequest(req.Proto, req.InternalPort, suggest, lifetimeSeconds(req.Lifetime)), req.InternalPort)
	if err != nil {
		return nil, err
	}
	m := newMapping(NATPMP, gw, req, netip.AddrPortFrom(ext, resp.externalPort), nil)
	granted := time.Duration(resp.lifetime) * time.Second
	if granted == 0 {
		granted = req.Lifetime
	}
	m.setLease(time.Now(), granted)
	m.release = func(ctx context.Context) error {
		ctx, cancel := p.c.withTimeout(ctx)
		defer cancel()
		_, err := p.request(ctx, gw, "delete", pmpMapRequest(req.Proto, req.InternalPort, 0, 0), req.InternalPort)
		return err
	}
	if err := checkWanted(ctx, m, prev); err != nil {
		return nil, err
	}
	return m, nil
}

func (p *natpmp) remove(ctx context.Context, gw gateway, req Request) error {
	_, err := p.request(ctx, gw, "delete", pmpMapRequest(req.Proto, req.InternalPort, 0, 0), req.InternalPort)
	return err
}
