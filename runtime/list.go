package runtime

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// A KV listing (a watcher, or the key lister built on one) tells the end of
// the current values by a message with nothing pending after it. When the
// messages still pending when it started are removed before they are
// delivered (a TTL expiring a record or a marker mid-list), that message
// never comes and the listing waits for the next write, maybe forever. So a
// listing that goes quiet for a while is started again (three tries).

// listIdle is how long a listing of this package may wait for its next
// value; a variable for tests.
var listIdle = 5 * time.Second

var errListIdle = errors.New("no value for a while")

// quietRetried runs list until it does not go quiet, at most three times.
func quietRetried[T any](list func() ([]T, error)) ([]T, error) {
	for attempt := 1; ; attempt++ {
		out, err := list()
		if !errors.Is(err, errListIdle) || attempt == 3 {
			return out, err
		}
	}
}

// listValues returns the current values of the keys matching filter.
func listValues(ctx context.Context, kv jetstream.KeyValue, filter string) ([]jetstream.KeyValueEntry, error) {
	return quietRetried(func() ([]jetstream.KeyValueEntry, error) {
		w, err := kv.Watch(ctx, filter, jetstream.IgnoreDeletes())
		if err != nil {
			return nil, fmt.Errorf("runtime: list %s: %w", kv.Bucket(), err)
		}
		defer w.Stop()
		return drain(ctx, w.Updates(), listIdle, func(e jetstream.KeyValueEntry) bool { return e == nil }, kv.Bucket()+" "+filter)
	})
}

// ListKeys returns the keys of kv matching filter; none is not an error. A
// lister quiet for idle is started again (see above).
func ListKeys(ctx context.Context, kv jetstream.KeyValue, filter string, idle time.Duration) ([]string, error) {
	return quietRetried(func() ([]string, error) {
		l, err := kv.ListKeysFiltered(ctx, filter)
		if err != nil {
			return nil, err
		}
		defer l.Stop()
		// The lister closes its channel when it ends.
		return drain(ctx, l.Keys(), idle, func(string) bool { return false }, kv.Bucket()+" keys "+filter)
	})
}

// drain collects ch until it closes or yields an item for which end is
// true, failing with errListIdle when nothing comes for idle.
func drain[T any](ctx context.Context, ch <-chan T, idle time.Duration, end func(T) bool, what string) ([]T, error) {
	timer := time.NewTimer(idle)
	defer timer.Stop()
	var out []T
	for {
		select {
		case v, ok := <-ch:
			if !ok || end(v) {
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				return out, nil
			}
			out = append(out, v)
			timer.Reset(idle)
		case <-timer.C:
			return nil, fmt.Errorf("runtime: list %s: %w", what, errListIdle)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
