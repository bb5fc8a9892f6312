//go:build linux

package natlab

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestParseRedirects(t *testing.T) {
	for _, tc := range []struct {
		name, ruleset string
		want          []Redirect
	}{
		{"miniupnpd 2.3.1", `table inet filter {
	chain prerouting_miniupnpd {
		iif "wan0" @nh,72,8 0x6 th dport 18080 dnat ip to 192.168.77.2:8080
		iif "wan0" @nh,72,8 0x11 th dport 18081 dnat ip to 192.168.77.2:8081
	}
	chain postrouting_miniupnpd {
		ip saddr 192.168.77.2 ip daddr 11.22.33.2 @nh,72,8 0x6 th sport 8080 th dport 18080 snat ip to 11.22.33.1:18080
	}
}`, []Redirect{
			{"tcp", 18080, netip.MustParseAddrPort("192.168.77.2:8080")},
			{"udp", 18081, netip.MustParseAddrPort("192.168.77.2:8081")},
		}},
		{"other spellings", `
		meta l4proto udp udp dport 5000 dnat to 10.0.0.2:53
		tcp dport 443 dnat ip to 10.0.0.3:8443
		ip protocol tcp th dport 22 dnat to 10.0.0.4:2222`, []Redirect{
			{"udp", 5000, netip.MustParseAddrPort("10.0.0.2:53")},
			{"tcp", 443, netip.MustParseAddrPort("10.0.0.3:8443")},
			{"tcp", 22, netip.MustParseAddrPort("10.0.0.4:2222")},
		}},
		{"not whole", `
		th dport 18080 dnat ip to 192.168.77.2:8080
		@nh,72,8 0x6 dnat ip to 192.168.77.2:8080
		@nh,72,8 0x6 th dport 99999 dnat ip to 192.168.77.2:8080
		@nh,72,8 0x6 th dport 1 dnat ip to 192.168.77.2
		@nh,72,8 0x6 th dport 1 dnat ip to
		oifname "wan0" masquerade`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ParseRedirects(tc.ruleset); !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestMiniupnpdConf(t *testing.T) {
	conf := miniupnpdConf(Config{MinLifetime: 30 * time.Second, Extra: []string{"enable_upnp=no"}})
	for _, want := range []string{"ext_ifname=wan0\n", "listening_ip=lan0\n", "min_lifetime=30\n", "enable_upnp=no\nallow 1024-65535 192.168.77.0/24 1024-65535\ndeny 0-65535 0.0.0.0/0 0-65535\n"} {
		if !strings.Contains(conf, want) {
			t.Errorf("miniupnpd.conf lacks %q:\n%s", want, conf)
		}
	}
	if !strings.Contains(miniupnpdConf(Config{}), "min_lifetime=10\n") {
		t.Errorf("zero Config: want min_lifetime=10:\n%s", miniupnpdConf(Config{}))
	}
}

// TestLab: Debian's own clients, upnpc (UPnP IGD) and natpmpc (NAT-PMP),
// map ports from the LAN host; a TCP and a UDP service on the LAN host are
// then reached from the internet host through the router's WAN address,
// the router's ruleset holds the dnat, and after the clients delete their
// mappings the dnat is gone and the internet host is turned away.
func TestLab(t *testing.T) {
	NeedPrograms(t, "upnpc", "natpmpc")
	lab := New(t, Config{})
	ctx := testContext(t)
	tcpPort, udpPort := lab.ServeTCP(t), lab.ServeUDP(t)

	for i, tc := range []struct {
		client, proto string
	}{
		{"upnpc", "tcp"}, {"upnpc", "udp"}, {"natpmpc", "tcp"}, {"natpmpc", "udp"},
	} {
		t.Run(tc.client+"/"+tc.proto, func(t *testing.T) {
			internal, reach := tcpPort, lab.ReachTCP
			if tc.proto == "udp" {
				internal, reach = udpPort, lab.ReachUDP
			}
			external := uint16(20000 + i)
			wan := netip.AddrPortFrom(WANAddr, external)
			add, del := clientArgs(tc.client, tc.proto, internal, external)

			if err := reach(ctx, wan); err == nil {
				t.Fatalf("%s reached before any mapping", wan)
			}
			out, err := lab.Output(ctx, lab.LAN, tc.client, add...)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s %s:\n%s", tc.client, strings.Join(add, " "), out)
			want := Redirect{tc.proto, external, netip.AddrPortFrom(LANAddr, internal)}
			if !hasRedirect(t, lab, want) {
				t.Fatalf("the router has no dnat %v after %s", want, tc.client)
			}
			if err := reach(ctx, wan); err != nil {
				t.Fatalf("after %s: %v", tc.client, err)
			}
			if tc.client == "upnpc" {
				list, err := lab.Output(ctx, lab.LAN, "upnpc", "-u", RootDescURL, "-l")
				if err != nil {
					t.Fatal(err)
				}
				if line := fmt.Sprintf("%s %d->%s", strings.ToUpper(tc.proto), external, want.Internal); !strings.Contains(list, line) {
					t.Errorf("upnpc -l does not list %q:\n%s", line, list)
				}
			}

			if _, err := lab.Output(ctx, lab.LAN, tc.client, del...); err != nil {
				t.Fatal(err)
			}
			if hasRedirect(t, lab, want) {
				t.Fatalf("the router still has dnat %v after %s deleted it", want, tc.client)
			}
			if err := reach(ctx, wan); err == nil {
				t.Fatalf("%s still reached after %s deleted the mapping", wan, tc.client)
			}
		})
	}
}

// TestLabLeaseExpires: a mapping nobody renews leaves the router when its
// lease ends, so a test that sees a mapping alive past its first lease
// knows it was renewed.
func TestLabLeaseExpires(t *testing.T) {
	NeedPrograms(t, "natpmpc")
	lab := New(t, Config{})
	ctx := testContext(t)
	internal := lab.ServeTCP(t)
	const external = 20100
	want := Redirect{"tcp", external, netip.AddrPortFrom(LANAddr, internal)}
	add, _ := clientArgs("natpmpc", "tcp", internal, external)
	add[len(add)-1] = "2" // seconds
	if _, err := lab.Output(ctx, lab.LAN, "natpmpc", add...); err != nil {
		t.Fatal(err)
	}
	if !hasRedirect(t, lab, want) {
		t.Fatalf("natpmpc made no dnat %v", want)
	}
	for hasRedirect(t, lab, want) {
		select {
		case <-ctx.Done():
			t.Fatalf("the dnat %v of a 2 s lease is still there: %v", want, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
	if err := lab.ReachTCP(ctx, netip.AddrPortFrom(WANAddr, external)); err == nil {
		t.Fatal("the internet host still reaches the LAN host after the lease ended")
	}
}

// clientArgs returns the arguments that make client map external to the
// LAN host's internal port, and that delete that mapping.
func clientArgs(client, proto string, internal, external uint16) (add, del []string) {
	in, ex := fmt.Sprint(internal), fmt.Sprint(external)
	if client == "upnpc" {
		p := strings.ToUpper(proto)
		return []string{"-u", RootDescURL, "-a", LANAddr.String(), in, ex, p, "60"},
			[]string{"-u", RootDescURL, "-d", ex, p}
	}
	gw := GatewayAddr.String()
	return []string{"-g", gw, "-a", ex, in, proto, "60"},
		[]string{"-g", gw, "-a", ex, in, proto, "0"}
}

func hasRedirect(t *testing.T, lab *Lab, want Redirect) bool {
	t.Helper()
	rs, err := lab.Redirects(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	return slices.Contains(rs, want)
}

// TestLabsApartAndCleanedUp: two labs at once get namespaces of their own,
// each works, and once the test that made them ends their namespaces are
// gone and miniupnpd has exited.
func TestLabsApartAndCleanedUp(t *testing.T) {
	Need(t)
	var labs []*Lab
	t.Run("two labs", func(t *testing.T) {
		a, b := New(t, Config{}), New(t, Config{})
		labs = append(labs, a, b)
		if a.LAN == b.LAN || a.Router == b.Router || a.Internet == b.Internet {
			t.Fatalf("two labs share namespace names: %+v %+v", a, b)
		}
		ctx := testContext(t)
		for _, lab := range labs {
			port := lab.ServeTCP(t)
			// The LAN host reaches its own service, and the internet
			// host cannot reach the LAN host's private address at all.
			conn, err := Dial(ctx, lab.LAN, "tcp4", netip.AddrPortFrom(LANAddr, port).String())
			if err != nil {
				t.Fatalf("lab %s: %v", lab.LAN, err)
			}
			conn.Close()
			if conn, err := Dial(ctx, lab.Internet, "tcp4", netip.AddrPortFrom(LANAddr, port).String()); err == nil {
				conn.Close()
				t.Fatalf("lab %s: the internet host reached the LAN host's private address", lab.LAN)
			}
		}
	})
	if len(labs) != 2 {
		t.FailNow()
	}
	for _, lab := range labs {
		for _, ns := range []string{lab.LAN, lab.Router, lab.Internet} {
			if _, err := os.Stat(filepath.Join("/run/netns", ns)); !os.IsNotExist(err) {
				t.Errorf("namespace %s still there after its test ended (%v)", ns, err)
			}
		}
		if err := syscall.Kill(lab.MiniupnpdPid, 0); err != syscall.ESRCH {
			t.Errorf("miniupnpd (pid %d) still there after its test ended (%v)", lab.MiniupnpdPid, err)
		}
	}
}

func TestMatchLine(t *testing.T) {
	rx := regexp.MustCompile(`^(\d+\.\d+\.\d+\.\d+):(\d+)$`)
	for _, tc := range []struct {
		text string
		all  bool
		want string // the whole match, "" for none
	}{
		{"11.22.33.1:30000\n", false, "11.22.33.1:30000"},
		{"log\n11.22.33.1:30000\r\nmore\n", false, "11.22.33.1:30000"},
		{"11.22.33.1:3", false, ""}, // half written: the port may go on
		{"11.22.33.1:3", true, "11.22.33.1:3"},
		{"no\n", true, ""},
	} {
		m := matchLine(rx, tc.text, tc.all)
		if got := strings.Join(m[:min(len(m), 1)], ""); got != tc.want {
			t.Errorf("matchLine(%q, all=%v) = %q, want %q", tc.text, tc.all, got, tc.want)
		}
	}
}

// TestProc: a program started in a namespace runs there, its lines are
// waited for whole, and its exit code is kept.
func TestProc(t *testing.T) {
	lab := New(t, Config{})
	ctx := testContext(t)
	p := lab.Start(t, lab.Internet, "sh", "-c", `ip -4 -o addr show dev eth0; printf 'half'; sleep 0.3; printf ' line\n'; echo oops >&2; exit 3`)
	if _, err := p.WaitStdout(ctx, regexp.QuoteMeta(InternetAddr.String()+"/24")); err != nil {
		t.Fatal(err)
	}
	m, err := p.WaitStdout(ctx, `^half(.*)$`)
	if err != nil || m[1] != " line" {
		t.Fatalf("WaitStdout(^half(.*)$) = %q, %v; want the line once whole", m, err)
	}
	if _, err := p.WaitStderr(ctx, `^oops$`); err != nil {
		t.Fatal(err)
	}
	if code := p.ExitCode(); code != 3 {
		t.Errorf("exit code %d, want 3", code)
	}
	if _, err := p.WaitStdout(ctx, `never`); err == nil || !strings.Contains(err.Error(), "exited") {
		t.Errorf("WaitStdout for a line that never comes from an exited program: %v", err)
	}
}
