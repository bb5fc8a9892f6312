package portmap

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/netip"
	"time"
)

// PCP, RFC 6887, the MAP and ANNOUNCE opcodes over IPv4. Every message
// starts with a 24-byte header, big-endian:
//
//	request   version 2, R=0 and opcode (1), reserved (2), lifetime (4),
//	          client address (16, IPv4-mapped)
//	answer    version 2, R=1 and opcode (1), reserved (1), result (1),
//	          lifetime (4), epoch (4), reserved (12)
//
// MAP adds, in both directions, 36 bytes: nonce (12), protocol (1),
// reserved (3), internal port (2), external port (2), external address
// (16). The nonce ties an answer to its request, and a renewal or a
// deletion to the mapping: the same nonce must be sent again.

const (
	pcpVersion     = 2
	pcpOpAnnounce  = 0
	pcpOpMap       = 1
	pcpReplyBit    = 0x80
	pcpHeaderLen   = 24
	pcpMapLen      = 36
	pcpOptPreferFl = 2 // PREFER_FAILURE option code
)

// pcpResponse is a parsed PCP answer.
type pcpResponse struct {
	op       byte
	result   byte
	lifetime uint32
	epoch    uint32
	// MAP only
	nonce        [12]byte
	proto        byte
	internalPort uint16
	externalPort uint16
	external     netip.Addr
	hasMap       bool
}

// errPCPIsPMP marks a NAT-PMP answer to a PCP request: the gateway
// speaks only NAT-PMP.
var errPCPIsPMP = fmt.Errorf("%w: the gateway answered in NAT-PMP (version 0): it speaks NAT-PMP, not PCP", ErrNoAnswer)

// parsePCPResponse parses a PCP answer.
func parsePCPResponse(b []byte) (pcpResponse, error) {
	var r pcpResponse
	if len(b) >= 4 && b[0] == pmpVersion && b[1]&pmpOpReply != 0 {
		return r, errPCPIsPMP
	}
	if len(b) < pcpHeaderLen {
		return r, fmt.Errorf("portmap: pcp: answer of %d bytes is too short", len(b))
	}
	if b[0] != pcpVersion {
		return r, fmt.Errorf("portmap: pcp: answer has version %d, not 2", b[0])
	}
	if b[1]&pcpReplyBit == 0 {
		return r, fmt.Errorf("portmap: pcp: opcode %d is not an answer", b[1])
	}
	r.op = b[1] &^ pcpReplyBit
	r.result = b[3]
	r.lifetime = binary.BigEndian.Uint32(b[4:8])
	r.epoch = binary.BigEndian.Uint32(b[8:12])
	if r.op == pcpOpMap {
		if len(b) < pcpHeaderLen+pcpMapLen {
			if r.result == 0 {
				return r, fmt.Errorf("portmap: pcp: MAP answer of %d bytes is too short", len(b))
			}
			return r, nil // an error answer may leave the payload out
		}
		m := b[pcpHeaderLen:]
		r.hasMap = true
		copy(r.nonce[:], m[:12])
		r.proto = m[12]
		r.internalPort = binary.BigEndian.Uint16(m[16:18])
		r.externalPort = binary.BigEndian.Uint16(m[18:20])
		r.external = netip.AddrFrom16([16]byte(m[20:36])).Unmap()
	}
	return r, nil
}

// pcpResultNames are RFC 6887 section 7.4's result codes.
var pcpResultNames = [...]string{
	0:  "SUCCESS",
	1:  "UNSUPP_VERSION",
	2:  "NOT_AUTHORIZED",
	3:  "MALFORMED_REQUEST",
	4:  "UNSUPP_OPCODE",
	5:  "UNSUPP_OPTION",
	6:  "MALFORMED_OPTION",
	7:  "NETWORK_FAILURE",
	8:  "NO_RESOURCES",
	9:  "UNSUPP_PROTOCOL",
	10: "USER_EX_QUOTA",
	11: "CANNOT_PROVIDE_EXTERNAL",
	12: "ADDRESS_MISMATCH",
	13: "EXCESSIVE_REMOTE_PEERS",
}

func pcpResultError(op string, code byte) error {
	e := &RouterError{Method: PCP, Op: op, Code: int(code), Name: "an unknown result"}
	if int(code) < len(pcpResultNames) {
		e.Name = pcpResultNames[code]
	}
	switch code {
	case 2:
		e.Kind = ErrNotAuthorized
	case 8, 10:
		e.Kind = ErrNoResources
	case 11:
		e.Kind = ErrConflict
	case 12:
		e.Name += " (a NAT between here and the router rewrote our address)"
	}
	return e
}

type pcp struct {
	c      *Client
	epochs epochs
}

func newPCP(c *Client) *pcp { return &pcp{c: c} }

func (p *pcp) method() Method { return PCP }

// pcpHeader returns a request header for op from client.
func pcpHeader(op byte, lifetime uint32, client netip.Addr) []byte {
	b := make([]byte, pcpHeaderLen, pcpHeaderLen+pcpMapLen+4)
	b[0] = pcpVersion
	b[1] = op
	binary.BigEndian.PutUint32(b[4:8], lifetime)
	a := client.As16() // IPv4-mapped for an IPv4 client
	copy(b[8:24], a[:])
	return b
}

