package portmap

import (
	"fmt"
	"net/netip"
	"os"
)

func defaultGateway() (netip.Addr, error) {
	b, err := os.ReadFile("/proc/net/route")
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%w (reading /proc/net/route: %v)", ErrNoGateway, err)
	}
	return parseProcNetRoute(b)
}
