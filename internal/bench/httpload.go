package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/pinhole-dev/pinhole/internal/transport"
)

// The http setups: small GETs to a small Go HTTP service, directly and
// through pinhole server's name router (internal/vhost) and a -R
// forward, by keep-alive clients that each hold one connection, as a
// load tool does.

// benchDomain is the --domain of the http setups' pinhole server, and
// benchName the name their -R asks for: requests go to
// http(s)://app.bench.test:PORT, dialed at 127.0.0.1 (no DNS).
const (
	benchDomain = "bench.test"
	benchName   = "app"
)

// httpBody is what the service answers every GET with: a small page.
var httpBody = bytes.Repeat([]byte("pinhole-bench\n"), 8) // 112 bytes

// httpService is the handler of the benchmark's HTTP service: any GET
// gets httpBody.
func httpService() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(httpBody)
	})
}

// newHTTPServer is the service's server on its listener.
func newHTTPServer() *http.Server {
	return &http.Server{Handler: httpService(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
}

// httpTarget is where a setup takes HTTP requests in: 127.0.0.1:port,
// with a URL whose host is the Host (and, over TLS, the SNI) sent.
type httpTarget struct {
	port int
	// url is the URL requested: http://app.bench.test:PORT/ through
	// the name router, http://127.0.0.1:PORT/ directly.
	url string
	// fingerprint, for https, is the certificate's the client pins.
	fingerprint string
}

// newHTTPClient returns a client that sends every request to
// 127.0.0.1:t.port whatever its URL's host, over at most one keep-alive
// connection at a time, and pins the server's certificate for https.
func (t httpTarget) newHTTPClient() *http.Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			d := net.Dialer{Timeout: 5 * time.Second}
			return d.DialContext(ctx, network, loopback(t.port))
		},
		MaxIdleConnsPerHost: 1,
		MaxConnsPerHost:     1,
		DisableCompression:  true,
		TLSClientConfig: &tls.Config{
			// Checked by VerifyConnection instead: the fingerprint of
			// the lab's self-signed certificate.
			InsecureSkipVerify: true,
			VerifyConnection: func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 || transport.Fingerprint(cs.PeerCertificates[0].Raw) != t.fingerprint {
					return errors.New("bench: the server's certificate is not the lab's")
				}
				return nil
			},
		},
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// get makes one GET with c and checks the answer: 200 and httpBody.
func (t httpTarget) get(ctx context.Context, c *http.Client, buf []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	n, err := io.ReadFull(resp.Body, buf)
	if err == nil || errors.Is(err, io.ErrUnexpectedEOF) {
		_, err = io.Copy(io.Discard, resp.Body) // to EOF, so the connection is reused
	}
	switch {
	case err != nil:
		return err
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("bench: GET %s: %s: %s", t.url, resp.Status, oneLine(string(buf[:n])))
	case !bytes.Equal(buf[:n], httpBody):
		return fmt.Errorf("bench: GET %s: 200 with %q, not the service's answer", t.url, oneLine(string(buf[:n])))
	}
	return nil
}

// httpServes reports whether one GET to t gets the service's answer.
func httpServes(ctx context.Context, t httpTarget) bool {
	c := t.newHTTPClient()
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	return t.get(ctx, c, make([]byte, 2*len(httpBody))) == nil
}

// httpLoad runs clients keep-alive clients, each making GETs to t one
// after the other for d, and returns requests per second, p50 and p99 in
// µs over all of them. Each client first makes a few requests that are
// not timed (its connection opening, through the router that is a
// channel through the tunnel too). A failed request is counted, its
// client goes on with a new connection; a note says how many failed.
//
// With a rate (requests per second in all) the load is open: each
// client sends its requests on a schedule, the clients' staggered, and
// each request's time runs from when it was due, so that a slow answer
// counts against the requests it held up too. 0 is the closed loop:
// each request as soon as the one before is answered.
func httpLoad(ctx context.Context, t httpTarget, d time.Duration, clients int, rate float64) ([]float64, string, error) {
	const warmup = 20
	results := make([]clientRun, clients)
	var ready, wg sync.WaitGroup
	start := make(chan struct{})
	var began time.Time // set before start is closed
	ready.Add(clients)
	for i := range clients {
		wg.Go(func() {
			c := t.newHTTPClient()
			defer c.CloseIdleConnections()
			buf := make([]byte, 2*len(httpBody))
			var err error
			for range warmup {
				if err = t.get(ctx, c, buf); err != nil {
					break
				}
			}
			ready.Done()
			<-start
			if err != nil {
				results[i] = clientRun{failed: 1, firstErr: err}
				return
			}
			get := func() error { return t.get(ctx, c, buf) }
			if rate <= 0 {
				results[i] = timeGets(ctx, d, get)
				return
			}
			interval := time.Duration(float64(clients) / rate * float64(time.Second))
			first := began.Add(interval * time.Duration(i) / time.Duration(clients))
			results[i] = timePacedGets(ctx, first, began.Add(d), interval, get)
		})
	}
	ready.Wait()
	began = time.Now()
	close(start)
	wg.Wait()
	elapsed := time.Since(began)
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	return summarize(results, elapsed)
}

// clientRun is what one client of httpLoad did.
type clientRun struct {
	rtts     []time.Duration // of the requests that worked
	failed   int
	firstErr error
}

// timeGets calls get again and again for d and times each call that
// works.
func timeGets(ctx context.Context, d time.Duration, get func() error) clientRun {
	r := clientRun{rtts: make([]time.Duration, 0, 1<<12)}
	end := time.Now().Add(d)
	for now := time.Now(); now.Before(end) && ctx.Err() == nil; {
		err := get()
		next := time.Now()
		if err != nil {
			r.failed++
			if r.firstErr == nil {
				r.firstErr = err
			}
		} else {
			r.rtts = append(r.rtts, next.Sub(now))
		}
		now = next
	}
	return r
}

// timePacedGets calls get at first, first+interval, first+2·interval …
// up to end, each when it is due or, when the one before is late, at
// once after it, and times each call that works from when it was due.
func timePacedGets(ctx context.Context, first, end time.Time, interval time.Duration, get func() error) clientRun {
	r := clientRun{rtts: make([]time.Duration, 0, 1<<10)}
	for due := first; due.Before(end) && ctx.Err() == nil; due = due.Add(interval) {
		if wait := time.Until(due); wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return r
			}
		}
		if err := get(); err != nil {
			r.failed++
			if r.firstErr == nil {
				r.firstErr = err
			}
			continue
		}
		r.rtts = append(r.rtts, time.Since(due))
	}
	return r
}

// summarize merges the clients' runs into httpLoad's figures: requests
// that worked per second of elapsed, p50 and p99 in µs, and a note on
// the requests that failed. It fails when none worked.
func summarize(runs []clientRun, elapsed time.Duration) ([]float64, string, error) {
	var all []time.Duration
	failed := 0
	var firstErr error
	for _, r := range runs {
		all = append(all, r.rtts...)
		failed += r.failed
		if firstErr == nil {
			firstErr = r.firstErr
		}
	}
	if len(all) == 0 {
		return nil, "", fmt.Errorf("bench: no request worked: %w", firstErr)
	}
	slices.Sort(all)
	note := ""
	if failed > 0 {
		note = fmt.Sprintf("%d of %d requests failed, the first with: %v", failed, failed+len(all), firstErr)
	}
	return rateAndPercentiles(all, elapsed), note, nil
}

// httpURL is the URL of the name router's name on port, over scheme.
func httpURL(scheme string, port int) string {
	return fmt.Sprintf("%s://%s.%s:%d/", scheme, benchName, benchDomain, port)
}
