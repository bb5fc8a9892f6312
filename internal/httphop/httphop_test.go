package httphop

import (
	"net/http"
	"slices"
	"testing"
)

func TestRemove(t *testing.T) {
	h := http.Header{
		"Connection":       {"keep-alive, x-trace", "Upgrade"},
		"Keep-Alive":       {"timeout=5"},
		"X-Trace":          {"1"},
		"Upgrade":          {"websocket"},
		"Proxy-Connection": {"keep-alive"},
		"Te":               {"trailers"},
		"Accept":           {"*/*"},
		"Content-Length":   {"3"},
	}
	if got, want := Named(h), []string{"Keep-Alive", "X-Trace", "Upgrade"}; !slices.Equal(got, want) {
		t.Errorf("Named = %v, want %v", got, want)
	}
	Remove(h)
	if len(h) != 2 || h.Get("Accept") != "*/*" || h.Get("Content-Length") != "3" {
		t.Errorf("after Remove: %v, want Accept and Content-Length alone", h)
	}
	if !Is("Transfer-Encoding") || Is("Content-Length") || Is("transfer-encoding") {
		t.Error("Is: want the canonical hop-by-hop names only")
	}
}
