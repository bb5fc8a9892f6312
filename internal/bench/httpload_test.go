package bench

import (
	"errors"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		var out []time.Duration
		for _, n := range ns {
			out = append(out, time.Duration(n)*time.Millisecond)
		}
		return out
	}
	boom := errors.New("boom")
	tests := []struct {
		name    string
		runs    []clientRun
		want    []float64
		note    string
		wantErr bool
	}{
		{"one client", []clientRun{{rtts: ms(3, 1, 2)}}, []float64{3, 2000, 3000}, "", false},
		// merged over the clients, then sorted: 1 2 3 4 ... 10
		{"clients merged", []clientRun{{rtts: ms(10, 1, 9, 2, 8)}, {rtts: ms(3, 7, 4, 6, 5)}}, []float64{10, 5000, 10000}, "", false},
		{"some failed", []clientRun{{rtts: ms(1), failed: 1, firstErr: boom}, {rtts: ms(1)}}, []float64{2, 1000, 1000}, "1 of 3 requests failed, the first with: boom", false},
		{"none worked", []clientRun{{failed: 2, firstErr: boom}, {}}, nil, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, note, err := summarize(tt.runs, time.Second)
			if tt.wantErr {
				if !errors.Is(err, boom) {
					t.Fatalf("err = %v, want one wrapping boom", err)
				}
				return
			}
			if err != nil || note != tt.note || len(got) != len(tt.want) {
				t.Fatalf("summarize = %v, %q, %v; want %v, %q", got, note, err, tt.want, tt.note)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("figure %d = %v, want %v", i, got[i], tt.want[i])
				}
			}
		})
	}
}

// TestHTTPLoad loads the service in this process, straight and by Host:
// every figure comes out and no request fails; a target whose answers
// are not the service's fails.
func TestHTTPLoad(t *testing.T) {
	srv := httptest.NewServer(httpService())
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	target := httpTarget{port: port, url: httpURL("http", port)}
	for _, clients := range []int{1, 8} {
		got, note, err := httpLoad(t.Context(), target, 50*time.Millisecond, clients, 0)
		if err != nil || note != "" || len(got) != 3 || got[0] <= 0 {
			t.Fatalf("%d clients: %v, %q, %v", clients, got, note, err)
		}
	}
	other := httptest.NewServer(nil) // 404 for everything
	defer other.Close()
	port = other.Listener.Addr().(*net.TCPAddr).Port
	_, _, err := httpLoad(t.Context(), httpTarget{port: port, url: httpURL("http", port)}, 50*time.Millisecond, 2, 0)
	if err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("against a server that answers 404: %v, want an error saying 404", err)
	}
}

// TestTimePacedGets: requests go out on their schedule, and one that
// waits behind a slow answer is timed from when it was due.
func TestTimePacedGets(t *testing.T) {
	first := time.Now().Add(10 * time.Millisecond)
	calls := 0
	var at []time.Duration // since first, when each call began
	r := timePacedGets(t.Context(), first, first.Add(100*time.Millisecond), 20*time.Millisecond, func() error {
		at = append(at, time.Since(first))
		calls++
		if calls == 2 {
			time.Sleep(50 * time.Millisecond) // holds up the next two
		}
		return nil
	})
	if len(r.rtts) != 5 || r.failed != 0 {
		t.Fatalf("%d timed, %d failed; want the 5 due within 100ms", len(r.rtts), r.failed)
	}
	if at[0] < 0 || at[1] < 20*time.Millisecond {
		t.Errorf("calls began %v after the first was due, before their time", at)
	}
	// The second took 50ms; the third, due at 40ms, began at 70ms and
	// counts those 30ms.
	if r.rtts[1] < 50*time.Millisecond || r.rtts[2] < 30*time.Millisecond {
		t.Errorf("times %v: want the second ≥ 50ms and the third ≥ 30ms", r.rtts)
	}
}

func TestHTTPLoadPaced(t *testing.T) {
	srv := httptest.NewServer(httpService())
	defer srv.Close()
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	got, note, err := httpLoad(t.Context(), httpTarget{port: port, url: httpURL("http", port)}, 200*time.Millisecond, 8, 400)
	if err != nil || note != "" {
		t.Fatal(err, note)
	}
	// 400/s for 0.2 s: 80 requests over somewhat more than 0.2 s.
	if got[0] < 150 || got[0] > 450 {
		t.Errorf("%v req/s at a rate of 400", got[0])
	}
}
