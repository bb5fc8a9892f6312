package portmap

import (
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"testing"
)

// Every parser of bytes a router (or anything on the LAN) sends is fuzzed
// here; the seeds are real answers (testdata) and ones built by hand.

func FuzzPMPResponse(f *testing.F) {
	f.Add([]byte{0, 128, 0, 0, 0, 0, 0, 100, 203, 0, 113, 7})                           // external address
	f.Add([]byte{0, 130, 0, 0, 0, 0, 0, 100, 0x1f, 0x90, 0x46, 0xa0, 0, 0, 0x0e, 0x10}) // TCP map
	f.Add([]byte{0, 129, 0, 2, 0, 0, 0, 100})                                           // refused, short
	f.Add([]byte{2, 0x81, 0, 1})                                                        // a PCP server's answer
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parsePMPResponse(b)
		if err != nil {
			return
		}
		if r.result == 0 && r.op == pmpOpAddr && !r.external.Is4() {
			t.Errorf("address answer %x parsed without an IPv4 address", b)
		}
	})
}

func FuzzPCPResponse(f *testing.F) {
	ok := make([]byte, pcpHeaderLen+pcpMapLen)
	ok[0], ok[1] = pcpVersion, pcpReplyBit|pcpOpMap
	ok[7] = 120
	a := netip.MustParseAddr("203.0.113.7").As16()
	copy(ok[pcpHeaderLen+20:], a[:])
	f.Add(ok)
	f.Add([]byte{2, 0x81, 0, 2, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}) // NOT_AUTHORIZED, no payload
	f.Add([]byte{2, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}) // ANNOUNCE
	f.Add([]byte{0, 0x81, 0, 1, 0, 0, 0, 9})                                                 // NAT-PMP only
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parsePCPResponse(b)
		if err != nil {
			return
		}
		if r.op == pcpOpMap && r.result == 0 && !r.hasMap {
			t.Errorf("successful MAP answer %x parsed without its payload", b)
		}
	})
}

func FuzzSSDPResponse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "ssdp", "*.txt"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("HTTP/1.1 200 OK\r\nLOCATION: http://127.0.0.1:5000/rootDesc.xml\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseSSDPResponse(b)
		if err == nil && r.Location == "" {
			t.Errorf("answer %q parsed without a LOCATION", b)
		}
	})
}

func FuzzDescription(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*-rootDesc.xml"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	loc, _ := url.Parse("http://192.168.1.1:5000/rootDesc.xml")
	f.Fuzz(func(t *testing.T, b []byte) {
		svcs, err := parseDescription(b, loc)
		if err != nil {
			return
		}
		for i, s := range svcs {
			if _, ok := serviceRank[s.Type]; !ok {
				t.Errorf("service of type %q", s.Type)
			}
			if s.Control.Hostname() != loc.Hostname() {
				t.Errorf("control URL %s is not on the description's host", s.Control)
			}
			if i > 0 && serviceRank[s.Type] < serviceRank[svcs[i-1].Type] {
				t.Errorf("services not best first: %v", svcs)
			}
		}
	})
}

func FuzzSOAPResponse(f *testing.F) {
	f.Add([]byte(`<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body><u:GetGenericPortMappingEntryResponse xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:2"><NewRemoteHost></NewRemoteHost><NewExternalPort>30100</NewExternalPort><NewProtocol>TCP</NewProtocol><NewInternalPort>8080</NewInternalPort><NewInternalClient>192.168.77.2</NewInternalClient><NewEnabled>1</NewEnabled><NewPortMappingDescription>libminiupnpc</NewPortMappingDescription><NewLeaseDuration>118</NewLeaseDuration></u:GetGenericPortMappingEntryResponse></s:Body></s:Envelope>`))
	f.Add([]byte(`<?xml version="1.0"?><s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/"><s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring>UPnPError</faultstring><detail><UPnPError xmlns="urn:schemas-upnp-org:control-1-0"><errorCode>718</errorCode><errorDescription>ConflictInMappingEntry</errorDescription></UPnPError></detail></s:Fault></s:Body></s:Envelope>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		args, fault, err := parseSOAPResponse(b, "GetGenericPortMappingEntry")
		if err != nil || fault != nil {
			if fault != nil {
				_ = upnpError("x", fault).Error()
			}
			return
		}
		if e, err := parseEntry(args, netip.MustParseAddr("203.0.113.7")); err == nil && !e.Internal.IsValid() {
			t.Errorf("entry without an internal address: %+v", e)
		}
	})
}

func FuzzProcNetRoute(f *testing.F) {
	f.Add([]byte("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\neth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\neth0\t0001A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		gw, err := parseProcNetRoute(b)
		if err == nil && (!gw.Is4() || gw.IsUnspecified()) {
			t.Errorf("gateway %v from %q", gw, b)
		}
	})
}
