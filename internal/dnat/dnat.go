// Package dnat is pinhole forward --kernel: the relay done by the kernel,
// the way a router does it. For each pair it installs an nftables DNAT rule
// that rewrites the destination of connections (and UDP flows) to the
// listening port to the target, and a masquerade rule so the target's
// replies come back through this host, all in one table of the process's
// own, so that removing them is one `nft delete table`.
//
// The rules go in two hooks: prerouting, for traffic that arrives from
// other hosts (forwarded on to the target, which needs
// net.ipv4.ip_forward, or net.ipv6.conf.all.forwarding, on), and output,
// for connections this host opens itself to one of its own addresses
// (except 127.0.0.0/8 and ::1, which the kernel will not route elsewhere
// unless route_localnet is on). Connections already open when the table
// goes keep their translation in conntrack until they end.
package dnat

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strings"

	"github.com/pinhole-dev/pinhole/internal/spec"
)

// Rule is one pair as the kernel relays it.
type Rule struct {
	Proto spec.Proto
	// Listen's address is the local address matched; an invalid (zero)
	// address matches every address of this host. Its port is never 0.
	Listen netip.AddrPort
	// Target is where matching traffic is sent, of Listen's IP family
	// when Listen has an address.
	Target netip.AddrPort
}

// check reports what is wrong with r for the kernel.
func (r Rule) check() error {
	switch {
	case r.Proto != spec.TCP && r.Proto != spec.UDP:
		return fmt.Errorf("dnat: unknown protocol %v", r.Proto)
	case r.Listen.Port() == 0:
		return fmt.Errorf("dnat: %s://%s: --kernel needs a listening port 1-65535, not 0", r.Proto, r.listen())
	case !r.Target.IsValid() || r.Target.Port() == 0:
		return fmt.Errorf("dnat: target %s: want an IP address and a port 1-65535", r.Target)
	case r.Listen.Addr().IsValid() && r.Listen.Addr().Unmap().Is4() != r.Target.Addr().Unmap().Is4():
		return fmt.Errorf("dnat: %s → %s: the kernel does not translate between IPv4 and IPv6; give a target of the listening address's family", r.listen(), r.Target)
	}
	return nil
}

// listen is Listen as the user wrote it: ":8080" for every address.
func (r Rule) listen() string {
	if !r.Listen.Addr().IsValid() {
		return fmt.Sprintf(":%d", r.Listen.Port())
	}
	return r.Listen.String()
}

// Ruleset returns the nftables script (for nft -f) that makes table, an
// inet table, with rules in it.
func Ruleset(table string, rules []Rule) (string, error) {
	if !validName(table) {
		return "", fmt.Errorf("dnat: table name %q: use letters, digits, '-' and '_'", table)
	}
	var dnat, masq strings.Builder
	for _, r := range rules {
		if err := r.check(); err != nil {
			return "", err
		}
		fam, to := "ip", r.Target.String()
		if !r.Target.Addr().Unmap().Is4() {
			fam = "ip6"
		} else {
			to = netip.AddrPortFrom(r.Target.Addr().Unmap(), r.Target.Port()).String()
		}
		match := "fib daddr type local meta nfproto ipv4"
		if fam == "ip6" {
			match = "fib daddr type local meta nfproto ipv6"
		}
		if a := r.Listen.Addr(); a.IsValid() {
			match = fmt.Sprintf("%s daddr %s", fam, a.Unmap())
		}
		fmt.Fprintf(&dnat, "\t\t%s %s dport %d dnat %s to %s\n", match, r.Proto, r.Listen.Port(), fam, to)
		fmt.Fprintf(&masq, "\t\t%s daddr %s %s dport %d ct status dnat ct original proto-dst %d masquerade\n",
			fam, r.Target.Addr().Unmap(), r.Proto, r.Target.Port(), r.Listen.Port())
	}
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n", table)
	fmt.Fprintf(&b, "\tchain prerouting {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n%s\t}\n", dnat.String())
	fmt.Fprintf(&b, "\tchain output {\n\t\ttype nat hook output priority -100; policy accept;\n%s\t}\n", dnat.String())
	fmt.Fprintf(&b, "\tchain postrouting {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n%s\t}\n", masq.String())
	b.WriteString("}\n")
	return b.String(), nil
}

func validName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Tables returns the names of the inet tables whose names start with
// prefix, as `nft list tables` gives them.
func Tables(ctx context.Context, nft, prefix string) ([]string, error) {
	cmd := exec.CommandContext(ctx, nft, "list", "tables", "inet")
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("dnat: nft list tables inet: %w", err)
	}
	var names []string
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == "table" && f[1] == "inet" && strings.HasPrefix(f[2], prefix) {
			names = append(names, f[2])
		}
	}
	return names, nil
}

// Table is an installed table of rules.
type Table struct {
	nft, name string
}

// Name is the table's name, in the inet family.
func (t *Table) Name() string { return t.name }

// Install adds the table name with rules, running the nft program at path
// nft, in one transaction: all the rules or none. A table of that name
// must not exist yet.
func Install(ctx context.Context, nft, name string, rules []Rule) (*Table, error) {
	script, err := Ruleset(name, rules)
	if err != nil {
		return nil, err
	}
	t := &Table{nft: nft, name: name}
	if err := t.run(ctx, script, "list", "table", "inet", name); err == nil {
		return nil, fmt.Errorf("dnat: nftables table inet %s exists already; delete it (nft delete table inet %s) if no pinhole forward runs with it", name, name)
	}
	if err := t.run(ctx, script, "-f", "-"); err != nil {
		return nil, err
	}
	return t, nil
}

// Remove deletes the table and every rule in it.
func (t *Table) Remove(ctx context.Context) error {
	return t.run(ctx, "", "delete", "table", "inet", t.name)
}

func (t *Table) run(ctx context.Context, stdin string, args ...string) error {
	cmd := exec.CommandContext(ctx, t.nft, args...)
	if args[0] == "-f" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("dnat: nft %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}
