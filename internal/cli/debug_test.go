package cli

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// TestDebugFlag: --debug-addr serves the goroutine profile on loopback and
// refuses any other address.
func TestDebugFlag(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr syncBuffer
	d := &debugFlag{ctx: ctx, e: &env{stderr: &stderr}}
	for _, bad := range []string{"0.0.0.0:0", "[::]:0", "10.1.2.3:6060", "localhost:6060", "6060"} {
		if err := d.Set(bad); err == nil {
			t.Errorf("--debug-addr %s: accepted, want an error", bad)
		}
	}
	if err := d.Set("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + d.String() + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !regexp.MustCompile(`(?m)^goroutine profile: total \d+$`).Match(body) {
		t.Errorf("the goroutine profile does not say its total:\n%.300s", body)
	}
	if !strings.Contains(stderr.String(), d.String()) {
		t.Errorf("nothing said where the profiles are: %q", stderr.String())
	}
	if err := d.Set("127.0.0.1:0"); err == nil {
		t.Error("a second --debug-addr was accepted")
	}
}
