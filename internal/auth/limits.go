package auth

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Limits are the pinhole-limits= option of an authorized_keys line
// (pinhole's own, not sshd's): per-key limits that replace the server's
// for this key, higher or lower. Each field is 0 when the option does not
// give it (the server's limit applies), LimitNone for "none" (no limit),
// or the limit.
type Limits struct {
	Names      int // names=: public names held at once (--max-names-per-key)
	Ports      int // ports=: remote-forward ports held at once (--max-ports-per-key)
	Streams    int // streams=: channels open at once (--max-streams-per-key)
	StreamRate int // stream-rate=: new channels a second (--max-stream-rate-per-key)
}

// LimitNone is a Limits field given as "none": no limit for this key.
const LimitNone = -1

// maxLimit bounds a limit's value: above it, write none.
const maxLimit = 1 << 30

// limitKeys are the keys of pinhole-limits, in the order the docs list them.
var limitKeys = []string{"names", "ports", "streams", "stream-rate"}

// parseLimits parses the value of pinhole-limits, such as
// "names=20,ports=50,streams=5000,stream-rate=500", into l. A key given
// twice, in this option or an earlier one of the line, is an error.
func parseLimits(s string, l *Limits) error {
	if s == "" {
		return errors.New(`empty; want KEY=N,... with keys names, ports, streams, stream-rate, e.g. "streams=5000,stream-rate=500"`)
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		k = strings.ToLower(strings.TrimSpace(k))
		v = strings.TrimSpace(v)
		var field *int
		switch k {
		case "names":
			field = &l.Names
		case "ports":
			field = &l.Ports
		case "streams":
			field = &l.Streams
		case "stream-rate":
			field = &l.StreamRate
		case "":
			return errors.New(`empty entry; want KEY=N,... such as "streams=5000"`)
		default:
			return fmt.Errorf("unknown limit %q; pinhole-limits knows %s (docs/names.md, \"Per-key limits\")", k, strings.Join(limitKeys, ", "))
		}
		if !ok || v == "" {
			return fmt.Errorf("limit %s needs a value, e.g. %s=100 or %s=none", k, k, k)
		}
		if *field != 0 {
			return fmt.Errorf("limit %s is given twice; keep one", k)
		}
		if strings.EqualFold(v, "none") {
			*field = LimitNone
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxLimit {
			return fmt.Errorf("limit %s=%s: want a number from 1 to %d, or none for no limit", k, v, maxLimit)
		}
		*field = n
	}
	return nil
}

// String is the option's value as parseLimits reads it, the limits not
// given left out: "" when none is given.
func (l Limits) String() string {
	var parts []string
	for i, n := range []int{l.Names, l.Ports, l.Streams, l.StreamRate} {
		switch {
		case n == LimitNone:
			parts = append(parts, limitKeys[i]+"=none")
		case n != 0:
			parts = append(parts, limitKeys[i]+"="+strconv.Itoa(n))
		}
	}
	return strings.Join(parts, ",")
}
