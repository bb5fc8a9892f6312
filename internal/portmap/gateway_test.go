package portmap

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

func TestParseProcNetRoute(t *testing.T) {
	const header = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
	for _, tc := range []struct {
		name  string
		table string
		want  string // "" means ErrNoGateway
	}{
		{"one", header + "eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n", "192.168.1.1"},
		{"lowest metric", header +
			"wlan0\t00000000\t01B2A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n" +
			"eth0\t00000000\t0100000A\t0003\t0\t0\t100\t00000000\t0\t0\t0\n", "10.0.0.1"},
		{"no default route", header + "eth0\t0001A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n", ""},
		{"route down", header + "eth0\t00000000\t0101A8C0\t0002\t0\t0\t100\t00000000\t0\t0\t0\n", ""},
		{"malformed", header + "eth0\t0000\tZZZZZZZZ\t0003\n", ""},
		{"empty", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseProcNetRoute([]byte(tc.table))
			if tc.want == "" {
				if !errors.Is(err, ErrNoGateway) {
					t.Errorf("got %v, %v; want ErrNoGateway", got, err)
				}
				return
			}
			if err != nil || got != netip.MustParseAddr(tc.want) {
				t.Errorf("got %v, %v; want %s", got, err, tc.want)
			}
		})
	}
}

func TestEpochs(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	for _, tc := range []struct {
		name   string
		epoch  uint32
		passed time.Duration
		lost   bool
	}{
		{"in step", 1100, 100 * time.Second, false},
		{"a little slow", 1097, 100 * time.Second, false},
		{"went back", 5, 100 * time.Second, true},
		{"stood still", 1000, 100 * time.Second, true},
		{"ran ahead", 5000, 100 * time.Second, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var e epochs
			if e.observe(1000, t0) {
				t.Fatal("the first observation cannot be a loss")
			}
			if got := e.observe(tc.epoch, t0.Add(tc.passed)); got != tc.lost {
				t.Errorf("lost = %v, want %v", got, tc.lost)
			}
		})
	}
}

func TestParseSSDPFixtures(t *testing.T) {
	for _, tc := range []struct{ file, location string }{
		{"googlewifi.txt", "http://192.168.86.1:5000/rootDesc.xml"},
		{"pfsense.txt", "http://192.168.1.1:2189/rootDesc.xml"},
		{"sagemcom.txt", "http://192.168.0.1:49153/69692b70/gatedesc0b.xml"},
		{"huawei.txt", "http://192.168.1.1:49652/49652gatedesc.xml"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			r, err := parseSSDPResponse([]byte(readFixture(t, "ssdp/"+tc.file)))
			if err != nil || r.Location != tc.location {
				t.Errorf("got %+v, %v; want LOCATION %s", r, err, tc.location)
			}
		})
	}
}

// TestParseDescriptionURLBase: a URLBase naming another host than the one
// that served the description is ignored (MikroTik's names 10.0.0.1).
func TestParseDescriptionURLBase(t *testing.T) {
	loc := mustURL(t, "http://192.168.88.1:2828/rootDesc.xml")
	svcs, err := parseDescription([]byte(readFixture(t, "mikrotik-rootDesc.xml")), loc)
	if err != nil {
		t.Fatal(err)
	}
	if len(svcs) != 2 || svcs[0].Control.String() != "http://192.168.88.1:2828/upnp/control/yomkmsnooi/wanipconn-1" {
		t.Errorf("services %+v", svcs)
	}
	if _, err := parseDescription([]byte(`<root><device><deviceType>urn:schemas-upnp-org:device:MediaServer:1</deviceType></device></root>`), loc); err == nil {
		t.Error("a media server was taken for a gateway")
	}
}
