package socks

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// SOCKS5 UDP ASSOCIATE (RFC 1928 section 7). The client gets a UDP relay
// socket; each datagram it sends there starts with a header naming the
// destination, and each reply comes back with the same kind of header
// naming where it came from.

const (
	defaultUDPIdle   = 60 * time.Second
	maxUDPFlows      = 64    // destinations per association
	maxUDPDatagram   = 65527 // the largest UDP payload
	udpHeaderReserve = 262   // RSV FRAG ATYP, a 255-byte name with its length, PORT
)

// errFragment is a datagram with FRAG set: pinhole does not reassemble.
var errFragment = errors.New("socks: fragmented SOCKS5 datagram")

// parseUDPDatagram splits a client's datagram into its destination
// (host:port) and payload. Fragments (FRAG != 0) are refused.
func parseUDPDatagram(b []byte) (addr string, payload []byte, err error) {
	if len(b) < 4 {
		return "", nil, errors.New("socks: SOCKS5 datagram shorter than its header")
	}
	if b[0] != 0 || b[1] != 0 {
		return "", nil, errors.New("socks: SOCKS5 datagram with RSV not zero")
	}
	if b[2] != 0 {
		return "", nil, errFragment
	}
	r := bytes.NewReader(b[3:])
	if addr, err = readSOCKS5Addr(r); err != nil {
		return "", nil, err
	}
	return addr, b[len(b)-r.Len():], nil
}

// appendUDPHeader appends the header of a reply from addr (host:port, as
// the client named it: a name stays a name).
func appendUDPHeader(b []byte, addr string) []byte {
	host, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.ParseUint(portStr, 10, 16)
	b = append(b, 0, 0, 0)
	if ip, err := netip.ParseAddr(host); err == nil {
		if ip.Is4() {
			b = append(b, atypIPv4)
		} else {
			b = append(b, atypIPv6)
		}
		b = append(b, ip.AsSlice()...)
	} else {
		b = append(b, atypDomain, byte(len(host)))
		b = append(b, host...)
	}
	return binary.BigEndian.AppendUint16(b, uint16(port))
}

// dialUDP opens a datagram flow to addr for an association.
func (s *Server) dialUDP(ctx context.Context, addr string) (net.Conn, error) {
	if s.DialUDP != nil {
		return s.DialUDP(ctx, addr)
	}
	d := net.Dialer{Timeout: defaultDialTimeout}
	return d.DialContext(ctx, "udp", addr)
}

// udpAssociate answers UDP ASSOCIATE: a relay socket on the address the
// client reached us at, alive while the control connection is.
func (hs *handshake) udpAssociate(want string) error {
	hs.s.setIdle(hs.c, false)
	if hs.s.NoUDP != nil && hs.s.NoUDP() {
		hs.c.Write(appendSOCKS5Reply(nil, repCommandUnsupported, nil))
		return errors.New("socks: UDP ASSOCIATE refused: this proxy's path cannot carry UDP (a tunnel through a server without pinhole's UDP extension)")
	}
	local, _ := hs.c.LocalAddr().(*net.TCPAddr)
	remote, _ := hs.c.RemoteAddr().(*net.TCPAddr)
	if local == nil || remote == nil {
		hs.c.Write(appendSOCKS5Reply(nil, repGeneralFailure, nil))
		return errors.New("socks: UDP ASSOCIATE needs a TCP control connection")
	}
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: local.IP})
	if err != nil {
		hs.c.Write(appendSOCKS5Reply(nil, repGeneralFailure, nil))
		return fmt.Errorf("socks: UDP ASSOCIATE: %w", err)
	}
	defer pc.Close()
	if _, err := hs.c.Write(appendSOCKS5Reply(nil, repSucceeded, pc.LocalAddr())); err != nil {
		return fmt.Errorf("socks: writing to client: %w", err)
	}
	hs.c.SetDeadline(time.Time{})

	a := &association{
		s:      hs.s,
		pc:     pc,
		client: remote.AddrPort().Addr().Unmap(),
		flows:  make(map[string]*udpFlow),
	}
	// The client may name the address and port it will send from; zero
	// means it does not know yet, and the first datagram tells.
	if ap, err := netip.ParseAddrPort(want); err == nil && ap.Port() != 0 {
		a.clientPort = ap.Port()
	}
	ctx, cancel := context.WithCancel(hs.ctx)
	defer cancel()
	// The association lives as long as the control connection.
	go func() {
		io.Copy(io.Discard, hs.br)
		cancel()
	}()
	stop := context.AfterFunc(ctx, func() { pc.Close() })
	defer stop()
	a.serve(ctx)
	return nil
}

