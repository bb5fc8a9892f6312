package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pinhole-dev/pinhole/internal/ssh"

	"github.com/pinhole-dev/pinhole/internal/auth"
)

// DialFunc opens the connection a Client speaks SSH over, as
// ClientConfig.Dial: JumpDialer, ProxyCommandDialer and BindDialer return
// one.
type DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error)

// JumpHost is one host of ssh's -J (ProxyJump): [user@]host[:port]. The
// zero Port means 22. Auth, HostKeyCallback and HostKeyAlgorithms, when
// set, are this hop's own (from ssh_config's section for it); left zero,
// the hop uses JumpConfig's.
type JumpHost struct {
	User string
	Host string
	Port uint16

	Auth              []ssh.AuthMethod
	HostKeyCallback   ssh.HostKeyCallback
	HostKeyAlgorithms []string
}

// Addr is host:port, the name the hop's host key is checked under.
func (h JumpHost) Addr() string {
	port := h.Port
	if port == 0 {
		port = 22
	}
	return net.JoinHostPort(h.Host, strconv.Itoa(int(port)))
}

// String is the hop as -J spells it; ParseJump reads it back.
func (h JumpHost) String() string {
	var b strings.Builder
	if h.User != "" {
		b.WriteString(h.User + "@")
	}
	switch {
	case h.Port != 0:
		b.WriteString(net.JoinHostPort(h.Host, strconv.Itoa(int(h.Port))))
	case strings.Contains(h.Host, ":"):
		b.WriteString("[" + h.Host + "]")
	default:
		b.WriteString(h.Host)
	}
	return b.String()
}

// ParseJump reads ssh's -J and ProxyJump value: one or more hosts,
// separated by commas, each [user@]host[:port] or
// ssh://[user@]host[:port]; an IPv6 address goes in brackets
// ([2001:db8::1]:2222). The first host is dialled first. "none" (ssh's
// way to turn ProxyJump off) gives no hosts and no error.
func ParseJump(s string) ([]JumpHost, error) {
	if s == "none" {
		return nil, nil
	}
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("tunnel: -J: empty; want [user@]host[:port], more hops separated by commas")
	}
	var hops []JumpHost
	for _, part := range strings.Split(s, ",") {
		h, err := parseJumpHost(part)
		if err != nil {
			return nil, fmt.Errorf("tunnel: -J %q: %w; want [user@]host[:port], more hops separated by commas, IPv6 in brackets ([::1]:22)", part, err)
		}
		hops = append(hops, h)
	}
	return hops, nil
}

func parseJumpHost(s string) (JumpHost, error) {
	var h JumpHost
	rest, uri := strings.CutPrefix(s, "ssh://")
	if uri {
		rest = strings.TrimSuffix(rest, "/")
	}
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		h.User, rest = rest[:i], rest[i+1:]
		if h.User == "" {
			return h, errors.New("empty user before @")
		}
	}
	host, port := rest, ""
	switch {
	case strings.HasPrefix(rest, "["):
		end := strings.Index(rest, "]")
		if end < 0 {
			return h, errors.New("no ] after [")
		}
		host, port = rest[1:end], rest[end+1:]
		if port != "" {
			var ok bool
			if port, ok = strings.CutPrefix(port, ":"); !ok {
				return h, errors.New("want :port after ]")
			}
		}
	case strings.Count(rest, ":") > 1:
		return h, errors.New("an IPv6 address needs brackets")
	case strings.Contains(rest, ":"):
		host, port, _ = strings.Cut(rest, ":")
	}
	switch {
	case host == "":
		return h, errors.New("no host")
	case strings.HasPrefix(host, "-"):
		return h, errors.New("a host cannot start with -")
	case strings.ContainsAny(host, " \t\r\n'\"\\/@[]"), strings.ContainsAny(h.User, " \t\r\n'\"\\/:"):
		return h, errors.New("spaces, quotes, slashes and brackets cannot be in a user or host")
	}
	h.Host = host
	if port != "" || strings.HasSuffix(rest, ":") {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 || strconv.FormatUint(n, 10) != port {
			return h, fmt.Errorf("port %q is not a number from 1 to 65535", port)
		}
		h.Port = uint16(n)
	}
	return h, nil
}

// JumpConfig configures JumpDialer.
type JumpConfig struct {
	// Hosts are the jump hosts, first dialled first; at least one.
	Hosts []JumpHost
	// User logs in to a hop that names no user of its own. ssh uses the
	// local user name here, not the destination's.
	User string
	// Auth authenticates to every hop without its own (the same
	// identities as the destination, usually).
	Auth []ssh.AuthMethod
	// HostKeyCallback checks the key of every hop without its own. It is
	// called with the hop's host:port (JumpHost.Addr), so each hop is
	// checked against known_hosts under its own name. Required.
	HostKeyCallback ssh.HostKeyCallback
	// HostKeyAlgorithms, if set, gives the host key types to ask a hop
	// for, by its host:port (auth.KnownHosts.Algorithms).
	HostKeyAlgorithms func(hostport string) []string
	// Dial opens the TCP connection to the first hop. nil means
	// net.Dialer; BindDialer gives one with a source address (-b).
	Dial DialFunc
	// ConnectTimeout bounds each hop's handshake when the context has no
	// deadline. 0 means 15 s.
	ConnectTimeout time.Duration
}

