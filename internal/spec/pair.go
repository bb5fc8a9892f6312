package spec

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Endpoint is one side of a pinhole forward pair: tcp://host:port or
// udp://host:port.
type Endpoint struct {
	Proto Proto
	// Host is an IP literal without brackets or a host name; "" on a
	// listening side means every address.
	Host string
	// Port is 1-65535; 0 only on a listening side (the kernel picks one).
	Port uint16
}

// Pair is one LISTEN TARGET argument pair of pinhole forward.
type Pair struct {
	Listen, Target Endpoint
}

// usagePair is what an error about a pair asks for.
const usagePair = "want tcp://[bind]:port or udp://[bind]:port to listen on, then tcp://host:port or udp://host:port to send to, e.g. tcp://:8080 tcp://10.0.0.5:80"

// ParsePair parses pinhole forward's LISTEN and TARGET arguments: both
// tcp:// or both udp://, the listening host optional ("" for every
// address), the target's host and port required. Pair.String gives the
// two back in a form ParsePair takes.
func ParsePair(listen, target string) (Pair, error) {
	l, err := parseEndpoint("listen", listen, true)
	if err != nil {
		return Pair{}, err
	}
	t, err := parseEndpoint("target", target, false)
	if err != nil {
		return Pair{}, err
	}
	if l.Proto != t.Proto {
		return Pair{}, fmt.Errorf("spec: %s %s: a %s listener relays to a %s target only; make both tcp:// or both udp://", listen, target, l.Proto, l.Proto)
	}
	return Pair{Listen: l, Target: t}, nil
}

// parseEndpoint parses one side; listening allows an empty host and port 0.
func parseEndpoint(role, s string, listening bool) (Endpoint, error) {
	errorf := func(format string, args ...any) error {
		return fmt.Errorf("spec: %s %q: "+format+"; "+usagePair, append([]any{role, s}, args...)...)
	}
	if len(s) > maxSpecLen {
		return Endpoint{}, fmt.Errorf("spec: %s: longer than %d bytes", role, maxSpecLen)
	}
	var e Endpoint
	scheme, rest, ok := strings.Cut(s, "://")
	switch {
	case !ok:
		return Endpoint{}, errorf("no tcp:// or udp:// in front")
	case strings.EqualFold(scheme, "tcp"):
		e.Proto = TCP
	case strings.EqualFold(scheme, "udp"):
		e.Proto = UDP
	default:
		return Endpoint{}, errorf("unknown scheme %q", scheme+"://")
	}
	if strings.ContainsAny(rest, "/?#@") {
		return Endpoint{}, errorf("only host:port may follow %s://", e.Proto)
	}
	host, port, err := net.SplitHostPort(rest)
	if err != nil {
		if strings.Count(rest, ":") > 1 && !strings.Contains(rest, "[") {
			return Endpoint{}, errorf("put an IPv6 address in brackets, e.g. tcp://[::1]:8080")
		}
		return Endpoint{}, errorf("want host:port after %s://", e.Proto)
	}
	bracketed := strings.HasPrefix(rest, "[")
	switch {
	case bracketed:
		if _, err := parseAddr(host); err != nil || !strings.Contains(host, ":") {
			return Endpoint{}, errorf("only IPv6 addresses go in brackets")
		}
	case host == "" && listening:
	default:
		if strings.Contains(host, ":") {
			return Endpoint{}, errorf("put an IPv6 address in brackets, e.g. tcp://[::1]:8080")
		}
		if err := checkHostname(host); err != nil {
			return Endpoint{}, errorf("host %q: %v", host, err)
		}
	}
	e.Host = host
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return Endpoint{}, errorf("port %q is not a number 1-65535", port)
	}
	if n == 0 && !listening {
		return Endpoint{}, errorf("port 0: a target needs a port 1-65535")
	}
	e.Port = uint16(n)
	return e, nil
}

// Addr is net.JoinHostPort of Host and Port: ":8080" for every address.
func (e Endpoint) Addr() string {
	return net.JoinHostPort(e.Host, strconv.Itoa(int(e.Port)))
}

// String is e as ParsePair takes it: "tcp://:8080", "udp://[::1]:53".
func (e Endpoint) String() string {
	return e.Proto.String() + "://" + e.Addr()
}

// String is p's two arguments, separated by a space.
func (p Pair) String() string {
	return p.Listen.String() + " " + p.Target.String()
}
