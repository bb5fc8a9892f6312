package portmap

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Backoff of Keep between failed renewals.
const (
	keepRetryFirst = time.Second
	keepRetryMax   = time.Minute
	releaseTimeout = 5 * time.Second
)

// Keep holds m, made by this Client's Map, until ctx ends. It renews m at
// its RenewAfter time; a failed renewal is logged and retried with backoff
// (1 s, doubling, at most 1 min), and once the lease has run out the port
// is mapped again from scratch with every configured method (the gateway
// may have changed). Whenever the external address or port changes,
// changed (if not nil) gets the new Mapping. When ctx ends, Keep removes
// the mapping from the router (within 5 s) and returns the error of that
// removal, nil if it worked.
func (c *Client) Keep(ctx context.Context, m Mapping, changed func(Mapping)) error {
	cur, ok := m.(*mapping)
	if !ok {
		return fmt.Errorf("portmap: Keep needs a Mapping made by Map, not %T", m)
	}
	req := Request{Proto: cur.proto, InternalPort: cur.internal.Port(), ExternalPort: cur.wanted, Lifetime: cur.asked}
	retry := time.Duration(0)
	var lost bool // the lease ran out without a renewal: map from scratch
	st := c.cfg.Status
	st.set(cur, StateMapped)
	for {
		wait := time.Until(cur.renewAfter)
		if retry > 0 {
			wait = retry
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return c.releaseTo(ctx, cur, lost, st)
		case <-t.C:
		}

		next, err := c.renew(ctx, cur, req, lost)
		if ctx.Err() != nil {
			return c.releaseTo(ctx, cur, lost, st)
		}
		if err != nil {
			retry = min(max(2*retry, keepRetryFirst), keepRetryMax)
			expired := !cur.goodUntil.IsZero() && time.Now().After(cur.goodUntil)
			if expired && !lost {
				lost = true
				c.log.Warn("portmap: the lease ran out before a renewal worked; the mapping is gone until the gateway answers again", "method", cur.method, "external", cur.external)
			}
			c.log.Warn("portmap: renewal failed; retrying", "method", cur.method, "external", cur.external, "in", retry, "err", err)
			if lost {
				st.set(cur, StateLost)
			} else {
				st.set(cur, StateRetrying)
			}
			continue
		}
		retry = 0
		if lost {
			c.log.Info("portmap: mapped again", "method", next.method, "external", next.external, "lease", leaseText(next))
		} else {
			c.log.Info("portmap: renewed", "method", next.method, "external", next.external, "lease", leaseText(next))
		}
		lost = false
		if next.external != cur.external {
			c.log.Warn("portmap: the external address changed", "from", cur.external, "to", next.external)
			if changed != nil {
				changed(next)
			}
		}
		cur = next
		st.set(cur, StateMapped)
	}
}

// releaseTo is release, and st (which may be nil) told that cur is gone.
func (c *Client) releaseTo(ctx context.Context, cur *mapping, lost bool, st *Status) error {
	err := c.release(ctx, cur, lost)
	st.set(cur, StateRemoved)
	return err
}

// renew asks again for cur with its own method, or, when lost, maps req
// from scratch with every configured method.
func (c *Client) renew(ctx context.Context, cur *mapping, req Request, lost bool) (*mapping, error) {
	if lost {
		m, err := c.Map(ctx, req)
		if err != nil {
			return nil, err
		}
		return m.(*mapping), nil
	}
	gw, err := c.gateway()
	if err != nil {
		return nil, err
	}
	next, err := c.protos[cur.method].add(ctx, gw, req, cur)
	if errors.Is(err, ErrConflict) && cur.wanted == 0 {
		// The port went to someone else while we were away: take any.
		next, err = c.protos[cur.method].add(ctx, gw, req, nil)
	}
	return next, err
}

// release removes cur when Keep's context has ended.
func (c *Client) release(ctx context.Context, cur *mapping, lost bool) error {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	err := cur.Release(rctx)
	switch {
	case err == nil:
		c.log.Info("portmap: removed", "method", cur.method, "external", cur.external)
	case lost:
		c.log.Info("portmap: could not remove the mapping, which had already run out", "method", cur.method, "external", cur.external, "err", err)
		err = nil
	default:
		c.log.Warn("portmap: could not remove the mapping; it ends with its lease", "method", cur.method, "external", cur.external, "lease", leaseText(cur), "err", err)
	}
	return err
}