// JumpDialer returns a dialer for ClientConfig.Dial that reaches its
// address as ssh -J does: it logs in to each jump host in turn, each
// reached through a direct-tcpip channel on the one before, and opens a
// direct-tcpip channel from the last one to the address. The conn it
// returns is that channel; closing it logs out of every hop, last first.
// Each call builds the chain afresh, so a Client's reconnect does too.
// A hop whose host key is wrong or that refuses our keys fails with a
// FatalError, which a Client does not retry.
func JumpDialer(cfg JumpConfig) (DialFunc, error) {
	if len(cfg.Hosts) == 0 {
		return nil, errors.New("tunnel: JumpConfig.Hosts is empty")
	}
	for _, h := range cfg.Hosts {
		if h.HostKeyCallback == nil && cfg.HostKeyCallback == nil {
			return nil, fmt.Errorf("tunnel: no host key callback for jump host %s; use an auth.KnownHosts callback", h.Addr())
		}
	}
	if cfg.Dial == nil {
		cfg.Dial = new(net.Dialer).DialContext
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 15 * time.Second
	}
	return cfg.dial, nil
}

func (cfg JumpConfig) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, fmt.Errorf("tunnel: network %q: a jump host carries only tcp", network)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.ConnectTimeout)
		defer cancel()
	}
	var chain []*ssh.Client
	fail := func(err error) (net.Conn, error) {
		for i := len(chain) - 1; i >= 0; i-- {
			chain[i].Close()
		}
		return nil, err
	}
	for i, h := range cfg.Hosts {
		var nc net.Conn
		var err error
		if i == 0 {
			nc, err = cfg.Dial(ctx, "tcp", h.Addr())
			if err != nil {
				err = fmt.Errorf("tunnel: cannot reach jump host %s: %w", h.Addr(), err)
			}
		} else {
			nc, err = openDirect(ctx, chain[i-1], cfg.Hosts[i-1].Addr(), h.Addr())
		}
		if err != nil {
			return fail(err)
		}
		c, err := cfg.login(ctx, nc, h)
		if err != nil {
			return fail(err)
		}
		chain = append(chain, c)
	}
	last := cfg.Hosts[len(cfg.Hosts)-1].Addr()
	nc, err := openDirect(ctx, chain[len(chain)-1], last, addr)
	if err != nil {
		return fail(err)
	}
	return &jumpConn{chanConn: nc, chain: chain}, nil
}

// login runs the SSH handshake with hop h over nc.
func (cfg JumpConfig) login(ctx context.Context, nc net.Conn, h JumpHost) (*ssh.Client, error) {
	user := h.User
	if user == "" {
		user = cfg.User
	}
	sc := &ssh.ClientConfig{
		Config:            ssh.Config{Ciphers: ciphers},
		User:              user,
		Auth:              h.Auth,
		HostKeyCallback:   h.HostKeyCallback,
		HostKeyAlgorithms: h.HostKeyAlgorithms,
		ClientVersion:     versionPrefix + "_" + Version,
	}
	if sc.Auth == nil {
		sc.Auth = cfg.Auth
	}
	if sc.HostKeyCallback == nil {
		sc.HostKeyCallback = cfg.HostKeyCallback
	}
	if sc.HostKeyAlgorithms == nil && cfg.HostKeyAlgorithms != nil {
		sc.HostKeyAlgorithms = cfg.HostKeyAlgorithms(h.Addr())
	}
	var banners authBanners
	sc.BannerCallback = banners.record
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { nc.Close() })
	conn, chans, reqs, err := ssh.NewClientConn(nc, h.Addr(), sc)
	if !stop() || err != nil {
		nc.Close()
		if err == nil {
			err = ctx.Err()
		}
		switch {
		case errors.Is(err, auth.ErrHostKeyMismatch), errors.Is(err, auth.ErrHostKeyUnknown):
			return nil, &FatalError{Err: fmt.Errorf("tunnel: jump host %s: %w", h.Addr(), err)}
		case isAuthRefusal(err):
			return nil, &FatalError{Err: fmt.Errorf("jump host: %w", authRefused(h.Addr(), user, banners.take(), err))}
		}
		return nil, fmt.Errorf("tunnel: jump host %s: %w", h.Addr(), err)
	}
	nc.SetDeadline(time.Time{})
	return ssh.NewClient(conn, chans, reqs), nil
}

// openDirect opens a direct-tcpip channel to addr on c, the jump host at
// via, within ctx.
func openDirect(ctx context.Context, c *ssh.Client, via, addr string) (*chanConn, error) {
	host, port, err := splitPort(addr, "")
	if err != nil {
		return nil, err
	}
	p := newChannelOpen(host, port, nil)
	type result struct {
		ch  ssh.Channel
		err error
	}
	res := make(chan result, 1)
	go func() {
		ch, reqs, err := c.OpenChannel(chanDirectTCPIP, ssh.Marshal(p))
		if err == nil {
			ignoreRequests(reqs)
		}
		res <- result{ch, err}
	}()
	select {
	case r := <-res:
		if r.err != nil {
			return nil, fmt.Errorf("tunnel: jump host %s: %w", via, openError(addr, r.err))
		}
		return &chanConn{Channel: r.ch, laddr: addrString{via}, raddr: addrString{addr}}, nil
	case <-ctx.Done():
		go func() {
			if r := <-res; r.ch != nil {
				r.ch.Close()
			}
		}()
		return nil, fmt.Errorf("tunnel: jump host %s: open %s: %w", via, addr, ctx.Err())
	}
}

// jumpConn is the channel to the destination through a chain of jump
// hosts; Close ends the channel and logs out of every hop, last first.
type jumpConn struct {
	*chanConn
	chain []*ssh.Client
	once  sync.Once
}

func (c *jumpConn) Close() error {
	var err error
	c.once.Do(func() {
		err = c.chanConn.Close()
		for i := len(c.chain) - 1; i >= 0; i-- {
			c.chain[i].Close()
		}
	})
	return err
}