// pcpMapRequest returns a MAP request.
func pcpMapRequest(client netip.Addr, nonce [12]byte, proto Proto, internal, external uint16, lifetime uint32, preferFailure bool) []byte {
	b := pcpHeader(pcpOpMap, lifetime, client)
	m := make([]byte, pcpMapLen)
	copy(m[:12], nonce[:])
	m[12] = byte(proto)
	binary.BigEndian.PutUint16(m[16:18], internal)
	binary.BigEndian.PutUint16(m[18:20], external)
	any4 := netip.IPv4Unspecified().As16() // ::ffff:0.0.0.0, "any IPv4 address"
	copy(m[20:36], any4[:])
	b = append(b, m...)
	if preferFailure {
		b = append(b, pcpOptPreferFl, 0, 0, 0)
	}
	return b
}

// request sends req and returns the matching answer; a non-success
// result comes back as a *RouterError.
func (p *pcp) request(ctx context.Context, gw gateway, opName string, req []byte) (pcpResponse, error) {
	resp, err := exchange(p.c, ctx, gw, req, &p.epochs, PCP, func(b []byte) (pcpResponse, uint32, error) {
		r, err := parsePCPResponse(b)
		switch {
		case err == errPCPIsPMP:
			return r, 0, err
		case err != nil || r.op != req[1]:
			return r, 0, errNotOurs
		case r.op == pcpOpMap && r.hasMap && [12]byte(req[pcpHeaderLen:pcpHeaderLen+12]) != r.nonce:
			return r, 0, errNotOurs // an answer to another request
		}
		return r, r.epoch, nil
	})
	if err == nil && resp.result != 0 {
		err = pcpResultError(opName, resp.result)
	}
	return resp, err
}

// probe sends ANNOUNCE, which changes nothing on the router.
func (p *pcp) probe(ctx context.Context, gw gateway) (netip.Addr, error) {
	_, err := p.request(ctx, gw, "announce", pcpHeader(pcpOpAnnounce, 0, gw.local))
	return netip.Addr{}, err
}

// externalAddr learns the external address, which PCP has no query for,
// by mapping a random high UDP port (where nothing listens) for a moment
// and removing it. Not the discard port 9: routers allow mappings to
// unprivileged ports only, as miniupnpd's usual rules do.
func (p *pcp) externalAddr(ctx context.Context, gw gateway) (netip.Addr, error) {
	port := uint16(49152 + mrand.IntN(16384))
	m, err := p.add(ctx, gw, Request{Proto: UDP, InternalPort: port, ExternalPort: 0, Lifetime: 2 * time.Minute}, nil)
	if err != nil {
		return netip.Addr{}, err
	}
	m.Release(ctx)
	return m.external.Addr(), nil
}

type pcpState struct{ nonce [12]byte }

func (p *pcp) add(ctx context.Context, gw gateway, req Request, prev *mapping) (*mapping, error) {
	ctx, cancel := p.c.withTimeout(ctx)
	defer cancel()
	var st pcpState
	suggest := req.ExternalPort
	if prev != nil {
		st = prev.state.(pcpState)
		suggest = prev.external.Port()
	} else {
		rand.Read(st.nonce[:])
		if suggest == 0 {
			suggest = req.InternalPort
		}
	}
	forced := req.ExternalPort != 0 && prev == nil
	resp, err := p.request(ctx, gw, "map", pcpMapRequest(gw.local, st.nonce, req.Proto, req.InternalPort, suggest, lifetimeSeconds(req.Lifetime), forced))
	if err != nil {
		return nil, err
	}
	m := newMapping(PCP, gw, req, netip.AddrPortFrom(resp.external, resp.externalPort), st)
	granted := time.Duration(resp.lifetime) * time.Second
	if granted == 0 {
		granted = req.Lifetime // success with no lifetime: take what was asked
	}
	m.setLease(time.Now(), granted)
	m.release = func(ctx context.Context) error {
		dctx, cancel := p.c.withTimeout(ctx)
		defer cancel()
		_, err := p.request(dctx, gw, "delete", pcpMapRequest(gw.local, st.nonce, req.Proto, req.InternalPort, 0, 0, false))
		if errors.Is(err, ErrNotAuthorized) {
			// miniupnpd refuses the deletion when another mapping of
			// the same internal port (another nonce, or NAT-PMP's)
			// comes first in its table. UPnP deletes by external
			// port; try it before leaving the mapping to its lease.
			uctx, cancel := p.c.withTimeout(ctx)
			defer cancel()
			if uerr := p.c.protos[UPnP].remove(uctx, gw, Request{Proto: req.Proto, ExternalPort: m.external.Port()}); uerr == nil {
				p.c.log.Info("portmap: the router refused to remove the PCP mapping (another mapping of the same internal port comes first); removed it with UPnP instead", "external", m.external)
				return nil
			}
		}
		return err
	}
	if err := checkWanted(ctx, m, prev); err != nil {
		return nil, err
	}
	return m, nil
}

// remove cannot work for a mapping another process made: PCP deletes
// only with the nonce the mapping was made with.
func (p *pcp) remove(ctx context.Context, gw gateway, req Request) error {
	return fmt.Errorf("portmap: pcp delete: PCP removes a mapping only with the nonce of the process that made it; it ends when its lease does, or remove it with UPnP or NAT-PMP")
}
