package apiserver

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// stuckLister is what nats.go's key lister does when messages it counted as
// pending were removed before it received them: its channel never closes
// until its context ends.
type stuckLister struct{ ctx context.Context }

func (l stuckLister) Keys() <-chan string {
	ch := make(chan string)
	go func() { <-l.ctx.Done(); close(ch) }()
	return ch
}

func (stuckLister) Stop() error { return nil }

// stuckOnce is a bucket whose first key lister never ends.
type stuckOnce struct {
	jetstream.KeyValue
	calls int
}

func (kv *stuckOnce) ListKeysFiltered(ctx context.Context, filters ...string) (jetstream.KeyLister, error) {
	kv.calls++
	if kv.calls == 1 {
		return stuckLister{ctx}, nil
	}
	return kv.KeyValue.ListKeysFiltered(ctx, filters...)
}

// TestKeysOfRetriesAStuckLister: a lister that never ends is given up after
// keysAttempt and started again, instead of hanging the request (a run list
// once hung for 10 minutes this way) or returning a partial list.
func TestKeysOfRetriesAStuckLister(t *testing.T) {
	defer func(d time.Duration) { keysAttempt = d }(keysAttempt)
	keysAttempt = 200 * time.Millisecond
	e := newEnv(t)
	ctx := context.Background()
	for _, k := range []string{"acme.a", "acme.b", "other.c"} {
		if _, err := e.s.runs.reqs.Put(ctx, k, []byte("{}")); err != nil {
			t.Fatal(err)
		}
	}
	kv := &stuckOnce{KeyValue: e.s.runs.reqs}
	keys, err := keysOf(ctx, kv, "acme.*")
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	if !slices.Equal(keys, []string{"acme.a", "acme.b"}) || kv.calls != 2 {
		t.Errorf("keys %v after %d listings, want [acme.a acme.b] after 2", keys, kv.calls)
	}

	// A caller's own deadline is an error, not a partial list.
	kv = &stuckOnce{KeyValue: e.s.runs.reqs}
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if keys, err := keysOf(cctx, kv, "acme.*"); err == nil {
		t.Errorf("keys %v, want the caller's deadline as an error", keys)
	}
}
