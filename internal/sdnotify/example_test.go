package sdnotify_test

import (
	"context"
	"fmt"
	"os"

	"github.com/pinhole-dev/pinhole/internal/sdnotify"
)

// A service tells systemd it is ready once it listens, pings the
// watchdog, and says when it stops. The caller (cli) reads the
// environment; outside systemd the Notifier sends nothing.
func Example() {
	n, err := sdnotify.New(sdnotify.Config{
		Socket:       os.Getenv("NOTIFY_SOCKET"),
		WatchdogUSec: os.Getenv("WATCHDOG_USEC"),
		WatchdogPID:  os.Getenv("WATCHDOG_PID"),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	// ... bind the listeners ...
	n.Ready("listening on [::]:22")
	go n.Watchdog(ctx, nil)
	// ... serve until told to stop ...
	n.Stopping("draining")
	fmt.Println("under systemd:", n.Enabled())
}