// association is one UDP ASSOCIATE: the relay socket and a flow per
// destination.
type association struct {
	s          *Server
	pc         *net.UDPConn
	client     netip.Addr
	clientPort uint16 // 0 until known

	mu    sync.Mutex
	from  netip.AddrPort // where replies go: the client's UDP address
	flows map[string]*udpFlow
	wg    sync.WaitGroup
}

type udpFlow struct {
	conn net.Conn
	last time.Time // guarded by association.mu
}

func (a *association) serve(ctx context.Context) {
	idle := a.s.UDPIdleTimeout
	if idle <= 0 {
		idle = defaultUDPIdle
	}
	go a.expire(ctx, idle)
	buf := make([]byte, maxUDPDatagram+udpHeaderReserve)
	for {
		n, src, err := a.pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			break
		}
		if src.Addr().Unmap() != a.client || a.clientPort != 0 && src.Port() != a.clientPort {
			continue // not our client: dropped
		}
		addr, payload, err := parseUDPDatagram(buf[:n])
		if err != nil {
			a.s.logger().Debug("socks: UDP datagram dropped", "peer", src, "err", err)
			continue
		}
		a.mu.Lock()
		a.from = src
		fl := a.flows[addr]
		if fl == nil && len(a.flows) >= maxUDPFlows {
			a.mu.Unlock()
			continue
		}
		a.mu.Unlock()
		if fl == nil {
			if fl = a.open(ctx, addr); fl == nil {
				continue
			}
		}
		a.mu.Lock()
		fl.last = time.Now()
		a.mu.Unlock()
		fl.conn.Write(payload)
	}
	a.mu.Lock()
	for _, fl := range a.flows {
		fl.conn.Close()
	}
	a.mu.Unlock()
	a.wg.Wait()
}

// open dials a flow to addr and starts sending its replies to the client.
func (a *association) open(ctx context.Context, addr string) *udpFlow {
	dctx, cancel := context.WithTimeout(ctx, defaultDialTimeout)
	conn, err := a.s.dialUDP(dctx, addr)
	cancel()
	if err != nil {
		a.s.logger().Debug("socks: UDP flow failed", "raddr", addr, "err", err)
		return nil
	}
	fl := &udpFlow{conn: conn, last: time.Now()}
	a.mu.Lock()
	a.flows[addr] = fl
	a.mu.Unlock()
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer conn.Close()
		buf := make([]byte, udpHeaderReserve+maxUDPDatagram)
		hdr := appendUDPHeader(nil, addr)
		copy(buf, hdr)
		for {
			n, err := conn.Read(buf[len(hdr):])
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) {
					break
				}
				continue // ICMP unreachable and the like
			}
			a.mu.Lock()
			fl.last = time.Now()
			to := a.from
			a.mu.Unlock()
			a.pc.WriteToUDPAddrPort(buf[:len(hdr)+n], to)
		}
		a.mu.Lock()
		if a.flows[addr] == fl {
			delete(a.flows, addr)
		}
		a.mu.Unlock()
	}()
	return fl
}

// expire closes flows idle for longer than idle.
func (a *association) expire(ctx context.Context, idle time.Duration) {
	tick := time.NewTicker(min(idle/4, 5*time.Second))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			a.mu.Lock()
			for _, fl := range a.flows {
				if now.Sub(fl.last) > idle {
					fl.conn.Close()
				}
			}
			a.mu.Unlock()
		}
	}
}
