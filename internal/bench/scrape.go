package bench

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"sync"
	"time"
)

// metricsFlags are what the pinhole-metrics setup gives both ends.
var metricsFlags = []string{"--metrics", "127.0.0.1:0"}

var metricsLine = regexp.MustCompile(`metrics on http://(\S+)/metrics`)

// metricsURL is where p said it serves its metrics.
func metricsURL(p *proc) (string, error) {
	m := metricsLine.FindStringSubmatch(p.Output())
	if m == nil {
		return "", fmt.Errorf("bench: no metrics line in the output of %v:\n%s", p.cmd.Args, p.Output())
	}
	return "http://" + m[1] + "/metrics", nil
}

// scrapeAll GETs each of urls at once, and returns once those first
// scrapes are done, then every interval, as Prometheus would, until the
// returned closer is closed; a failed scrape ends nothing, and Close says
// on stderr how many failed (a setup's Close drops errors). The first
// scrapes end before the setup is handed to a measurement, so that what
// one leaves on the heap is in the memory figure's baseline, not in its
// growth: a scrape is a fixed cost, not one per connection.
func scrapeAll(urls []string, every time.Duration) io.Closer {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed int
	var last error
	client := &http.Client{Timeout: 5 * time.Second}
	scrape := func(u string) {
		res, err := client.Get(u)
		if err == nil {
			_, err = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if err == nil && res.StatusCode != http.StatusOK {
				err = fmt.Errorf("%s: %s", u, res.Status)
			}
		}
		if err != nil {
			mu.Lock()
			failed, last = failed+1, err
			mu.Unlock()
		}
	}
	for _, u := range urls {
		scrape(u)
	}
	for _, u := range urls {
		wg.Go(func() {
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
				}
				scrape(u)
			}
		})
	}
	return closerErrFunc(func() error {
		close(stop)
		wg.Wait()
		if failed > 0 {
			fmt.Fprintf(os.Stderr, "pinhole-bench: %d scrapes of the pinhole-metrics setup failed, the last: %v\n", failed, last)
		}
		return nil
	})
}

type closerErrFunc func() error

func (f closerErrFunc) Close() error { return f() }
