package portmap_test

import (
	"context"
	"fmt"
	"time"

	"github.com/pinhole-dev/pinhole/internal/portmap"
	"github.com/pinhole-dev/pinhole/internal/portmap/portmaptest"
)

// Map a port, print where it is reachable, hold it until ctx ends.
func ExampleClient_Map() {
	router, err := portmaptest.Listen(portmaptest.Config{}) // a fake router on 127.0.0.1
	if err != nil {
		fmt.Println(err)
		return
	}
	defer router.Close()

	c := portmap.New(portmap.Config{
		// A real program leaves these zero: the default gateway, port
		// 5351 and the SSDP multicast group.
		Gateway:  router.Addr,
		PMPPort:  router.PMPPort,
		SSDPAddr: router.SSDPAddr,
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	m, err := c.Map(ctx, portmap.Request{Proto: portmap.TCP, InternalPort: 8080})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(m.Method(), m.External())

	// Keep renews until ctx ends, then removes the mapping.
	cancel()
	if err := c.Keep(ctx, m, nil); err != nil {
		fmt.Println(err)
	}
	fmt.Println(len(router.Mappings()), "mappings left")
	// Output:
	// pcp 203.0.113.7:8080
	// 0 mappings left
}
