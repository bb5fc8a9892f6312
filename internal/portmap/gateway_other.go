//go:build !linux

package portmap

import (
	"fmt"
	"net/netip"
	"runtime"
)

func defaultGateway() (netip.Addr, error) {
	return netip.Addr{}, fmt.Errorf("%w (reading the routing table is not implemented on %s)", ErrNoGateway, runtime.GOOS)
}
