package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ferryhq/ferry/connectors"
)

// DefaultSinkTimeout bounds one call of a target without a timeout of its
// own: long enough for a large batch to a slow API, short enough that a
// hanging target does not hold a run for good.
const DefaultSinkTimeout = 5 * time.Minute

// SinkLimit is the limit of one call of a target: its own timeout, else
// the run's default, else DefaultSinkTimeout (0 means unset).
func SinkLimit(own, fallback time.Duration) time.Duration {
	switch {
	case own > 0:
		return own
	case fallback > 0:
		return fallback
	}
	return DefaultSinkTimeout
}

// CallWithin calls write with cctx, a context that ends limit after the call
// was asked for (its slot waits count), in a goroutine of its own, and
// returns its answer. A target that does not return when cctx ends is given
// a grace period (min(limit, 5s)) and then abandoned: every write fails
// transiently, so its records are retried, and the worker goes on. The
// abandoned call keeps running; release runs when it returns, so what it
// holds (a connection slot) stays held until then. ctx is the run's: its end
// is reported as itself, not as a timeout.
func CallWithin(ctx, cctx context.Context, limit time.Duration, n int, write func(context.Context) []error, release func()) []error {
	done := make(chan []error, 1)
	go func() {
		defer release()
		done <- write(cctx)
	}()
	select {
	case errs := <-done:
		return errs
	case <-cctx.Done():
	}
	grace := time.NewTimer(min(limit, 5*time.Second))
	defer grace.Stop()
	select {
	case errs := <-done:
		// A target that gave up at the deadline says "context deadline
		// exceeded"; say which deadline.
		for i, err := range errs {
			if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
				errs[i] = SinkTimedOut(ctx, limit, "call did not return")
			}
		}
		return errs
	case <-grace.C:
		return AllErrors(n, SinkTimedOut(ctx, limit, "call did not return"))
	}
}

// SinkTimedOut is the error of a target call that did not finish what
// within limit: transient (the records are retried), or the run's own end.
func SinkTimedOut(ctx context.Context, limit time.Duration, what string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return connectors.Transient(fmt.Errorf("target %s within the sink timeout (%s): it is slow or hanging; the records are retried", what, limit), 0)
}

// AllErrors is err for each of n writes.
func AllErrors(n int, err error) []error {
	errs := make([]error, n)
	for i := range errs {
		errs[i] = err
	}
	return errs
}
