package config

import (
	"slices"

	"github.com/pinhole-dev/pinhole/internal/spec"
)

// Diff is what turns the running set of one config into the next's.
// Every tunnel of the two configs is in exactly one of its lists.
type Diff struct {
	// Start: tunnels only the new config has.
	Start []*Tunnel
	// Stop: tunnels only the old config has (the old's values). They
	// drain.
	Stop []*Tunnel
	// Restart: tunnels whose connection settings changed (the new's
	// values): stopped, draining, then started again.
	Restart []*Tunnel
	// Change: tunnels whose connection stays and whose forwards differ.
	Change []Change
	// Same: tunnels that did not change at all, by name. Nothing of
	// theirs is touched.
	Same []string
}

// Change is a running tunnel's forwards to add and to remove; its other
// forwards are left alone.
type Change struct {
	Tunnel *Tunnel // the new config's
	Add    []spec.Forward
	Remove []spec.Forward
}

// Empty reports whether d leaves every tunnel as it is.
func (d Diff) Empty() bool {
	return len(d.Start)+len(d.Stop)+len(d.Restart)+len(d.Change) == 0
}

// Compare says what a reload from old to new does; old may be nil (the
// first start: every tunnel of new starts). It is a pure function of its
// arguments.
func Compare(old, new *Config) Diff {
	var d Diff
	if old == nil {
		old = &Config{}
	}
	for _, t := range new.Tunnels {
		o := old.Tunnel(t.Name)
		switch {
		case o == nil:
			d.Start = append(d.Start, t)
		case !o.Conn.Equal(t.Conn):
			d.Restart = append(d.Restart, t)
		default:
			add, remove := forwardsDiff(o.Forwards, t.Forwards)
			if len(add)+len(remove) == 0 {
				d.Same = append(d.Same, t.Name)
			} else {
				d.Change = append(d.Change, Change{Tunnel: t, Add: add, Remove: remove})
			}
		}
	}
	for _, o := range old.Tunnels {
		if new.Tunnel(o.Name) == nil {
			d.Stop = append(d.Stop, o)
		}
	}
	return d
}

// forwardsDiff is what is in b and not a (add), and in a and not b
// (remove), each in its list's order.
func forwardsDiff(a, b []spec.Forward) (add, remove []spec.Forward) {
	for _, f := range b {
		if !slices.Contains(a, f) {
			add = append(add, f)
		}
	}
	for _, f := range a {
		if !slices.Contains(b, f) {
			remove = append(remove, f)
		}
	}
	return add, remove
}
